//! A throw-away certificate authority and a server certificate for 127.0.0.1/localhost,
//! made at test time, for HTTPS and FTPS peers.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A CA and a server certificate it signed, in PEM.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl TestPki {
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.distinguished_name.push(DnType::CommonName, "pixl test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("server key");
        let mut server_params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("server params");
        server_params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        let server_cert = server_params.signed_by(&server_key, &issuer).expect("server certificate");
        Self { ca_pem: ca_cert.pem(), server_cert_pem: server_cert.pem(), server_key_pem: server_key.serialize_pem() }
    }

    /// Writes the CA certificate to `dir/ca.pem` and returns its path.
    pub fn write_ca(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem).expect("write CA");
        path
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `router` over HTTPS on 127.0.0.1 (random port) with `pki`'s server certificate,
/// until the returned handle shuts it down. For fakes of services that only speak HTTPS.
pub fn serve_https(router: axum::Router, pki: &TestPki) -> (std::net::SocketAddr, axum_server::Handle<std::net::SocketAddr>) {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().expect("certificate PEM");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).expect("key PEM");
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate");
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(std::sync::Arc::new(server_config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let address = listener.local_addr().expect("address");
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, tls).expect("server").handle(handle.clone());
    tokio::spawn(async move {
        let _ = server.serve(router.into_make_service()).await;
    });
    (address, handle)
}
