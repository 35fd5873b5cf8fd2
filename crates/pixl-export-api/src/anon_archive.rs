//! De-identified studies from anon-node: fetched over HTTP as a zip
//! (`GET /studies/{pseudo_study_uid}/archive?project=<slug>`), then checked before anything
//! leaves. The check is a second line of defence behind anon-node's de-identification:
//! every entry must be a DICOM instance marked PatientIdentityRemoved = YES whose
//! StudyInstanceUID is the study's pseudonymous UID. An archive failing it is never
//! uploaded.

use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use dicom_object::file::ReadPreamble;
use pixl_core::ids::{ProjectSlug, PseudoStudyUid};
use tokio::io::AsyncWriteExt;

/// Why a study could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// anon-node has no such de-identified study: retrying will not create it.
    #[error("anon-node holds no de-identified study with this UID for the project")]
    NotFound,
    /// anon-node refused the API token: a configuration problem.
    #[error("anon-node refused the API token (ANON_NODE_API_TOKEN)")]
    Unauthorized,
    /// anon-node unreachable, failing, or the disk: may pass.
    #[error("fetching the study from anon-node: {0}")]
    Transient(String),
}

/// anon-node's HTTP face, for de-identified archives only.
#[derive(Debug, Clone)]
pub struct AnonNodeClient {
    http: reqwest::Client,
    base_url: String,
    /// `ANON_NODE_API_TOKEN`, sent as a bearer token.
    token: Option<secrecy::SecretString>,
}

impl AnonNodeClient {
    pub fn new(http: reqwest::Client, base_url: &str, token: Option<secrecy::SecretString>) -> Self {
        Self { http, base_url: base_url.trim_end_matches('/').to_owned(), token }
    }

    /// Streams the study's zip into `into` and returns its size in bytes.
    pub async fn fetch(&self, project: &ProjectSlug, uid: &PseudoStudyUid, into: &Path) -> Result<u64, FetchError> {
        let url = format!("{}/studies/{uid}/archive", self.base_url);
        let failed = |e: String| FetchError::Transient(e);
        let mut request = self.http.get(url).query(&[("project", project.as_str())]);
        if let Some(token) = &self.token {
            use secrecy::ExposeSecret;
            request = request.bearer_auth(token.expose_secret());
        }
        let mut response = request.send().await.map_err(|e| failed(crate::destination::describe_http_error(&e)))?;
        match response.status() {
            reqwest::StatusCode::OK => {}
            reqwest::StatusCode::NOT_FOUND => return Err(FetchError::NotFound),
            reqwest::StatusCode::UNAUTHORIZED => return Err(FetchError::Unauthorized),
            status => return Err(failed(format!("anon-node answered {status}"))),
        }
        let mut file = tokio::fs::File::create(into).await.map_err(|e| failed(format!("cannot write {}: {e}", into.display())))?;
        let mut bytes = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(crate::destination::describe_http_error(&e)))? {
            file.write_all(&chunk).await.map_err(|e| failed(format!("cannot write {}: {e}", into.display())))?;
            bytes += chunk.len() as u64;
        }
        file.flush().await.map_err(|e| failed(format!("cannot write {}: {e}", into.display())))?;
        Ok(bytes)
    }
}

/// Checks every entry of the zip at `path` (see the module comment); returns how many
/// instances it holds. The error names the entry's position, never its contents.
pub fn verify(path: &Path, expected: &PseudoStudyUid) -> Result<usize, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open the archive: {e}"))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| format!("not a zip archive: {e}"))?;
    let mut instances = 0usize;
    for index in 0..archive.len() {
        let entry = archive.by_index(index).map_err(|e| format!("entry {index}: {e}"))?;
        if entry.is_dir() {
            continue;
        }
        let plain = entry.enclosed_name().is_some_and(|name| name.components().count() == 2 && name.extension().is_some_and(|e| e == "dcm"));
        if !plain {
            return Err(format!("entry {index} is not a <series>/<instance>.dcm path"));
        }
        let header = OpenFileOptions::new()
            .read_preamble(ReadPreamble::Always)
            .read_until(tags::PIXEL_DATA)
            .from_reader(entry)
            .map_err(|_| format!("entry {index} is not a readable DICOM file"))?;
        let text = |tag| header.element(tag).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).to_owned());
        if text(tags::PATIENT_IDENTITY_REMOVED).as_deref() != Some("YES") {
            return Err(format!("entry {index} is not marked de-identified (PatientIdentityRemoved is not YES)"));
        }
        if text(tags::STUDY_INSTANCE_UID).as_deref() != Some(expected.as_str()) {
            return Err(format!("entry {index} belongs to another study than the pseudonymous study UID"));
        }
        instances += 1;
    }
    if instances == 0 {
        return Err("the archive holds no instance".to_owned());
    }
    Ok(instances)
}
