//! The secret store: the hashing key, project salts and (later) destination credentials.
//!
//! Two implementations behind one trait: Azure Key Vault (PIXL's production store, through
//! `azure_security_keyvault_secrets` with client-secret credentials) and a local JSON file
//! for development and `pixl demo`. Both are wrapped in a TTL cache. Values are
//! `SecretString`s: they never print, and no error message includes one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};

/// A secret operation that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    /// The store could not be reached or answered with an error: worth retrying later.
    #[error("secret store {store} is unavailable: {problem}")]
    Unavailable { store: &'static str, problem: String },
    #[error("{0:?} is not a valid secret name (1-127 letters, digits and '-')")]
    BadName(String),
    #[error("secret configuration: {0}")]
    Config(String),
}

/// A store of named secrets. Names follow Azure Key Vault's rules (letters, digits, '-').
pub trait SecretStore: Send + Sync + std::fmt::Debug {
    /// The secret's current value, or `None` if there is no such secret.
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<SecretString>, SecretError>>;
    /// Creates or replaces a secret.
    fn set<'a>(&'a self, name: &'a str, value: &'a SecretString) -> BoxFuture<'a, Result<(), SecretError>>;
}

/// Checks Azure Key Vault's naming rule, which the local store follows too.
pub fn check_name(name: &str) -> Result<(), SecretError> {
    let ok = (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok { Ok(()) } else { Err(SecretError::BadName(name.to_owned())) }
}

/// Where a service's secrets come from, read from the environment once at start-up.
#[derive(Debug, Clone)]
pub enum SecretsSettings {
    AzureKeyVault {
        /// `https://<vault>.vault.azure.net/`, or the `*_AZ_KEY_VAULT_URL` override.
        vault_url: String,
        /// True when the vault URL was given explicitly (sovereign clouds, the test fake):
        /// the 401 challenge's resource is then not checked against the vault domain.
        custom_endpoint: bool,
        tenant_id: String,
        client_id: String,
        client_secret: SecretString,
        /// `AZURE_AUTHORITY_HOST`, for clouds other than the public one.
        authority_host: Option<String>,
        /// `PIXL_EXTRA_CA_FILE`: PEM certificates trusted besides the system's.
        extra_ca_file: Option<PathBuf>,
    },
    LocalFile {
        path: PathBuf,
    },
}

/// Full configuration of a service's secret store.
#[derive(Debug, Clone)]
pub struct SecretsConfig {
    pub backend: SecretsSettings,
    pub cache_ttl: Duration,
}

impl SecretsConfig {
    /// Reads `<PREFIX>_AZ_CLIENT_ID`, `_AZ_CLIENT_PASSWORD`, `_AZ_TENANT_ID`,
    /// `_AZ_KEY_VAULT_NAME` (PIXL's names) and `_AZ_KEY_VAULT_URL`; with none of them set,
    /// the local file `PIXL_SECRETS_FILE` is used.
    pub fn from_lookup(prefix: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SecretError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let var = |suffix: &str| format!("{prefix}_AZ_{suffix}");
        let vault_name = get(&var("KEY_VAULT_NAME"));
        let vault_url = get(&var("KEY_VAULT_URL"));
        let ttl_seconds = match get("PIXL_SECRETS_TTL_SECONDS") {
            None => 300,
            Some(text) => {
                text.parse::<u64>().map_err(|_| SecretError::Config(format!("PIXL_SECRETS_TTL_SECONDS is not a whole number of seconds: {text:?}")))?
            }
        };
        let backend = if vault_name.is_some() || vault_url.is_some() {
            let required = |suffix: &str| {
                let name = var(suffix);
                get(&name).ok_or_else(|| SecretError::Config(format!("{name} must be set to use Azure Key Vault")))
            };
            let custom_endpoint = vault_url.is_some();
            let vault_url = match (vault_url, vault_name) {
                (Some(url), _) => url,
                (None, Some(name)) => {
                    check_name(&name).map_err(|_| SecretError::Config(format!("{} is not a Key Vault name", var("KEY_VAULT_NAME"))))?;
                    format!("https://{name}.vault.azure.net/")
                }
                (None, None) => unreachable!("one of the two is set"),
            };
            SecretsSettings::AzureKeyVault {
                vault_url,
                custom_endpoint,
                tenant_id: required("TENANT_ID")?,
                client_id: required("CLIENT_ID")?,
                client_secret: SecretString::from(required("CLIENT_PASSWORD")?),
                authority_host: get("AZURE_AUTHORITY_HOST"),
                extra_ca_file: get("PIXL_EXTRA_CA_FILE").map(PathBuf::from),
            }
        } else {
            SecretsSettings::LocalFile { path: PathBuf::from(get("PIXL_SECRETS_FILE").unwrap_or_else(|| "./secrets/pixl-secrets.json".to_owned())) }
        };
        Ok(Self { backend, cache_ttl: Duration::from_secs(ttl_seconds) })
    }

    /// As [`SecretsConfig::from_lookup`], from the process environment.
    pub fn from_env_prefix(prefix: &str) -> Result<Self, SecretError> {
        Self::from_lookup(prefix, pixl_core::pixl_env::process_lookup)
    }

    /// Builds the store, cached.
    pub fn open(&self) -> Result<Arc<dyn SecretStore>, SecretError> {
        let inner: Arc<dyn SecretStore> = match &self.backend {
            SecretsSettings::LocalFile { path } => Arc::new(LocalFileStore::new(path.clone())),
            SecretsSettings::AzureKeyVault { .. } => Arc::new(AzureKeyVaultStore::new(&self.backend)?),
        };
        Ok(Arc::new(CachedStore::new(inner, self.cache_ttl)))
    }
}

/// Secrets in a JSON object `{name: value}` on local disk, for development and `pixl demo`.
/// Writes go to a temporary file that is renamed over the old one, readable by the owner
/// only.
#[derive(Debug)]
pub struct LocalFileStore {
    path: PathBuf,
    write_lock: tokio::sync::Mutex<()>,
}

impl LocalFileStore {
    pub fn new(path: PathBuf) -> Self {
        Self { path, write_lock: tokio::sync::Mutex::new(()) }
    }

    fn unavailable(&self, problem: impl std::fmt::Display) -> SecretError {
        SecretError::Unavailable { store: "local file", problem: format!("{}: {problem}", self.path.display()) }
    }

    async fn read_all(&self) -> Result<HashMap<String, String>, SecretError> {
        match tokio::fs::read(&self.path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                // serde_json's message names line and column, never the content.
                self.unavailable(format!("not a JSON object of strings ({e})"))
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
            Err(error) => Err(self.unavailable(error)),
        }
    }

    /// Writes a new file with `values` (used by `pixl demo` to create a key).
    pub async fn write_all(&self, values: &HashMap<String, String>) -> Result<(), SecretError> {
        write_private(&self.path, &serde_json::to_vec_pretty(values).expect("strings serialize")).await.map_err(|e| self.unavailable(e))
    }
}

async fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await?;
    }
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    tokio::fs::write(&partial, bytes).await?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600)).await?;
    }
    tokio::fs::rename(&partial, path).await
}

