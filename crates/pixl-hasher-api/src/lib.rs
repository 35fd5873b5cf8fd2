//! hasher-api: keyed pseudonyms per project.
//!
//! `GET /hash?project_slug=&message=&length=` (PIXL's endpoint) answers the hex digest as
//! text; `POST /hash` hashes a JSON batch; `GET /heart-beat`, `GET /metrics` and
//! `GET /openapi.json` are open. With `HASHER_API_TOKEN` set, `/hash` needs that bearer
//! token. Keys come from the secret store; a project's salt is created on first use.
//! Messages, keys and salts never reach a log line or an error body.

mod api;
mod keys;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use pixl_core::pseudonym_keys::KeySettings;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use keys::KeyRing;

/// Configuration of the service, read once at start-up.
#[derive(Debug, Clone)]
pub struct HasherConfig {
    /// `HASHER_API_HOST`:`HASHER_API_PORT` (default 127.0.0.1:8000).
    pub bind: SocketAddr,
    /// `HASHER_API_TOKEN`: bearer token required on `/hash`, if set.
    pub token: Option<SecretString>,
    /// Algorithm, key name, local salt and secret store.
    pub keys: KeySettings,
    /// `PROJECT_CONFIGS_DIR`: for each project's secret-store alias and algorithm override.
    pub project_configs_dir: PathBuf,
}

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl HasherConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let host = get("HASHER_API_HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
        let port = get("HASHER_API_PORT").unwrap_or_else(|| "8000".to_owned());
        let bind = format!("{host}:{port}")
            .parse()
            .map_err(|_| ConfigError { variable: "HASHER_API_HOST", problem: format!("{host}:{port} is not an IP address and port") })?;
        let keys = KeySettings::from_lookup(&lookup).map_err(|e| ConfigError { variable: "keys", problem: e.to_string() })?;
        Ok(Self {
            bind,
            token: get("HASHER_API_TOKEN").map(SecretString::from),
            keys,
            project_configs_dir: PathBuf::from(get("PROJECT_CONFIGS_DIR").unwrap_or_else(|| "projects/configs".to_owned())),
        })
    }
}

/// Serves the API on `listener` until `shutdown` is cancelled.
pub async fn run(config: HasherConfig, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let keys = Arc::new(KeyRing::new(config.keys.open()?, &config));
    let router = api::router(keys, config.token.clone());
    pixl_core::http::serve(listener, router, shutdown).await?;
    Ok(())
}
