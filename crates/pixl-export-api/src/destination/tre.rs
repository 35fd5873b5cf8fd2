//! The `tre` destination: the UCL ARC Trusted Research Environment's REST API, as PIXL
//! uses it.
//!
//! - `GET <base>/tokens/info` with `Authorization: Bearer <token>` checks the token before
//!   each upload (200: valid).
//! - `POST <base>/airlock/upload/<file name>` with the file as the raw request body (no
//!   multipart) puts a file into the project's airlock quarantine.
//! - `PUT <base>/airlock/flush` scans the quarantine and moves its files into the project's
//!   storage (files left in quarantine are deleted after 7 days).
//!
//! A study goes up as `<pseudonymous study uid>.zip`; an extract's parquet files go up as
//! one zip, `<extract time slug>.zip`, holding them under their paths relative to the
//! extract (`omop/public/...`, `radiology/IMAGE_LINKER.parquet`), as PIXL's does. Each
//! upload is followed by a flush, so that nothing waits in quarantine for a later call
//! that may never come (PIXL flushes after parquet only; a flush of an empty quarantine
//! is cheap).
//!
//! The token is the secret `<prefix>--api--token`; the base URL is `TRE_API_URL`
//! (default PIXL's, `https://api.tre.arc.ucl.ac.uk/v0`).

use std::io::Write;

use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{ParquetBundle, ProjectSecrets, StudyPackage, UploadError, Uploader};

const KIND: &str = "tre";

/// PIXL's TRE API base URL.
pub const DEFAULT_TRE_API_URL: &str = "https://api.tre.arc.ucl.ac.uk/v0";

/// Uploads through the TRE API. `Debug` shows no token.
#[derive(Clone)]
pub struct TreUploader {
    base: Url,
    token: SecretString,
    http: reqwest::Client,
    secret_prefix: String,
}

impl std::fmt::Debug for TreUploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreUploader").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

impl TreUploader {
    pub async fn from_secrets(secrets: &ProjectSecrets<'_>, base: &Url, http: reqwest::Client) -> Result<Self, UploadError> {
        Ok(Self { base: base.clone(), token: secrets.required("api", "token").await?, http, secret_prefix: secrets.prefix.to_owned() })
    }

    fn url(&self, segments: &[&str]) -> Result<Url, UploadError> {
        let mut url = self.base.clone();
        url.path_segments_mut().map_err(|_| UploadError::permanent(KIND, "TRE_API_URL cannot take a path"))?.pop_if_empty().extend(segments);
        Ok(url)
    }

    fn refused(&self, status: StatusCode) -> UploadError {
        UploadError::permanent(KIND, format!("the TRE API refused the token ({status}); check secret {}--api--token", self.secret_prefix))
    }

    fn unreachable(error: &reqwest::Error) -> UploadError {
        UploadError::transient(KIND, format!("cannot reach the TRE API: {}", super::describe_http_error(error)))
    }

    /// An answer other than success, classified.
    async fn failure(&self, what: &str, response: reqwest::Response) -> UploadError {
        let status = response.status();
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return self.refused(status);
        }
        // The API's own message (a JSON detail) names no identifier we sent: file names are
        // pseudonymous. Kept short.
        let text: String = response.text().await.unwrap_or_default().trim().chars().take(200).collect();
        let problem = format!("the TRE API answered {status} to {what}: {text}");
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT {
            UploadError::transient(KIND, problem)
        } else {
            UploadError::permanent(KIND, problem)
        }
    }

    async fn check_token(&self) -> Result<(), UploadError> {
        let response = self.http.get(self.url(&["tokens", "info"])?).bearer_auth(self.token.expose_secret()).send().await.map_err(|e| Self::unreachable(&e))?;
        if response.status() == StatusCode::OK { Ok(()) } else { Err(self.failure("the token check", response).await) }
    }

    async fn upload(&self, file_name: &str, path: &std::path::Path, bytes: u64) -> Result<(), UploadError> {
        let file = tokio::fs::File::open(path).await.map_err(|e| UploadError::transient(KIND, format!("cannot read the file to upload: {e}")))?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024));
        let response = self
            .http
            .post(self.url(&["airlock", "upload", file_name])?)
            .bearer_auth(self.token.expose_secret())
            .header(reqwest::header::CONTENT_LENGTH, bytes)
            .body(body)
            .send()
            .await
            .map_err(|e| Self::unreachable(&e))?;
        if response.status().is_success() { Ok(()) } else { Err(self.failure(&format!("the upload of {file_name}"), response).await) }
    }

    async fn flush(&self) -> Result<(), UploadError> {
        let response =
            self.http.put(self.url(&["airlock", "flush"])?).bearer_auth(self.token.expose_secret()).send().await.map_err(|e| Self::unreachable(&e))?;
        if response.status().is_success() { Ok(()) } else { Err(self.failure("the airlock flush", response).await) }
    }
}

/// Zips an extract's parquet files (stored, not deflated: parquet is compressed already)
/// under their relative paths.
fn zip_bundle(bundle: &ParquetBundle, target: &std::path::Path) -> Result<u64, UploadError> {
    let io = |e: std::io::Error| UploadError::transient(KIND, format!("cannot zip the parquet files: {e}"));
    let file = std::fs::File::create(target).map_err(io)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(true);
    for relative in &bundle.files {
        super::check_relative(relative)?;
        let name = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/");
        zip.start_file(name, options).map_err(|e| UploadError::transient(KIND, format!("cannot zip the parquet files: {e}")))?;
        let mut input = std::fs::File::open(bundle.root.join(relative)).map_err(io)?;
        std::io::copy(&mut input, &mut zip).map_err(io)?;
    }
    let mut writer = zip.finish().map_err(|e| UploadError::transient(KIND, format!("cannot zip the parquet files: {e}")))?;
    writer.flush().map_err(io)?;
    drop(writer);
    Ok(std::fs::metadata(target).map_err(io)?.len())
}

impl Uploader for TreUploader {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn upload_study<'a>(&'a self, study: &'a StudyPackage) -> BoxFuture<'a, Result<String, UploadError>> {
        Box::pin(async move {
            let name = format!("{}.zip", study.pseudo_study_uid);
            self.check_token().await?;
            self.upload(&name, &study.zip, study.bytes).await?;
            self.flush().await?;
            Ok(format!("TRE airlock {name}"))
        })
    }

    fn upload_parquet<'a>(&'a self, bundle: &'a ParquetBundle) -> BoxFuture<'a, Result<Vec<String>, UploadError>> {
        Box::pin(async move {
            if bundle.files.is_empty() {
                return Err(UploadError::permanent(KIND, "the extract has no parquet files to upload"));
            }
            let name = format!("{}.zip", bundle.extract_time_slug);
            let dir = tempfile::tempdir().map_err(|e| UploadError::transient(KIND, format!("cannot make a temporary directory: {e}")))?;
            let zip_path = dir.path().join(&name);
            let (bundle_copy, target) = (bundle.clone(), zip_path.clone());
            let bytes = tokio::task::spawn_blocking(move || zip_bundle(&bundle_copy, &target))
                .await
                .map_err(|e| UploadError::transient(KIND, format!("zip task: {e}")))??;
            self.check_token().await?;
            self.upload(&name, &zip_path, bytes).await?;
            self.flush().await?;
            Ok(vec![format!("TRE airlock {name} ({} parquet files)", bundle.files.len())])
        })
    }
}
