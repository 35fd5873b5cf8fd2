//! Destinations in the research environment, each behind one [`Uploader`] trait:
//! [`ftps`], [`dicomweb`], [`xnat`], [`tre`] and [`directory`]. A project's `destination.dicom` and
//! `destination.parquet` pick them; `none` means nothing is uploaded, on purpose.
//!
//! Uploaders take only pseudonymous data ([`StudyPackage`], [`ParquetBundle`]). Their
//! errors say whether trying again may help ([`UploadError::transient`]) and never carry
//! a credential: hosts, user names and passwords come from the secret store and stay out
//! of messages, which name the project's secret instead.

pub mod dicomweb;
pub mod directory;
pub mod ftps;
pub mod tre;
pub mod xnat;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use pixl_core::ids::{ProjectSlug, PseudoPatientId, PseudoStudyUid};
use pixl_core::project_config::{DicomDestination, LoadedProject, ParquetDestination};
use pixl_secrets::SecretStore;
pub use pixl_secrets::destinations::ProjectSecrets;

/// Deployment-wide settings of the destinations (environment variables).
#[derive(Debug, Clone)]
pub struct DestinationSettings {
    /// `EXPORT_DIRECTORY_ROOT`: where the `directory` destination writes.
    pub directory_root: PathBuf,
    /// `EXPORT_FTPS_TLS`: implicit TLS (PIXL's, port 990) or explicit (`AUTH TLS`).
    pub ftps_tls: FtpsTls,
    /// `XNAT_DESTINATION`: where XNAT files imported sessions.
    pub xnat_destination: XnatDestination,
    /// `XNAT_OVERWRITE`: what XNAT does when the session exists.
    pub xnat_overwrite: XnatOverwrite,
    /// `TRE_API_URL`: the TRE API's base (default PIXL's, [`tre::DEFAULT_TRE_API_URL`]).
    pub tre_api_url: url::Url,
    /// `PIXL_EXTRA_CA_FILE`: CA certificates trusted besides the system's, for every
    /// destination reached over TLS.
    pub extra_ca_file: Option<PathBuf>,
}

/// How an FTPS session starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtpsTls {
    /// TLS from the first byte (PIXL's mode; port 990 by default).
    Implicit,
    /// A plain connection upgraded with `AUTH TLS` (port 21 by default).
    Explicit,
}

/// XNAT's `dest` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XnatDestination {
    Archive,
    Prearchive,
}

impl XnatDestination {
    /// A project's `xnat_destination_options.destination` (validated when the config loaded).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "/archive" => Some(Self::Archive),
            "/prearchive" => Some(Self::Prearchive),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Archive => "/archive",
            Self::Prearchive => "/prearchive",
        }
    }
}

/// XNAT's `overwrite` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XnatOverwrite {
    None,
    Append,
    Delete,
}

impl XnatOverwrite {
    /// A project's `xnat_destination_options.overwrite` (validated when the config loaded).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "none" => Some(Self::None),
            "append" => Some(Self::Append),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Append => "append",
            Self::Delete => "delete",
        }
    }
}

/// A de-identified study ready to leave: a zip of its instances (`<series>/<sop>.dcm`,
/// checked by [`crate::anon_archive::verify`]) and its pseudonymous identifiers. There is
/// no field for anything else.
#[derive(Debug, Clone)]
pub struct StudyPackage {
    pub project: ProjectSlug,
    pub pseudo_study_uid: PseudoStudyUid,
    pub pseudo_patient_id: PseudoPatientId,
    /// The zip on local disk.
    pub zip: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Instances in it.
    pub instances: usize,
}

impl StudyPackage {
    /// `<slug>/<pseudonymous study uid>.zip`: where file destinations put the study.
    pub fn remote_path(&self) -> Vec<String> {
        vec![self.project.as_str().to_owned(), format!("{}.zip", self.pseudo_study_uid)]
    }
}

/// The parquet files of one extract: paths relative to the extract's directory of the
/// export tree (`omop/public/...`, `radiology/IMAGE_LINKER.parquet`). All de-identified.
#[derive(Debug, Clone)]
pub struct ParquetBundle {
    pub project: ProjectSlug,
    /// The extract's time slug (`2023-12-07t14-08-58`).
    pub extract_time_slug: String,
    /// The extract's directory of the export tree.
    pub root: PathBuf,
    /// Relative paths of the files, sorted; only plain components.
    pub files: Vec<PathBuf>,
}

impl ParquetBundle {
    /// `<slug>/<extract time slug>/parquet/<relative path>`, as components.
    pub fn remote_path(&self, relative: &Path) -> Vec<String> {
        let mut parts = vec![self.project.as_str().to_owned(), self.extract_time_slug.clone(), "parquet".to_owned()];
        parts.extend(relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()));
        parts
    }
}

/// An upload that failed. `problem` holds no credential and no identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{destination}: {problem}")]
pub struct UploadError {
    /// `ftps`, `dicomweb`, `xnat`, `tre`, `directory`, or `secrets`.
    pub destination: &'static str,
    pub problem: String,
    /// True when trying again later may succeed (network, server busy); false when it
    /// cannot until someone changes something (credentials, certificates, refusals).
    pub transient: bool,
}

impl UploadError {
    pub fn transient(destination: &'static str, problem: impl Into<String>) -> Self {
        Self { destination, problem: problem.into(), transient: true }
    }

    pub fn permanent(destination: &'static str, problem: impl Into<String>) -> Self {
        Self { destination, problem: problem.into(), transient: false }
    }
}

