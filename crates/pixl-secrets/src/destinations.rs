//! A project's destination credentials in the secret store, under PIXL's names
//! `<prefix>--<service>--<field>` (the prefix is the project's `azure_kv_alias`, else its
//! slug). export-api reads them to upload; `pixl check-env` checks that they are there
//! without linking export-api.

use pixl_core::project_config::{DicomDestination, LoadedProject, ParquetDestination};
use secrecy::{ExposeSecret, SecretString};

use crate::store::{SecretError, SecretStore};

/// A credential could not be read. Names the secret, never its value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{problem}")]
pub struct CredentialError {
    pub problem: String,
    /// The store is unreachable: trying again later may help.
    pub transient: bool,
}

/// A project's secrets, for one destination service (`ftp`, `dicomweb`, `xnat`, `api` (PIXL's TRE API)).
#[derive(Debug)]
pub struct ProjectSecrets<'a> {
    pub store: &'a dyn SecretStore,
    pub prefix: &'a str,
}

impl ProjectSecrets<'_> {
    /// The secret's name, safe to print.
    pub fn name(&self, service: &str, field: &str) -> String {
        format!("{}--{service}--{field}", self.prefix)
    }

    /// A secret that may be absent.
    pub async fn optional(&self, service: &str, field: &str) -> Result<Option<SecretString>, CredentialError> {
        let name = self.name(service, field);
        self.store.get(&name).await.map_err(|error| CredentialError { transient: matches!(error, SecretError::Unavailable { .. }), problem: error.to_string() })
    }

    /// A secret that must be there: its absence is a configuration problem.
    pub async fn required(&self, service: &str, field: &str) -> Result<SecretString, CredentialError> {
        self.optional(service, field)
            .await?
            .ok_or_else(|| CredentialError { problem: format!("secret {} is not in the secret store", self.name(service, field)), transient: false })
    }

    /// A port number, or `default` when the secret is absent.
    pub async fn port(&self, service: &str, default: u16) -> Result<u16, CredentialError> {
        match self.optional(service, "port").await? {
            None => Ok(default),
            Some(text) => text
                .expose_secret()
                .trim()
                .parse()
                .map_err(|_| CredentialError { problem: format!("secret {} is not a port number", self.name(service, "port")), transient: false }),
        }
    }
}

/// The secrets a destination service cannot work without.
fn required_fields(service: &str) -> &'static [&'static str] {
    match service {
        "ftp" => &["host", "username", "password"],
        "dicomweb" => &["url"],
        "xnat" => &["host", "username", "password"],
        "api" => &["token"],
        _ => &[],
    }
}

/// The destination services a project's config uses (`ftp`, `dicomweb`, `xnat`, `api`), each once.
pub fn services(project: &LoadedProject) -> Vec<&'static str> {
    let mut services = Vec::new();
    let dicom = match project.config.destination.dicom {
        DicomDestination::Ftps => Some("ftp"),
        DicomDestination::Dicomweb => Some("dicomweb"),
        DicomDestination::Xnat => Some("xnat"),
        DicomDestination::Tre => Some("api"),
        DicomDestination::Directory | DicomDestination::None => None,
    };
    let parquet = match project.config.destination.parquet {
        ParquetDestination::Ftps => Some("ftp"),
        ParquetDestination::Tre => Some("api"),
        ParquetDestination::Directory | ParquetDestination::None => None,
    };
    for service in [dicom, parquet].into_iter().flatten() {
        if !services.contains(&service) {
            services.push(service);
        }
    }
    services
}

/// Checks that every credential the project's destinations need is in the store. `Ok`
/// lists what was checked.
pub async fn check_project(store: &dyn SecretStore, project: &LoadedProject) -> Result<Vec<String>, CredentialError> {
    let secrets = ProjectSecrets { store, prefix: project.secret_prefix() };
    let mut checked = Vec::new();
    for service in services(project) {
        for field in required_fields(service) {
            secrets.required(service, field).await?;
            checked.push(secrets.name(service, field));
        }
        if service == "dicomweb" && secrets.optional(service, "token").await?.is_none() && secrets.optional(service, "username").await?.is_some() {
            secrets.required(service, "password").await?;
            checked.push(secrets.name(service, "password"));
        }
    }
    Ok(checked)
}
