//! hasher-api: keyed pseudonyms per project.
//!
//! `GET /hash?project_slug=&message=&length=` (PIXL's endpoint) answers the hex digest as
//! text; `POST /hash` hashes a JSON batch; `GET /heart-beat`, `GET /metrics` and
//! `GET /openapi.json` are open; `/hash` needs the bearer token `HASHER_API_TOKEN` (the
//! service refuses to start without one unless `HASHER_API_ALLOW_NO_TOKEN=true`). Keys come from the secret store; a project's salt is created on first use.
//! Messages, keys and salts never reach a log line or an error body.

mod api;
mod keys;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use pixl_secrets::pseudonym_keys::KeySettings;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use keys::KeyRing;

/// Configuration of the service, read once at start-up.
#[derive(Debug, Clone)]
pub struct HasherConfig {
    /// `HASHER_API_HOST`:`HASHER_API_PORT` (default 127.0.0.1:8000).
    pub bind: SocketAddr,
    /// `HASHER_API_TOKEN`: bearer token required on `/hash`; `None` only when
    /// `HASHER_API_ALLOW_NO_TOKEN=true`.
    pub token: Option<SecretString>,
    /// Algorithm, key name, local salt and secret store.
    pub keys: KeySettings,
    /// `PROJECT_CONFIGS_DIR`: for each project's secret-store alias and algorithm override.
    pub project_configs_dir: PathBuf,
}

pub use pixl_core::config::ConfigError;
use pixl_core::config::Env;

impl HasherConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(pixl_core::pixl_env::process_lookup)
    }

    /// Refuses to run without `HASHER_API_TOKEN` unless `HASHER_API_ALLOW_NO_TOKEN=true`
    /// says so explicitly: an open hasher-api is a pseudonym oracle for anyone on the
    /// network (given an MRN, it tells the MRN's pseudonym).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let keys = KeySettings::from_lookup(env.lookup()).map_err(|e| ConfigError::Invalid { variable: "HASHER_*", problem: e.to_string() })?;
        let token = pixl_core::config::api_token(&env, "HASHER_API_TOKEN", "HASHER_API_ALLOW_NO_TOKEN")?;
        Ok(Self {
            bind: env.socket("HASHER_API_HOST", "HASHER_API_PORT", "127.0.0.1", 8000)?,
            token,
            keys,
            project_configs_dir: env.path("PROJECT_CONFIGS_DIR", "projects/configs"),
        })
    }
}

/// Why hasher-api could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    #[error("secret store: {0}")]
    Secrets(#[from] pixl_secrets::SecretError),
    #[error("HTTP server: {0}")]
    Serve(#[from] std::io::Error),
}

/// Serves the API on `listener` until `shutdown` is cancelled.
pub async fn run(config: HasherConfig, listener: TcpListener, shutdown: CancellationToken) -> Result<(), RunFailure> {
    let keys = Arc::new(KeyRing::new(config.keys.open()?, &config));
    let router = api::router(keys, config.token.clone());
    pixl_core::http::serve(listener, router, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<HasherConfig, ConfigError> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        HasherConfig::from_lookup(|name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn refuses_to_run_without_a_token_unless_told_to() {
        let error = config(&[]).unwrap_err().to_string();
        assert!(error.starts_with("HASHER_API_TOKEN is invalid: is required"), "{error}");
        let error = config(&[("HASHER_API_TOKEN", "change-me")]).unwrap_err().to_string();
        assert!(error.contains("placeholder"), "{error}");
        assert!(config(&[("HASHER_API_TOKEN", "4f1c2a-a-real-token")]).unwrap().token.is_some());
        assert!(config(&[("HASHER_API_ALLOW_NO_TOKEN", "true")]).unwrap().token.is_none());
        assert!(config(&[("HASHER_API_ALLOW_NO_TOKEN", "maybe")]).is_err());
    }
}
