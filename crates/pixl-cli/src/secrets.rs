//! `pixl secrets init`: creates the local secrets file (development, `pixl demo`) with a
//! new random hashing key. Never replaces an existing key: pseudonyms depend on it.

use std::path::PathBuf;

use pixl_secrets::{LocalFileStore, SecretError, SecretStore, SecretsConfig, SecretsSettings};
use secrecy::SecretString;

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    Created(PathBuf),
    AlreadyThere(PathBuf),
}

/// Creates the hashing key `key_name` in the local secrets file of `config`.
pub async fn init(config: &SecretsConfig, key_name: &str) -> Result<InitOutcome, SecretError> {
    let SecretsSettings::LocalFile { path } = &config.backend else {
        return Err(SecretError::Config("HASHER_API_AZ_* variables are set: secrets live in Azure Key Vault, and the hashing key is managed there".to_owned()));
    };
    let store = LocalFileStore::new(path.clone());
    if store.get(key_name).await?.is_some() {
        return Ok(InitOutcome::AlreadyThere(path.clone()));
    }
    store.set(key_name, &SecretString::from(pixl_core::hashing::new_hashing_key())).await?;
    Ok(InitOutcome::Created(path.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_a_key_once_and_never_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets/pixl-secrets.json");
        let path_text = path.display().to_string();
        let config = SecretsConfig::from_lookup("HASHER_API", |name| (name == "PIXL_SECRETS_FILE").then(|| path_text.clone())).unwrap();
        assert_eq!(init(&config, "hashing-key").await.unwrap(), InitOutcome::Created(path.clone()));
        let first = std::fs::read_to_string(&path).unwrap();
        assert_eq!(init(&config, "hashing-key").await.unwrap(), InitOutcome::AlreadyThere(path.clone()));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
        let values: std::collections::HashMap<String, String> = serde_json::from_str(&first).unwrap();
        assert_eq!(values["hashing-key"].len(), 64);

        let kv = SecretsConfig::from_lookup("HASHER_API", |name| match name {
            "HASHER_API_AZ_KEY_VAULT_NAME" => Some("kv".to_owned()),
            name if name.starts_with("HASHER_API_AZ_") => Some("x".to_owned()),
            _ => None,
        })
        .unwrap();
        assert!(init(&kv, "hashing-key").await.is_err());
    }
}
