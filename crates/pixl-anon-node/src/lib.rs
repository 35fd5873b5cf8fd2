//! anon-node: the DICOM node that is the archive's C-MOVE destination. It receives
//! studies into the raw cache ([`scp`], [`raw_cache`]), de-identifies them when an
//! `anonymise` message says so ([`service`], with the file-level engine of `pixl_deid`), and
//! serves the de-identified studies to export-api over HTTP ([`archive`]).

pub mod archive;
pub mod raw_cache;
pub mod scp;
pub mod service;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

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
    /// `ANON_NODE_SCP` (default true): run the storage SCP. A second process on the same
    /// host, sharing the raw cache and anon store, sets false and only consumes.
    pub scp: bool,
    /// `ANON_NODE_RAW_RETENTION_HOURS` (default 0): how long raw instances are kept after
    /// their study is de-identified; 0 deletes them at once.
    pub raw_retention: Duration,
    /// `ANON_NODE_ANON_RETENTION_DAYS` (default 7): how long de-identified files are kept
    /// after their study is exported (so a lost upload can be sent again).
    pub anon_retention: Duration,
    /// `ANON_NODE_SWEEP_SECONDS` (default 600): how often retention is applied.
    pub sweep_every: Duration,
    /// `ANON_NODE_API_TOKEN`: bearer token of the HTTP API (raw-cache queries, archives).
    /// Required unless `ANON_NODE_ALLOW_NO_TOKEN=true` (development only).
    pub api_token: Option<SecretString>,
}

pub use pixl_core::config::ConfigError;
use pixl_core::config::{Env, api_token};

impl AnonNodeConfig {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let allowed_callers: BTreeSet<String> =
            env.text("ANON_NODE_ALLOWED_CALLERS", "").split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        if allowed_callers.is_empty() {
            return Err(ConfigError::Invalid {
                variable: "ANON_NODE_ALLOWED_CALLERS",
                problem: "list the AE titles of the archives allowed to store here".to_owned(),
            });
        }
        Ok(Self {
            ae_title: env.ae_title("ANON_NODE_AE_TITLE", "PIXL_RAW")?,
            dicom_bind: env.socket("ANON_NODE_DICOM_HOST", "ANON_NODE_DICOM_PORT", "127.0.0.1", 11113)?,
            allowed_callers,
            raw_cache_dir: env.path("ANON_NODE_RAW_CACHE_DIR", "./raw-cache"),
            raw_cache_max_bytes: env.number("ANON_NODE_RAW_CACHE_MAX_SIZE_MB", 51_200u64, 0, u64::MAX >> 20)? << 20,
            anon_store_dir: env.path("ANON_NODE_ANON_STORE_DIR", "./anon-store"),
            http_bind: env.socket("ANON_NODE_HTTP_HOST", "ANON_NODE_HTTP_PORT", "127.0.0.1", 8002)?,
            concurrency: env.number("ANON_NODE_CONCURRENCY", 2, 1, 64)?,
            scp: env.flag("ANON_NODE_SCP", true)?,
            raw_retention: Duration::from_secs(env.number("ANON_NODE_RAW_RETENTION_HOURS", 0u64, 0, 24 * 365)? * 3600),
            anon_retention: Duration::from_secs_f64(env.number("ANON_NODE_ANON_RETENTION_DAYS", 7.0, 0.0, 3650.0)? * 86_400.0),
            sweep_every: env.seconds("ANON_NODE_SWEEP_SECONDS", 600.0, 86_400.0)?.max(Duration::from_millis(100)),
            api_token: api_token(&env, "ANON_NODE_API_TOKEN", "ANON_NODE_ALLOW_NO_TOKEN")?,
        })
    }
}