impl SecretStore for LocalFileStore {
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<SecretString>, SecretError>> {
        Box::pin(async move {
            check_name(name)?;
            Ok(self.read_all().await?.remove(name).map(SecretString::from))
        })
    }

    fn set<'a>(&'a self, name: &'a str, value: &'a SecretString) -> BoxFuture<'a, Result<(), SecretError>> {
        Box::pin(async move {
            check_name(name)?;
            let _guard = self.write_lock.lock().await;
            let mut all = self.read_all().await?;
            all.insert(name.to_owned(), value.expose_secret().to_owned());
            self.write_all(&all).await
        })
    }
}

/// Azure Key Vault through the Azure SDK.
pub struct AzureKeyVaultStore {
    client: azure_security_keyvault_secrets::SecretClient,
}

impl std::fmt::Debug for AzureKeyVaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureKeyVaultStore").finish_non_exhaustive()
    }
}

impl AzureKeyVaultStore {
    pub fn new(settings: &SecretsSettings) -> Result<Self, SecretError> {
        use azure_core::http::{ClientOptions, RetryOptions, Transport};
        let SecretsSettings::AzureKeyVault { vault_url, custom_endpoint, tenant_id, client_id, client_secret, authority_host, extra_ca_file } = settings else {
            return Err(SecretError::Config("not an Azure Key Vault configuration".to_owned()));
        };
        let config = |problem: String| SecretError::Config(problem);
        let http = pixl_core::http_client::builder(extra_ca_file.as_deref())
            .map_err(|e| config(e.to_string()))?
            .build()
            .map_err(|e| config(format!("cannot build the HTTP client: {e}")))?;
        let client_options = || {
            let mut options = ClientOptions {
                transport: Some(Transport::new(Arc::new(http.clone()))),
                // Few, quick retries: callers (hasher-api) answer 503 and their caller retries.
                retry: RetryOptions::exponential(azure_core::http::ExponentialRetryOptions {
                    max_retries: 2,
                    initial_delay: azure_core::time::Duration::milliseconds(200),
                    max_delay: azure_core::time::Duration::seconds(2),
                    max_total_elapsed: azure_core::time::Duration::seconds(10),
                }),
                ..Default::default()
            };
            // Always explicit: the SDK would otherwise read AZURE_AUTHORITY_HOST itself, and
            // an empty value (as `.env.sample` has) is not a URL.
            options.cloud = Some(Arc::new(match authority_host {
                Some(host) => {
                    let mut cloud = azure_core::cloud::CustomConfiguration::default();
                    cloud.authority_host = host.clone();
                    cloud.into()
                }
                None => azure_core::cloud::CloudConfiguration::AzurePublic,
            }));
            options
        };
        let credential = azure_identity::ClientSecretCredential::new(
            tenant_id,
            client_id.clone(),
            azure_core::credentials::Secret::new(client_secret.expose_secret().to_owned()),
            Some(azure_identity::ClientSecretCredentialOptions { client_options: client_options() }),
        )
        .map_err(|e| config(format!("Azure credential: {e}")))?;
        let client = azure_security_keyvault_secrets::SecretClient::new(
            vault_url,
            credential,
            Some(azure_security_keyvault_secrets::SecretClientOptions {
                client_options: client_options(),
                verify_challenge_resource: Some(!custom_endpoint),
                ..Default::default()
            }),
        )
        .map_err(|e| config(format!("Key Vault client: {e}")))?;
        Ok(Self { client })
    }
}

