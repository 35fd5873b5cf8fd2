//! anon-node: the DICOM node that is the archive's C-MOVE destination. This first part is
//! the storage SCP and the raw cache; the de-identification consumer and the HTTP archive
//! endpoint build on it.

pub mod dimse;
pub mod raw_cache;
pub mod scp;

use std::collections::BTreeSet;
use std::path::PathBuf;

/// Configuration of the node, from the environment.
#[derive(Debug, Clone)]
pub struct AnonNodeConfig {
    /// `ANON_NODE_AE_TITLE` (default `PIXL_RAW`): the archive's C-MOVE destination.
    pub ae_title: String,
    /// `ANON_NODE_DICOM_HOST`:`ANON_NODE_DICOM_PORT` (default 127.0.0.1:11113).
    pub dicom_bind: std::net::SocketAddr,
    /// `ANON_NODE_ALLOWED_CALLERS`: comma-separated calling AE titles (the archives).
    pub allowed_callers: BTreeSet<String>,
    /// `ANON_NODE_RAW_CACHE_DIR` (default `./raw-cache`): the identifiable raw cache.
    pub raw_cache_dir: PathBuf,
}

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl AnonNodeConfig {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let ae_title = get("ANON_NODE_AE_TITLE").unwrap_or_else(|| "PIXL_RAW".to_owned());
        if ae_title.len() > 16 || !ae_title.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError { variable: "ANON_NODE_AE_TITLE", problem: "an AE title is 1-16 printable characters".to_owned() });
        }
        let host = get("ANON_NODE_DICOM_HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
        let port = get("ANON_NODE_DICOM_PORT").unwrap_or_else(|| "11113".to_owned());
        let dicom_bind = format!("{host}:{port}")
            .parse()
            .map_err(|_| ConfigError { variable: "ANON_NODE_DICOM_PORT", problem: format!("{host}:{port} is not an IP address and port") })?;
        let allowed_callers: BTreeSet<String> =
            get("ANON_NODE_ALLOWED_CALLERS").unwrap_or_default().split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        if allowed_callers.is_empty() {
            return Err(ConfigError { variable: "ANON_NODE_ALLOWED_CALLERS", problem: "list the AE titles of the archives allowed to store here".to_owned() });
        }
        Ok(Self {
            ae_title,
            dicom_bind,
            allowed_callers,
            raw_cache_dir: PathBuf::from(get("ANON_NODE_RAW_CACHE_DIR").unwrap_or_else(|| "./raw-cache".to_owned())),
        })
    }
}
