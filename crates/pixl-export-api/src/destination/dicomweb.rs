//! The `dicomweb` destination: STOW-RS (`POST <base>/studies`, `multipart/related;
//! type="application/dicom"`) to the project's DICOMweb server.
//!
//! Secrets: `<prefix>--dicomweb--url` (the service base, e.g.
//! `https://pacs.example/dicom-web`), and either `--dicomweb--token` (bearer) or
//! `--dicomweb--username` + `--dicomweb--password` (basic), or neither.
//!
//! Instances are sent in batches (at most [`BATCH_BYTES`] or [`BATCH_INSTANCES`] each), so
//! memory stays bounded whatever the study's size. Every response is checked: a
//! FailedSOPSequence (0008,1198) entry, or fewer ReferencedSOPSequence (0008,1199) entries
//! than instances sent, fails the upload. Storing the same instances again is harmless
//! (same SOP Instance UIDs), so a retried study leaves one copy.

use std::io::Read;
use std::path::PathBuf;

use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{ProjectSecrets, StudyPackage, UploadError, Uploader};

const KIND: &str = "dicomweb";

/// Bytes of DICOM per STOW-RS request (one larger instance goes alone).
pub const BATCH_BYTES: u64 = 64 << 20;
/// Instances per STOW-RS request.
pub const BATCH_INSTANCES: usize = 200;

/// How requests authenticate.
#[derive(Clone)]
enum Auth {
    None,
    Basic { username: String, password: SecretString },
    Bearer(SecretString),
}

/// Uploads with STOW-RS. `Debug` shows no credential.
#[derive(Clone)]
pub struct DicomWebUploader {
    base: Url,
    auth: Auth,
    http: reqwest::Client,
    secret_prefix: String,
}

impl std::fmt::Debug for DicomWebUploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DicomWebUploader").finish_non_exhaustive()
    }
}

impl DicomWebUploader {
    pub async fn from_secrets(secrets: &ProjectSecrets<'_>, http: reqwest::Client) -> Result<Self, UploadError> {
        let url = secrets.required("dicomweb", "url").await?;
        let mut base = Url::parse(url.expose_secret().trim())
            .map_err(|_| UploadError::permanent("secrets", format!("secret {} is not a URL", secrets.name("dicomweb", "url"))))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(UploadError::permanent("secrets", format!("secret {} must be an http(s) URL", secrets.name("dicomweb", "url"))));
        }
        // Joining relative paths needs the base to end with a slash.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let auth = match (secrets.optional("dicomweb", "token").await?, secrets.optional("dicomweb", "username").await?) {
            (Some(token), _) => Auth::Bearer(token),
            (None, Some(username)) => Auth::Basic { username: username.expose_secret().to_owned(), password: secrets.required("dicomweb", "password").await? },
            (None, None) => Auth::None,
        };
        Ok(Self { base, auth, http, secret_prefix: secrets.prefix.to_owned() })
    }

    fn authorise(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => request,
            Auth::Basic { username, password } => request.basic_auth(username, Some(password.expose_secret())),
            Auth::Bearer(token) => request.bearer_auth(token.expose_secret()),
        }
    }

    /// Sends one batch and checks the answer.
    async fn store(&self, batch: Vec<Vec<u8>>) -> Result<(), UploadError> {
        let sent = batch.len();
        let boundary = format!("pixl-stow-{:032x}", rand::random::<u128>());
        let mut body = Vec::with_capacity(batch.iter().map(|part| part.len() + 80).sum::<usize>() + 64);
        for part in &batch {
            body.extend_from_slice(format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes());
            body.extend_from_slice(part);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        drop(batch);
        let url = self.base.join("studies").map_err(|e| UploadError::permanent(KIND, e.to_string()))?;
        let request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"))
            .header(reqwest::header::ACCEPT, "application/dicom+json")
            .body(body);
        let response = self
            .authorise(request)
            .send()
            .await
            // reqwest's message names the URL; the URL is the project's secret, so only the
            // kind of failure is kept.
            .map_err(|e| UploadError::transient(KIND, format!("cannot reach the DICOMweb server: {}", super::describe_http_error(&e))))?;
        let status = response.status();
        let text =
            response.text().await.map_err(|e| UploadError::transient(KIND, format!("reading the STOW-RS response: {}", super::describe_http_error(&e))))?;
        check_stow_response(status, &text, sent, &self.secret_prefix)
    }
}