fn key_vault_error(error: &azure_core::Error) -> SecretError {
    // The SDK's messages describe the request and status, not secret values.
    SecretError::Unavailable { store: "Azure Key Vault", problem: error.to_string() }
}

impl SecretStore for AzureKeyVaultStore {
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<SecretString>, SecretError>> {
        Box::pin(async move {
            check_name(name)?;
            match self.client.get_secret(name, None).await {
                Ok(response) => {
                    let secret = response.into_model().map_err(|e| key_vault_error(&e))?;
                    Ok(secret.value.map(SecretString::from))
                }
                Err(error) if error.http_status() == Some(azure_core::http::StatusCode::NotFound) => Ok(None),
                Err(error) => Err(key_vault_error(&error)),
            }
        })
    }

    fn set<'a>(&'a self, name: &'a str, value: &'a SecretString) -> BoxFuture<'a, Result<(), SecretError>> {
        Box::pin(async move {
            check_name(name)?;
            let parameters =
                azure_security_keyvault_secrets::models::SetSecretParameters { value: Some(value.expose_secret().to_owned()), ..Default::default() };
            let content = parameters.try_into().map_err(|e: azure_core::Error| key_vault_error(&e))?;
            self.client.set_secret(name, content, None).await.map_err(|e| key_vault_error(&e))?;
            Ok(())
        })
    }
}

