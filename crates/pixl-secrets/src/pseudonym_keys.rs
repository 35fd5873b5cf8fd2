//! Where a project's hashing keys come from: the deployment key and the project salt in
//! the secret store, the local salt from the environment, the algorithm from the
//! deployment or the project. Shared by the hasher-api and the offline `pixl anonymise`,
//! so both compute the same pseudonyms.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::store::{SecretError, SecretStore, SecretsConfig};
use pixl_core::hashing::{HashAlgorithm, HashError, ProjectKeys, new_project_salt};
use pixl_core::project_config::LoadedProject;

/// The environment's say on keys: `HASHER_ALGORITHM`, `AZURE_KEY_VAULT_SECRET_NAME`,
/// `LOCAL_SALT_VALUE` and the secret store (`HASHER_API_AZ_*` or `PIXL_SECRETS_FILE`).
#[derive(Debug, Clone)]
pub struct KeySettings {
    pub algorithm: HashAlgorithm,
    pub key_secret_name: String,
    pub local_salt: SecretString,
    pub secrets: SecretsConfig,
}

impl KeySettings {
    pub fn from_env() -> Result<Self, SecretError> {
        Self::from_lookup(pixl_core::pixl_env::process_lookup)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SecretError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let algorithm = match get("HASHER_ALGORITHM") {
            None => HashAlgorithm::HmacSha256,
            Some(text) => {
                HashAlgorithm::parse(&text).ok_or_else(|| SecretError::Config(format!("HASHER_ALGORITHM: {text:?} is neither hmac-sha256 nor pixl-blake2b")))?
            }
        };
        Ok(Self {
            algorithm,
            key_secret_name: get("AZURE_KEY_VAULT_SECRET_NAME").unwrap_or_else(|| "hashing-key".to_owned()),
            local_salt: SecretString::from(get("LOCAL_SALT_VALUE").unwrap_or_default()),
            secrets: SecretsConfig::from_lookup("HASHER_API", &lookup)?,
        })
    }

    /// Opens the secret store.
    pub fn open(&self) -> Result<KeySource, SecretError> {
        Ok(KeySource {
            store: self.secrets.open()?,
            key_secret_name: self.key_secret_name.clone(),
            local_salt: self.local_salt.clone(),
            default_algorithm: self.algorithm,
        })
    }
}

/// Why a project's keys could not be assembled. Never holds a key or salt.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] SecretError),
    #[error("the hashing key (secret {0:?}) is missing from the secret store (local mode: create it with `pixl secrets init`)")]
    MissingKey(String),
    #[error("{0}")]
    Hash(#[from] HashError),
}

/// The deployment-wide inputs of every project's keys.
#[derive(Debug, Clone)]
pub struct KeySource {
    pub store: Arc<dyn SecretStore>,
    /// Name of the secret holding the hashing key (`AZURE_KEY_VAULT_SECRET_NAME`).
    pub key_secret_name: String,
    /// PIXL's `LOCAL_SALT_VALUE`.
    pub local_salt: SecretString,
    /// `HASHER_ALGORITHM`, unless the project overrides it.
    pub default_algorithm: HashAlgorithm,
}

impl KeySource {
    /// Reads the key and the project salt, creating and storing the salt (16 random hex
    /// characters) if the project has none yet. The salt is the secret named by the
    /// project slug, as PIXL's hasher names it (not the `azure_kv_alias`, which names the
    /// project's destination secrets); a salt an earlier pixl stored under the alias is
    /// still found there, so its pseudonyms stay.
    pub async fn project_keys(&self, project: &LoadedProject) -> Result<ProjectKeys, KeyError> {
        let algorithm = project.config.hash_algorithm.unwrap_or(self.default_algorithm);
        let key = self.store.get(&self.key_secret_name).await?.ok_or_else(|| KeyError::MissingKey(self.key_secret_name.clone()))?;
        let salt_name = project.slug.as_str();
        let alias = project.secret_prefix();
        let salt = match self.store.get(salt_name).await? {
            Some(salt) => salt,
            None => match if alias != salt_name { self.store.get(alias).await? } else { None } {
                Some(salt) => {
                    tracing::info!(project = %project.slug, "the project salt was found under its azure_kv_alias (stored so by an earlier pixl)");
                    salt
                }
                None => {
                    let salt = SecretString::from(new_project_salt());
                    self.store.set(salt_name, &salt).await?;
                    tracing::info!(project = %project.slug, "created the project salt");
                    salt
                }
            },
        };
        Ok(ProjectKeys::new(key.expose_secret().as_bytes().to_vec(), salt.expose_secret().to_owned(), self.local_salt.expose_secret().to_owned(), algorithm)?)
    }
}
