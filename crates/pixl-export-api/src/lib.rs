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
pub mod service;

use std::path::PathBuf;
use std::time::Duration;

use pixl_core::config::ConfigError;
use pixl_core::secrets::SecretsConfig;

use crate::destination::{DestinationSettings, FtpsTls, XnatDestination, XnatOverwrite};

/// Configuration, from the environment (`.env.sample` documents each variable).
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// `EXPORT_API_HOST`:`EXPORT_API_PORT` (default 127.0.0.1:8003): REST, health, metrics.
    pub http_bind: std::net::SocketAddr,
    /// `ANON_NODE_URL` (default `http://127.0.0.1:8002`): where de-identified studies are
    /// fetched from.
    pub anon_node_url: String,
    /// `EXPORT_API_CONCURRENCY` (default 2): studies uploaded at once.
    pub concurrency: u16,
    /// `EXPORT_API_MAX_ATTEMPTS` (default 5): tries per study (and per parquet upload)
    /// before a passing problem counts as permanent.
    pub max_attempts: i32,
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
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let invalid = |variable: &'static str, problem: String| ConfigError::Invalid { variable, problem };
        let number = |variable: &'static str, default: f64, min: f64, max: f64| -> Result<f64, ConfigError> {
            match get(variable) {
                None => Ok(default),
                Some(raw) => raw
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && (min..=max).contains(v))
                    .ok_or_else(|| invalid(variable, format!("{raw:?} is not a number from {min} to {max}"))),
            }
        };
        let host = get("EXPORT_API_HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
        let port = get("EXPORT_API_PORT").unwrap_or_else(|| "8003".to_owned());
        let http_bind = format!("{host}:{port}").parse().map_err(|_| invalid("EXPORT_API_PORT", format!("{host}:{port} is not an IP address and port")))?;
        let anon_node_url = get("ANON_NODE_URL").unwrap_or_else(|| "http://127.0.0.1:8002".to_owned());
        url::Url::parse(&anon_node_url).map_err(|e| invalid("ANON_NODE_URL", format!("not a URL: {e}")))?;

        let ftps_tls = match get("EXPORT_FTPS_TLS").as_deref().unwrap_or("implicit") {
            "implicit" => FtpsTls::Implicit,
            "explicit" => FtpsTls::Explicit,
            other => return Err(invalid("EXPORT_FTPS_TLS", format!("{other:?} is neither \"implicit\" nor \"explicit\""))),
        };
        let xnat_destination = match get("XNAT_DESTINATION").as_deref().unwrap_or("/archive") {
            "/archive" => XnatDestination::Archive,
            "/prearchive" => XnatDestination::Prearchive,
            other => return Err(invalid("XNAT_DESTINATION", format!("{other:?} is neither \"/archive\" nor \"/prearchive\""))),
        };
        let xnat_overwrite = match get("XNAT_OVERWRITE").as_deref().unwrap_or("none") {
            "none" => XnatOverwrite::None,
            "append" => XnatOverwrite::Append,
            "delete" => XnatOverwrite::Delete,
            other => return Err(invalid("XNAT_OVERWRITE", format!("{other:?} is not one of none, append, delete"))),
        };
        let secrets = SecretsConfig::from_lookup("EXPORT_API", &lookup).map_err(|e| invalid("EXPORT_API_AZ_*", e.to_string()))?;
        Ok(Self {
            http_bind,
            anon_node_url,
            concurrency: number("EXPORT_API_CONCURRENCY", 2.0, 1.0, 64.0)? as u16,
            max_attempts: number("EXPORT_API_MAX_ATTEMPTS", 5.0, 1.0, 100.0)? as i32,
            retry_pause: Duration::from_secs_f64(number("EXPORT_API_RETRY_PAUSE", 5.0, 0.0, 3600.0)?),
            work_dir: PathBuf::from(get("EXPORT_API_WORK_DIR").unwrap_or_else(|| "./export-work".to_owned())),
            destinations: DestinationSettings {
                directory_root: PathBuf::from(get("EXPORT_DIRECTORY_ROOT").unwrap_or_else(|| "./research-export".to_owned())),
                ftps_tls,
                xnat_destination,
                xnat_overwrite,
                extra_ca_file: get("PIXL_EXTRA_CA_FILE").map(PathBuf::from),
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
