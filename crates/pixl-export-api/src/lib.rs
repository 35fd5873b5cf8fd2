//! export-api: the last hop. It takes `export` messages, fetches each de-identified study
//! from anon-node as a zip, checks that every instance in it is de-identified and belongs
//! to the study, uploads it to the project's destination and records the export
//! ([`service`]); it also writes the image linker table and uploads an extract's parquet
//! files on `POST /export-patient-data` ([`api`], [`linker`]).
//!
//! Architecture invariant: export-api handles pseudonymous identifiers only. It reads no
//! raw identifier column of the database, does not link anon-node's code (whose raw cache
//! is identifiable), and everything it hands to a destination is typed as pseudonymous
//! ([`destination::StudyPackage`]). A test keeps its sources free of raw-identifier names.

pub mod anon_archive;
pub mod api;
pub mod destination;
pub mod linker;
pub mod parquet_check;
pub mod radiology;
pub mod release_report;
pub mod service;

use std::path::PathBuf;
use std::time::Duration;

use pixl_core::config::{ConfigError, Env};
use pixl_secrets::SecretsConfig;

use crate::destination::{DestinationSettings, FtpsTls, XnatDestination, XnatOverwrite};

/// Configuration, from the environment (`.env.sample` documents each variable).
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// `EXPORT_API_HOST`:`EXPORT_API_PORT` (default 127.0.0.1:8003): REST, health, metrics.
    pub http_bind: std::net::SocketAddr,
    /// `ANON_NODE_URL` (default `http://127.0.0.1:8002`): where de-identified studies are
    /// fetched from.
    pub anon_node_url: String,
    /// `ANON_NODE_API_TOKEN`: anon-node's bearer token.
    pub anon_node_token: Option<secrecy::SecretString>,
    /// `EXPORT_API_CONCURRENCY` (default 2): studies uploaded at once.
    pub concurrency: u16,
    /// `EXPORT_API_MAX_ATTEMPTS` (default 5): tries per study (and per parquet upload)
    /// before a passing problem counts as permanent.
    pub max_attempts: u32,
    /// `EXPORT_API_RETRY_PAUSE` seconds (default 5): first pause before a retry, doubling.
    pub retry_pause: Duration,
    /// `EXPORT_API_WORK_DIR` (default `./export-work`): archives being uploaded. Holds
    /// de-identified data only; emptied at start.
    pub work_dir: PathBuf,
    /// How each kind of destination behaves.
    pub destinations: DestinationSettings,
    /// Where destination credentials come from (`EXPORT_API_AZ_*`, else the local
    /// secrets file).
    pub secrets: SecretsConfig,
}

impl ExportConfig {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let secrets =
            SecretsConfig::from_lookup("EXPORT_API", env.lookup()).map_err(|e| ConfigError::Invalid { variable: "EXPORT_API_AZ_*", problem: e.to_string() })?;
        Ok(Self {
            http_bind: env.socket("EXPORT_API_HOST", "EXPORT_API_PORT", "127.0.0.1", 8003)?,
            anon_node_url: env.url("ANON_NODE_URL", "http://127.0.0.1:8002")?,
            anon_node_token: env.get("ANON_NODE_API_TOKEN").map(secrecy::SecretString::from),
            concurrency: env.number("EXPORT_API_CONCURRENCY", 2, 1, 64)?,
            max_attempts: env.number("EXPORT_API_MAX_ATTEMPTS", 5, 1, 100)?,
            retry_pause: env.seconds("EXPORT_API_RETRY_PAUSE", 5.0, 3600.0)?,
            work_dir: env.path("EXPORT_API_WORK_DIR", "./export-work"),
            destinations: DestinationSettings {
                directory_root: env.path("EXPORT_DIRECTORY_ROOT", "./research-export"),
                ftps_tls: env.choice("EXPORT_FTPS_TLS", "implicit", &[("implicit", FtpsTls::Implicit), ("explicit", FtpsTls::Explicit)])?,
                xnat_destination: env.choice(
                    "XNAT_DESTINATION",
                    "/archive",
                    &[("/archive", XnatDestination::Archive), ("/prearchive", XnatDestination::Prearchive)],
                )?,
                xnat_overwrite: env.choice(
                    "XNAT_OVERWRITE",
                    "none",
                    &[("none", XnatOverwrite::None), ("append", XnatOverwrite::Append), ("delete", XnatOverwrite::Delete)],
                )?,
                tre_api_url: url::Url::parse(&env.url("TRE_API_URL", destination::tre::DEFAULT_TRE_API_URL)?)
                    .map_err(|e| ConfigError::Invalid { variable: "TRE_API_URL", problem: e.to_string() })?,
                extra_ca_file: env.get("PIXL_EXTRA_CA_FILE").map(PathBuf::from),
            },
            secrets,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<ExportConfig, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ExportConfig::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_follow_pixl() {
        let config = config(&[]).unwrap();
        assert_eq!(config.http_bind.to_string(), "127.0.0.1:8003");
        assert_eq!(config.destinations.ftps_tls, FtpsTls::Implicit);
        assert_eq!(config.destinations.xnat_destination, XnatDestination::Archive);
        assert_eq!(config.destinations.xnat_overwrite, XnatOverwrite::None);
        assert_eq!(config.concurrency, 2);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (variable, value) in [
            ("EXPORT_FTPS_TLS", "starttls"),
            ("XNAT_DESTINATION", "archive"),
            ("XNAT_OVERWRITE", "always"),
            ("EXPORT_API_CONCURRENCY", "0"),
            ("EXPORT_API_PORT", "http"),
            ("ANON_NODE_URL", "not a url"),
        ] {
            let error = config(&[(variable, value)]).unwrap_err();
            assert!(matches!(&error, ConfigError::Invalid { variable: named, .. } if *named == variable), "{error}");
        }
    }
}
