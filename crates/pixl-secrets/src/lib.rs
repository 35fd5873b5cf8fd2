//! Secrets: the secret-store trait with its Azure Key Vault and local-file stores, and the
//! assembly of a project's hashing keys from them.
//!
//! Kept apart from `pixl-core` so that the Azure SDK is linked only by the binaries that
//! read secrets (hasher-api, export-api, the `pixl` command), not by every service.

pub mod destinations;
pub mod pseudonym_keys;
pub mod store;

pub use store::{AzureKeyVaultStore, CachedStore, LocalFileStore, SecretError, SecretStore, SecretsConfig, SecretsSettings, check_name};

#[cfg(feature = "test-support")]
pub mod testing;