/// Caches found secrets for a time to live; misses are not cached, so a secret created
/// elsewhere is seen at once.
#[derive(Debug)]
pub struct CachedStore {
    inner: Arc<dyn SecretStore>,
    ttl: Duration,
    cache: std::sync::Mutex<HashMap<String, (Instant, SecretString)>>,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn SecretStore>, ttl: Duration) -> Self {
        Self { inner, ttl, cache: std::sync::Mutex::new(HashMap::new()) }
    }
}

impl SecretStore for CachedStore {
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<SecretString>, SecretError>> {
        Box::pin(async move {
            if let Some((at, value)) = self.cache.lock().expect("cache lock").get(name)
                && at.elapsed() < self.ttl
            {
                return Ok(Some(value.clone()));
            }
            let value = self.inner.get(name).await?;
            if let Some(value) = &value {
                self.cache.lock().expect("cache lock").insert(name.to_owned(), (Instant::now(), value.clone()));
            }
            Ok(value)
        })
    }

    fn set<'a>(&'a self, name: &'a str, value: &'a SecretString) -> BoxFuture<'a, Result<(), SecretError>> {
        Box::pin(async move {
            self.inner.set(name, value).await?;
            self.cache.lock().expect("cache lock").insert(name.to_owned(), (Instant::now(), value.clone()));
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<SecretsConfig, SecretError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        SecretsConfig::from_lookup("HASHER_API", |name| map.get(name).cloned())
    }

    #[test]
    fn chooses_the_store_from_the_environment() {
        assert!(matches!(config(&[]).unwrap().backend, SecretsSettings::LocalFile { .. }));
        let kv = config(&[
            ("HASHER_API_AZ_KEY_VAULT_NAME", "pixl-kv"),
            ("HASHER_API_AZ_TENANT_ID", "t"),
            ("HASHER_API_AZ_CLIENT_ID", "c"),
            ("HASHER_API_AZ_CLIENT_PASSWORD", "very-secret"),
        ])
        .unwrap();
        match &kv.backend {
            SecretsSettings::AzureKeyVault { vault_url, custom_endpoint, .. } => {
                assert_eq!(vault_url, "https://pixl-kv.vault.azure.net/");
                assert!(!custom_endpoint);
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{kv:?}").contains("very-secret"));
        let missing = config(&[("HASHER_API_AZ_KEY_VAULT_NAME", "pixl-kv")]).unwrap_err().to_string();
        assert!(missing.contains("HASHER_API_AZ_TENANT_ID must be set"), "{missing}");
    }

    #[tokio::test]
    async fn local_file_store_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/secrets.json");
        let store = LocalFileStore::new(path.clone());
        assert!(store.get("hashing-key").await.unwrap().is_none());
        store.set("hashing-key", &SecretString::from("k1")).await.unwrap();
        store.set("my-project", &SecretString::from("a161577b49a9235a")).await.unwrap();
        assert_eq!(store.get("hashing-key").await.unwrap().unwrap().expose_secret(), "k1");
        assert_eq!(store.get("my-project").await.unwrap().unwrap().expose_secret(), "a161577b49a9235a");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(store.get("bad name").await, Err(SecretError::BadName(_))));

        std::fs::write(&path, "{\"a\": \"secret-value\"").unwrap();
        let error = store.get("a").await.unwrap_err().to_string();
        assert!(error.contains("not a JSON object") && !error.contains("secret-value"), "{error}");
    }

    #[tokio::test]
    async fn cache_serves_hits_until_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let inner = Arc::new(LocalFileStore::new(path.clone()));
        inner.set("k", &SecretString::from("v1")).await.unwrap();
        let cached = CachedStore::new(inner.clone(), Duration::from_secs(3600));
        assert_eq!(cached.get("k").await.unwrap().unwrap().expose_secret(), "v1");
        inner.set("k", &SecretString::from("v2")).await.unwrap();
        assert_eq!(cached.get("k").await.unwrap().unwrap().expose_secret(), "v1", "served from cache");
        let expired = CachedStore::new(inner, Duration::ZERO);
        assert_eq!(expired.get("k").await.unwrap().unwrap().expose_secret(), "v2");
    }
}