/// Checks a STOW-RS answer for `sent` instances: the status and the DICOM JSON body.
pub fn check_stow_response(status: StatusCode, body: &str, sent: usize, secret_prefix: &str) -> Result<(), UploadError> {
    match status.as_u16() {
        200 | 202 | 409 => {}
        401 | 403 => {
            return Err(UploadError::permanent(
                KIND,
                format!("the DICOMweb server refused the credentials ({status}); check secrets {secret_prefix}--dicomweb--*"),
            ));
        }
        408 | 429 | 500..=599 => return Err(UploadError::transient(KIND, format!("STOW-RS answered {status}"))),
        _ => return Err(UploadError::permanent(KIND, format!("STOW-RS answered {status}: {}", body.chars().take(200).collect::<String>()))),
    }
    let json: serde_json::Value = if body.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(body).map_err(|_| UploadError::transient(KIND, format!("STOW-RS answered {status} with a body that is not DICOM JSON")))?
    };
    let items = |tag: &str| json.get(tag).and_then(|element| element.get("Value")).and_then(|value| value.as_array()).cloned().unwrap_or_default();
    let failed = items("00081198");
    if !failed.is_empty() {
        let reasons: Vec<u64> =
            failed.iter().filter_map(|item| item.get("00081197").and_then(|e| e.get("Value")).and_then(|v| v.get(0)).and_then(|v| v.as_u64())).collect();
        // 0xA7xx: out of resources, worth retrying; other reasons will not change.
        let transient = reasons.iter().any(|reason| (0xA700..=0xA7FF).contains(reason));
        let listed: Vec<String> = reasons.iter().map(|r| format!("0x{r:04X}")).collect();
        let problem = format!("the DICOMweb server refused {} of {sent} instances (failure reasons {})", failed.len(), listed.join(", "));
        return Err(UploadError { destination: KIND, problem, transient });
    }
    if status != StatusCode::OK {
        return Err(UploadError::transient(KIND, format!("STOW-RS answered {status} without naming a failed instance")));
    }
    let referenced = items("00081199").len();
    if json.get("00081199").is_some() && referenced != sent {
        return Err(UploadError::transient(KIND, format!("the DICOMweb server acknowledged {referenced} of {sent} instances")));
    }
    Ok(())
}

/// Reads the next batch of instances from the zip, starting at entry `next`.
fn read_batch(archive: &mut zip::ZipArchive<std::fs::File>, next: &mut usize) -> Result<Vec<Vec<u8>>, String> {
    let mut batch = Vec::new();
    let mut bytes = 0u64;
    while *next < archive.len() && batch.len() < BATCH_INSTANCES {
        let mut entry = archive.by_index(*next).map_err(|e| e.to_string())?;
        if entry.is_dir() {
            *next += 1;
            continue;
        }
        if !batch.is_empty() && bytes + entry.size() > BATCH_BYTES {
            break;
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut data).map_err(|e| e.to_string())?;
        bytes += data.len() as u64;
        batch.push(data);
        *next += 1;
    }
    Ok(batch)
}

impl Uploader for DicomWebUploader {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn upload_study<'a>(&'a self, study: &'a StudyPackage) -> BoxFuture<'a, Result<String, UploadError>> {
        Box::pin(async move {
            let zip_path: PathBuf = study.zip.clone();
            let unreadable = |e: String| UploadError::transient(KIND, format!("cannot read the study archive: {e}"));
            let mut archive = tokio::task::spawn_blocking(move || {
                let file = std::fs::File::open(zip_path).map_err(|e| e.to_string())?;
                zip::ZipArchive::new(file).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| unreadable(e.to_string()))?
            .map_err(unreadable)?;
            let mut next = 0usize;
            let mut stored = 0usize;
            loop {
                let (returned, batch) = tokio::task::spawn_blocking(move || {
                    let batch = read_batch(&mut archive, &mut next);
                    (archive, batch.map(|b| (b, next)))
                })
                .await
                .map_err(|e| unreadable(e.to_string()))?;
                archive = returned;
                let (batch, after) = batch.map_err(unreadable)?;
                next = after;
                if batch.is_empty() {
                    break;
                }
                stored += batch.len();
                self.store(batch).await?;
            }
            Ok(format!("study {} ({stored} instances, STOW-RS)", study.pseudo_study_uid))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: u16, body: &str, sent: usize) -> Result<(), UploadError> {
        check_stow_response(StatusCode::from_u16(status).unwrap(), body, sent, "proj")
    }

    #[test]
    fn stow_responses() {
        let two_ok = r#"{"00081199":{"vr":"SQ","Value":[{},{}]}}"#;
        assert_eq!(check(200, two_ok, 2), Ok(()));
        assert_eq!(check(200, "", 2), Ok(()), "a server that says nothing but 200 is trusted");
        assert!(check(200, two_ok, 3).unwrap_err().transient, "one instance not acknowledged");
        let refused = r#"{"00081198":{"vr":"SQ","Value":[{"00081197":{"vr":"US","Value":[49152]}}]},"00081199":{"vr":"SQ","Value":[{}]}}"#;
        let error = check(202, refused, 2).unwrap_err();
        assert!(!error.transient);
        assert_eq!(error.problem, "the DICOMweb server refused 1 of 2 instances (failure reasons 0xC000)");
        let busy = r#"{"00081198":{"vr":"SQ","Value":[{"00081197":{"vr":"US","Value":[42752]}}]}}"#;
        assert!(check(409, busy, 1).unwrap_err().transient, "out of resources is worth retrying");
        let error = check(401, "", 1).unwrap_err();
        assert!(!error.transient && error.problem.contains("proj--dicomweb--"), "{error}");
        assert!(check(503, "", 1).unwrap_err().transient);
        assert!(!check(415, "unsupported", 1).unwrap_err().transient);
        assert!(check(202, "{}", 1).unwrap_err().transient, "202 without a failure named");
    }
}
