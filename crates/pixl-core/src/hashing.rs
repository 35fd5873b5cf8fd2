//! Keyed hashing of identifiers into pseudonyms. Pure functions; the keys come from the
//! secret store through the hasher-api.
//!
//! Two algorithms:
//! - `hmac-sha256` (default): HMAC-SHA256 of the message under a per-project key, which is
//!   itself HMAC-SHA256 of the project salt under the deployment key. Hex, truncated.
//! - `pixl-blake2b`: byte-for-byte what PIXL computes, so a site moving from PIXL keeps its
//!   pseudonyms: keyed BLAKE2b of `message + project_salt + local_salt` with the
//!   deployment key, digest size `length / 2` bytes.

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Shortest and longest pseudonym, in hex characters.
pub const MIN_LENGTH: usize = 2;
pub const MAX_LENGTH: usize = 64;

/// A hashing scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashAlgorithm {
    HmacSha256,
    PixlBlake2b,
}

impl HashAlgorithm {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "hmac-sha256" => Some(Self::HmacSha256),
            "pixl-blake2b" => Some(Self::PixlBlake2b),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::PixlBlake2b => "pixl-blake2b",
        }
    }
}

/// Why a hash could not be computed. Never carries the message or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("length must be from {MIN_LENGTH} to {MAX_LENGTH}, got {0}")]
    BadLength(usize),
    #[error("message is empty")]
    EmptyMessage,
    #[error("the hashing key is empty")]
    EmptyKey,
    #[error("the hashing key is longer than 64 bytes, which keyed BLAKE2b does not allow")]
    KeyTooLong,
}

/// The secrets one project's hashes depend on. Every one is wiped from memory when the
/// keys are dropped, and none is reachable from outside.
#[derive(Clone)]
pub struct ProjectKeys {
    /// The deployment's hashing key.
    key: Zeroizing<Vec<u8>>,
    /// The project's salt (16 hex characters when pixl created it).
    project_salt: Zeroizing<String>,
    /// The deployment's local salt (PIXL's `LOCAL_SALT_VALUE`).
    local_salt: Zeroizing<String>,
    pub algorithm: HashAlgorithm,
    /// For `hmac-sha256`: HMAC-SHA256(key, project_salt), computed once.
    derived_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for ProjectKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectKeys").field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl ProjectKeys {
    pub fn new(key: Vec<u8>, project_salt: String, local_salt: String, algorithm: HashAlgorithm) -> Result<Self, HashError> {
        if key.is_empty() {
            return Err(HashError::EmptyKey);
        }
        if algorithm == HashAlgorithm::PixlBlake2b && key.len() > blake2b_simd::KEYBYTES {
            return Err(HashError::KeyTooLong);
        }
        let (key, project_salt, local_salt) = (Zeroizing::new(key), Zeroizing::new(project_salt), Zeroizing::new(local_salt));
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("HMAC takes keys of any length");
        mac.update(project_salt.as_bytes());
        let derived_key = Zeroizing::new(mac.finalize().into_bytes().into());
        Ok(Self { key, project_salt, local_salt, algorithm, derived_key })
    }

    /// The pseudonym of `message`: `length` hex characters (for `pixl-blake2b` an odd
    /// length gives one fewer, as in PIXL).
    pub fn hash(&self, message: &str, length: usize) -> Result<String, HashError> {
        if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
            return Err(HashError::BadLength(length));
        }
        if message.is_empty() {
            return Err(HashError::EmptyMessage);
        }
        Ok(match self.algorithm {
            HashAlgorithm::HmacSha256 => {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.derived_key.as_slice()).expect("32-byte key");
                mac.update(message.as_bytes());
                let mut digest = hex::encode(mac.finalize().into_bytes());
                digest.truncate(length);
                digest
            }
            HashAlgorithm::PixlBlake2b => {
                let hash = blake2b_simd::Params::new()
                    .hash_length(length / 2)
                    .key(&self.key)
                    .to_state()
                    .update(message.as_bytes())
                    .update(self.project_salt.as_bytes())
                    .update(self.local_salt.as_bytes())
                    .finalize();
                hash.to_hex().to_string()
            }
        })
    }
}

/// A new deployment hashing key: 32 random bytes as 64 hex characters (BLAKE2b's
/// maximum key length, so it suits both algorithms).
pub fn new_hashing_key() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A new project salt: 16 random hex characters, as PIXL makes them.
pub fn new_project_salt() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixl_keys(algorithm: HashAlgorithm) -> ProjectKeys {
        ProjectKeys::new(b"test-key".to_vec(), "a161577b49a9235a".into(), "pixl_salt".into(), algorithm).unwrap()
    }

    /// PIXL's own known answers, and ours.
    #[test]
    fn known_answers() {
        let cases = [
            (HashAlgorithm::PixlBlake2b, "test", 64, "cc8ab6f3e63235b45f3d00cbc4873efac59bf15cec4bdffd461882d57dfc010f"),
            (HashAlgorithm::PixlBlake2b, "test", 16, "b721eef65328a79c"),
            // Odd lengths give length - 1 characters, as PIXL's digest_size = length // 2.
            (HashAlgorithm::PixlBlake2b, "test", 15, "34eb494968bd7d"),
            // Checked with Python: hmac.new(hmac.new(key, salt, sha256).digest(), msg, sha256).
            (HashAlgorithm::HmacSha256, "test", 64, "c2ea264dcd66475a0db4df97d0a72d17c0cce1c8cc9e07e9b5cd65327ba3025e"),
        ];
        for (algorithm, message, length, expected) in cases {
            assert_eq!(pixl_keys(algorithm).hash(message, length).unwrap(), expected, "{algorithm:?} {length}");
        }
    }

    #[test]
    fn hmac_truncates_and_depends_on_every_secret() {
        let keys = pixl_keys(HashAlgorithm::HmacSha256);
        let full = keys.hash("987654321", 64).unwrap();
        assert_eq!(keys.hash("987654321", 10).unwrap(), full[..10]);
        let other_salt = ProjectKeys::new(b"test-key".to_vec(), "b161577b49a9235a".into(), "pixl_salt".into(), HashAlgorithm::HmacSha256).unwrap();
        assert_ne!(other_salt.hash("987654321", 64).unwrap(), full);
        let other_key = ProjectKeys::new(b"test-key2".to_vec(), "a161577b49a9235a".into(), "pixl_salt".into(), HashAlgorithm::HmacSha256).unwrap();
        assert_ne!(other_key.hash("987654321", 64).unwrap(), full);
    }

    #[test]
    fn bad_input_is_rejected_without_echo() {
        let keys = pixl_keys(HashAlgorithm::HmacSha256);
        assert_eq!(keys.hash("x", 1), Err(HashError::BadLength(1)));
        assert_eq!(keys.hash("x", 65), Err(HashError::BadLength(65)));
        assert_eq!(keys.hash("", 8), Err(HashError::EmptyMessage));
        assert_eq!(ProjectKeys::new(vec![], String::new(), String::new(), HashAlgorithm::HmacSha256).unwrap_err(), HashError::EmptyKey);
        assert_eq!(ProjectKeys::new(vec![1; 65], String::new(), String::new(), HashAlgorithm::PixlBlake2b).unwrap_err(), HashError::KeyTooLong);
        assert!(!format!("{keys:?}").contains("test-key"));
    }

    #[test]
    fn salts_are_sixteen_hex_characters() {
        let salt = new_project_salt();
        assert_eq!(salt.len(), 16);
        assert!(salt.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(salt, new_project_salt());
    }
}
