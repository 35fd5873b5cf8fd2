//! The `xnat` destination: XNAT's import service, as PIXL uses it.
//!
//! `POST https://<host>:<port>/data/services/import?import-handler=DICOM-zip&project=<slug>
//! &subject=<pseudonymous patient id>&session=<pseudonymous study uid>&overwrite=<...>
//! &dest=<...>` with the zip as an `application/zip` body and basic authentication.
//! Secrets: `<prefix>--xnat--host`, `--xnat--port` (default 443), `--xnat--username`,
//! `--xnat--password`. `XNAT_DESTINATION` (`/archive` or `/prearchive`) and
//! `XNAT_OVERWRITE` (`none`, `append`, `delete`) are PIXL's variables; a project's
//! `xnat_destination_options` (`destination`, `overwrite`) override them, as in PIXL.
//!
//! With `overwrite=none` into the archive, a session already there is taken as this
//! study's earlier upload (a retry after a crash), not as a failure: the session label is
//! the pseudonymous study UID, which no other study has.

use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{ProjectSecrets, StudyPackage, UploadError, Uploader, XnatDestination, XnatOverwrite};

const KIND: &str = "xnat";

/// Uploads to XNAT. `Debug` shows no credential.
#[derive(Clone)]
pub struct XnatUploader {
    base: Url,
    username: String,
    password: SecretString,
    destination: XnatDestination,
    overwrite: XnatOverwrite,
    http: reqwest::Client,
    secret_prefix: String,
}

impl std::fmt::Debug for XnatUploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XnatUploader").field("destination", &self.destination).field("overwrite", &self.overwrite).finish_non_exhaustive()
    }
}

impl XnatUploader {
    /// `destination` and `overwrite`: the project's `xnat_destination_options`, else
    /// `XNAT_DESTINATION` and `XNAT_OVERWRITE`.
    pub async fn from_secrets(
        secrets: &ProjectSecrets<'_>,
        destination: XnatDestination,
        overwrite: XnatOverwrite,
        http: reqwest::Client,
    ) -> Result<Self, UploadError> {
        let host = secrets.required("xnat", "host").await?;
        let port = secrets.port("xnat", 443).await?;
        let base = Url::parse(&format!("https://{}:{port}/", host.expose_secret().trim()))
            .map_err(|_| UploadError::permanent("secrets", format!("secret {} is not a host name", secrets.name("xnat", "host"))))?;
        Ok(Self {
            base,
            username: secrets.required("xnat", "username").await?.expose_secret().trim().to_owned(),
            password: secrets.required("xnat", "password").await?,
            destination,
            overwrite,
            http,
            secret_prefix: secrets.prefix.to_owned(),
        })
    }

    fn refused(&self, status: StatusCode) -> UploadError {
        UploadError::permanent(
            KIND,
            format!("XNAT refused the credentials ({status}); check secrets {0}--xnat--username and {0}--xnat--password", self.secret_prefix),
        )
    }

    /// Whether the archive already holds the session.
    async fn session_exists(&self, study: &StudyPackage) -> Result<bool, UploadError> {
        let mut url = self.base.clone();
        url.path_segments_mut().map_err(|_| UploadError::permanent(KIND, "bad XNAT base URL"))?.pop_if_empty().extend([
            "data",
            "projects",
            study.project.as_str(),
            "subjects",
            study.pseudo_patient_id.as_str(),
            "experiments",
            study.pseudo_study_uid.as_str(),
        ]);
        url.query_pairs_mut().append_pair("format", "json");
        let response = self
            .http
            .get(url)
            .basic_auth(&self.username, Some(self.password.expose_secret()))
            .send()
            .await
            .map_err(|e| UploadError::transient(KIND, format!("cannot reach XNAT: {}", super::describe_http_error(&e))))?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Err(self.refused(status)),
            status if status.is_server_error() => Err(UploadError::transient(KIND, format!("XNAT answered {status} when asked for the session"))),
            status => Err(UploadError::permanent(KIND, format!("XNAT answered {status} when asked for the session"))),
        }
    }
}

/// The query of an import request, in PIXL's order.
pub fn import_query(study: &StudyPackage, destination: XnatDestination, overwrite: XnatOverwrite) -> Vec<(&'static str, String)> {
    vec![
        ("import-handler", "DICOM-zip".to_owned()),
        ("project", study.project.as_str().to_owned()),
        ("subject", study.pseudo_patient_id.as_str().to_owned()),
        ("session", study.pseudo_study_uid.as_str().to_owned()),
        ("overwrite", overwrite.as_str().to_owned()),
        ("dest", destination.as_str().to_owned()),
    ]
}

impl Uploader for XnatUploader {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn upload_study<'a>(&'a self, study: &'a StudyPackage) -> BoxFuture<'a, Result<String, UploadError>> {
        Box::pin(async move {
            let where_to = format!("XNAT project {} session {}", study.project, study.pseudo_study_uid);
            if self.overwrite == XnatOverwrite::None && self.destination == XnatDestination::Archive && self.session_exists(study).await? {
                tracing::info!(project = %study.project, "XNAT already holds the session (an earlier upload); not uploaded again");
                return Ok(where_to);
            }
            let url = self.base.join("data/services/import").map_err(|e| UploadError::permanent(KIND, e.to_string()))?;
            let file = tokio::fs::File::open(&study.zip).await.map_err(|e| UploadError::transient(KIND, format!("cannot read the study archive: {e}")))?;
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024));
            let response = self
                .http
                .post(url)
                .query(&import_query(study, self.destination, self.overwrite))
                .basic_auth(&self.username, Some(self.password.expose_secret()))
                .header(reqwest::header::CONTENT_TYPE, "application/zip")
                .header(reqwest::header::CONTENT_LENGTH, study.bytes)
                .body(body)
                .send()
                .await
                .map_err(|e| UploadError::transient(KIND, format!("cannot reach XNAT: {}", super::describe_http_error(&e))))?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let text: String = text.trim().chars().take(200).collect();
            match status {
                status if status.is_success() => Ok(where_to),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(self.refused(status)),
                status if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                    Err(UploadError::transient(KIND, format!("XNAT's import answered {status}: {text}")))
                }
                status => Err(UploadError::permanent(KIND, format!("XNAT's import answered {status}: {text}"))),
            }
        })
    }
}