impl From<pixl_secrets::destinations::CredentialError> for UploadError {
    fn from(error: pixl_secrets::destinations::CredentialError) -> Self {
        Self { destination: "secrets", transient: error.transient, problem: error.problem }
    }
}

/// One kind of destination.
pub trait Uploader: Send + Sync + fmt::Debug {
    /// `ftps`, `dicomweb`, `xnat` or `directory`: recorded as `studies.exported_to`.
    fn kind(&self) -> &'static str;

    /// Uploads a study so that a reader never sees part of it. Uploading the same study
    /// again leaves one copy. Returns where it went, for logs and summaries.
    fn upload_study<'a>(&'a self, study: &'a StudyPackage) -> BoxFuture<'a, Result<String, UploadError>>;

    /// Uploads an extract's parquet files, each whole or not at all. Returns where each
    /// went.
    fn upload_parquet<'a>(&'a self, bundle: &'a ParquetBundle) -> BoxFuture<'a, Result<Vec<String>, UploadError>> {
        let _ = bundle;
        let kind = self.kind();
        Box::pin(async move { Err(UploadError::permanent(kind, "this destination does not take parquet files")) })
    }
}

/// What building an uploader needs: settings, the secret store, and the TLS and HTTP
/// clients, made once (loading the system's CA store is not free).
#[derive(Debug, Clone)]
pub struct Destinations {
    pub settings: DestinationSettings,
    pub secrets: Arc<dyn SecretStore>,
    tls: Arc<rustls::ClientConfig>,
    http: reqwest::Client,
}

impl Destinations {
    pub fn new(settings: DestinationSettings, secrets: Arc<dyn SecretStore>) -> Result<Self, UploadError> {
        let tls = ftps::tls_client_config(settings.extra_ca_file.as_deref())?;
        let http = pixl_core::http_client::builder(settings.extra_ca_file.as_deref())
            .map_err(|e| UploadError::permanent("http", e.to_string()))?
            .connect_timeout(std::time::Duration::from_secs(30))
            // Between bytes, not in all: a large study takes as long as it needs.
            .read_timeout(std::time::Duration::from_secs(300))
            .build()
            .map_err(|e| UploadError::permanent("http", e.to_string()))?;
        Ok(Self { settings, secrets, tls, http })
    }

    /// The uploader for a project's DICOM, or `None` for `destination.dicom: none`.
    pub async fn dicom(&self, project: &LoadedProject) -> Result<Option<Box<dyn Uploader>>, UploadError> {
        let secrets = ProjectSecrets { store: self.secrets.as_ref(), prefix: project.secret_prefix() };
        Ok(Some(match project.config.destination.dicom {
            DicomDestination::None => return Ok(None),
            DicomDestination::Ftps => Box::new(ftps::FtpsUploader::from_secrets(&secrets, &self.settings, Arc::clone(&self.tls)).await?),
            DicomDestination::Dicomweb => Box::new(dicomweb::DicomWebUploader::from_secrets(&secrets, self.http.clone()).await?),
            DicomDestination::Xnat => {
                // The project's `xnat_destination_options` win over the deployment's variables.
                let options = project.config.xnat_destination_options.clone().unwrap_or_default();
                let destination = options.destination.as_deref().and_then(XnatDestination::parse).unwrap_or(self.settings.xnat_destination);
                let overwrite = options.overwrite.as_deref().and_then(XnatOverwrite::parse).unwrap_or(self.settings.xnat_overwrite);
                Box::new(xnat::XnatUploader::from_secrets(&secrets, destination, overwrite, self.http.clone()).await?)
            }
            DicomDestination::Tre => Box::new(tre::TreUploader::from_secrets(&secrets, &self.settings.tre_api_url, self.http.clone()).await?),
            DicomDestination::Directory => Box::new(directory::DirectoryUploader::new(self.settings.directory_root.clone())),
        }))
    }

    /// The uploader for a project's parquet files, or `None` for `destination.parquet: none`.
    pub async fn parquet(&self, project: &LoadedProject) -> Result<Option<Box<dyn Uploader>>, UploadError> {
        let secrets = ProjectSecrets { store: self.secrets.as_ref(), prefix: project.secret_prefix() };
        Ok(Some(match project.config.destination.parquet {
            ParquetDestination::None => return Ok(None),
            ParquetDestination::Ftps => Box::new(ftps::FtpsUploader::from_secrets(&secrets, &self.settings, Arc::clone(&self.tls)).await?),
            ParquetDestination::Tre => Box::new(tre::TreUploader::from_secrets(&secrets, &self.settings.tre_api_url, self.http.clone()).await?),
            ParquetDestination::Directory => Box::new(directory::DirectoryUploader::new(self.settings.directory_root.clone())),
        }))
    }
}

/// Rejects a relative path that could leave the directory it is joined to.
pub fn check_relative(path: &Path) -> Result<(), UploadError> {
    let plain = path.components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if plain && path.components().next().is_some() { Ok(()) } else { Err(UploadError::permanent("parquet", "a parquet path is not a plain relative path")) }
}

/// The kind and cause of an HTTP client failure, without the URL reqwest puts in its
/// message (destination URLs are project secrets).
pub fn describe_http_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() {
        "request body failed"
    } else if error.is_decode() {
        "response could not be read"
    } else {
        "request failed"
    };
    match std::error::Error::source(error) {
        Some(source) => format!("{kind}: {source}"),
        None => kind.to_owned(),
    }
}
