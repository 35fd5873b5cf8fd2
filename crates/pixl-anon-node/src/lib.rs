//! anon-node: the DICOM node that is the archive's C-MOVE destination. It receives
//! studies into the raw cache ([`scp`], [`raw_cache`]), de-identifies them when an
//! `anonymise` message says so ([`service`], with the engine run by [`pipeline`]), and
//! serves the de-identified studies to export-api over HTTP ([`archive`]).

pub mod archive;
pub mod pipeline;
pub mod raw_cache;
pub mod scp;
pub mod service;

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
    /// `ANON_NODE_RAW_CACHE_MAX_SIZE_MB` (default 51200; 0 unbounded), in bytes.
    pub raw_cache_max_bytes: u64,
    /// `ANON_NODE_ANON_STORE_DIR` (default `./anon-store`): de-identified studies.
    pub anon_store_dir: PathBuf,
    /// `ANON_NODE_HTTP_HOST`:`ANON_NODE_HTTP_PORT` (default 127.0.0.1:8002).
    pub http_bind: std::net::SocketAddr,
    /// `ANON_NODE_CONCURRENCY` (default 2): studies de-identified at once.
    pub concurrency: u16,
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
        let http_host = get("ANON_NODE_HTTP_HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
        let http_port = get("ANON_NODE_HTTP_PORT").unwrap_or_else(|| "8002".to_owned());
        let http_bind = format!("{http_host}:{http_port}").parse().map_err(|_| ConfigError {
            variable: "ANON_NODE_HTTP_PORT",
            problem: format!("{http_host}:{http_port} is not an IP address and port"),
        })?;
        let number = |variable: &'static str, default: u64| -> Result<u64, ConfigError> {
            get(variable).map_or(Ok(default), |raw| raw.parse().map_err(|_| ConfigError { variable, problem: format!("{raw:?} is not a whole number") }))
        };
        let raw_cache_max_bytes = number("ANON_NODE_RAW_CACHE_MAX_SIZE_MB", 51_200)?.saturating_mul(1 << 20);
        let concurrency = number("ANON_NODE_CONCURRENCY", 2)?;
        if !(1..=64).contains(&concurrency) {
            return Err(ConfigError { variable: "ANON_NODE_CONCURRENCY", problem: "must be from 1 to 64".to_owned() });
        }
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
            raw_cache_max_bytes,
            anon_store_dir: PathBuf::from(get("ANON_NODE_ANON_STORE_DIR").unwrap_or_else(|| "./anon-store".to_owned())),
            http_bind,
            concurrency: concurrency as u16,
        })
    }
}
