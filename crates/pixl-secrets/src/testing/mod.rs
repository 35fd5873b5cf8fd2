//! Test support: a local HTTPS fake of Entra ID and Key Vault (Azure cannot run here).

pub mod fake_key_vault;
