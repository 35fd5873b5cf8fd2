//! Outbound HTTPS clients: rustls with the aws-lc-rs provider (the one provider of this
//! workspace), the platform's trust store, and optionally extra CA certificates from a
//! PEM file (`PIXL_EXTRA_CA_FILE`), for hospital proxies and test peers.

use std::path::Path;

/// A client builder that trusts the system roots plus `extra_ca_file`.
pub fn builder(extra_ca_file: Option<&Path>) -> Result<reqwest::ClientBuilder, HttpClientError> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = extra_ca_file {
        let pem = std::fs::read(path).map_err(|e| HttpClientError::CaFile { path: path.to_owned(), problem: e.to_string() })?;
        let certificates =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| HttpClientError::CaFile { path: path.to_owned(), problem: e.to_string() })?;
        if certificates.is_empty() {
            return Err(HttpClientError::CaFile { path: path.to_owned(), problem: "holds no PEM certificate".to_owned() });
        }
        builder = builder.tls_certs_merge(certificates);
    }
    Ok(builder)
}

/// The extra CA file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("extra CA file {path}: {problem}")]
    CaFile { path: std::path::PathBuf, problem: String },
}
