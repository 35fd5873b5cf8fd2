//! The `ftps` destination, with suppaftp on tokio and rustls (aws-lc-rs).
//!
//! Implicit TLS (PIXL's mode, port 990) or explicit TLS (`AUTH TLS`, port 21), chosen by
//! `EXPORT_FTPS_TLS`; `PBSZ 0` + `PROT P` in both, so the data connections are encrypted
//! too. The server's certificate is verified against the system's CAs plus
//! `PIXL_EXTRA_CA_FILE`. Credentials are the project's secrets `<prefix>--ftp--host`,
//! `--ftp--port`, `--ftp--username`, `--ftp--password`.
//!
//! Layout, as PIXL's: a study goes to `<slug>/<pseudo study uid>.zip`, parquet files to
//! `<slug>/<extract time slug>/parquet/<relative path>`; directories are created as needed.
//! Each file is stored under a hidden temporary name (`.<name>.partial`) in binary mode,
//! its size checked when the server supports SIZE, then renamed: a reader never sees half
//! a file, and the retry after a crash overwrites the partial file it left.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};
use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream};
use suppaftp::types::FileType;
use suppaftp::{FtpError, Status};
use tokio::io::AsyncWriteExt;

use super::{DestinationSettings, FtpsTls, ParquetBundle, ProjectSecrets, StudyPackage, UploadError, Uploader};

const KIND: &str = "ftps";

/// Longest wait for any one step (a command's reply, one chunk written). A large file
/// takes as long as it needs, as long as it keeps moving.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Bytes per read of the file and write to the data connection: large enough to keep
/// system calls few, small enough that reading the next one overlaps sending this one.
const CHUNK: usize = 256 * 1024;

/// Chunks in flight between the reader thread and the connection.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Where and as whom to log in. `Debug` shows none of it: the values come from the
/// secret store.
#[derive(Clone)]
pub struct FtpsEndpoint {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: SecretString,
    pub tls: FtpsTls,
}

impl std::fmt::Debug for FtpsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpsEndpoint").field("tls", &self.tls).finish_non_exhaustive()
    }
}

/// Uploads over FTPS.
#[derive(Debug, Clone)]
pub struct FtpsUploader {
    endpoint: FtpsEndpoint,
    tls: Arc<ClientConfig>,
    /// Names the secrets in error messages ("check <prefix>--ftp--password").
    secret_prefix: String,
}

/// TLS client settings trusting the system's CAs plus the PEM certificates in
/// `extra_ca_file`.
pub fn tls_client_config(extra_ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, UploadError> {
    let mut roots = rustls::RootCertStore::empty();
    // Certificates the system store holds but rustls cannot parse are skipped, as browsers do.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca_file {
        let problem = |e: String| UploadError::permanent(KIND, format!("PIXL_EXTRA_CA_FILE {}: {e}", path.display()));
        let certificates: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(path).map_err(|e| problem(e.to_string()))?.collect::<Result<_, _>>().map_err(|e| problem(e.to_string()))?;
        if certificates.is_empty() {
            return Err(problem("holds no PEM certificate".to_owned()));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|e| problem(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UploadError::permanent(KIND, format!("TLS settings: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl FtpsUploader {
    pub fn new(endpoint: FtpsEndpoint, tls: Arc<ClientConfig>, secret_prefix: impl Into<String>) -> Self {
        Self { endpoint, tls, secret_prefix: secret_prefix.into() }
    }

    /// From the project's secrets; the port defaults to 990 (implicit) or 21 (explicit).
    pub async fn from_secrets(secrets: &ProjectSecrets<'_>, settings: &DestinationSettings, tls: Arc<ClientConfig>) -> Result<Self, UploadError> {
        let default_port = match settings.ftps_tls {
            FtpsTls::Implicit => 990,
            FtpsTls::Explicit => 21,
        };
        let endpoint = FtpsEndpoint {
            host: secrets.required("ftp", "host").await?.expose_secret().trim().to_owned(),
            port: secrets.port("ftp", default_port).await?,
            username: secrets.required("ftp", "username").await?.expose_secret().trim().to_owned(),
            password: secrets.required("ftp", "password").await?,
            tls: settings.ftps_tls,
        };
        Ok(Self::new(endpoint, tls, secrets.prefix))
    }

    /// Logs in; the session is ready for binary transfers at its home directory.
    async fn open(&self) -> Result<Session, UploadError> {
        let host = self.endpoint.host.as_str();
        let address = (host, self.endpoint.port);
        let connector = || AsyncRustlsConnector::from(tokio_rustls::TlsConnector::from(Arc::clone(&self.tls)));
        let mut ftp = match self.endpoint.tls {
            FtpsTls::Implicit => self.step("connect (implicit TLS)", AsyncRustlsFtpStream::connect_secure_implicit(address, connector(), host)).await?,
            FtpsTls::Explicit => {
                let plain = self.step("connect", AsyncRustlsFtpStream::connect(address)).await?;
                self.step("AUTH TLS", plain.into_secure(connector(), host)).await?
            }
        };
        self.step("login", ftp.login(self.endpoint.username.as_str(), self.endpoint.password.expose_secret())).await?;
        if self.endpoint.tls == FtpsTls::Implicit {
            // `into_secure` sends these for explicit TLS; implicit sessions must ask too, or
            // the server would expect clear data connections.
            self.step("PBSZ", ftp.custom_command("PBSZ 0", &[Status::CommandOk])).await?;
            self.step("PROT P", ftp.custom_command("PROT P", &[Status::CommandOk])).await?;
        }
        self.step("TYPE I", ftp.transfer_type(FileType::Binary)).await?;
        let home = self.step("PWD", ftp.pwd()).await?;
        Ok(Session { ftp, home })
    }

    /// Runs one FTP step with the idle timeout, classifying its failure.
    async fn step<T>(&self, what: &str, operation: impl Future<Output = Result<T, FtpError>>) -> Result<T, UploadError> {
        match tokio::time::timeout(IDLE_TIMEOUT, operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.classify(what, error)),
            Err(_) => Err(UploadError::transient(KIND, format!("{what}: no answer from the FTPS server within {} s", IDLE_TIMEOUT.as_secs()))),
        }
    }

    /// What a failure means for retrying, in words an operator can act on. Server replies
    /// are quoted by code only where their text may echo a user name.
    fn classify(&self, what: &str, error: FtpError) -> UploadError {
        let prefix = &self.secret_prefix;
        match error {
            FtpError::ConnectionError(io) => UploadError::transient(KIND, format!("{what}: cannot reach the FTPS server: {io}")),
            FtpError::SecureError(problem) if problem.contains("certificate") || problem.contains("Certificate") => UploadError::permanent(
                KIND,
                format!(
                    "{what}: the FTPS server's certificate is not trusted ({problem}); add its CA to PIXL_EXTRA_CA_FILE or check secret {prefix}--ftp--host"
                ),
            ),
            FtpError::SecureError(problem) => UploadError::transient(KIND, format!("{what}: TLS with the FTPS server failed: {problem}")),
            FtpError::UnexpectedResponse(response) => {
                let code = response.status.code();
                if code == 530 {
                    return UploadError::permanent(
                        KIND,
                        format!("{what}: the FTPS server refused the login (530); check secrets {prefix}--ftp--username and {prefix}--ftp--password"),
                    );
                }
                let text = String::from_utf8_lossy(&response.body);
                let text: String = text.trim().chars().take(200).collect();
                let problem = format!("{what}: the FTPS server answered {text}");
                // RFC 959: 4xx replies are transient, 5xx permanent.
                if (400..500).contains(&code) { UploadError::transient(KIND, problem) } else { UploadError::permanent(KIND, problem) }
            }
            FtpError::InvalidAddress(error) => UploadError::permanent(KIND, format!("{what}: the server sent an invalid address: {error}")),
            other => UploadError::transient(KIND, format!("{what}: {other}")),
        }
    }

    /// Stores `source` at `components` (directories, then the file name) under the home
    /// directory, atomically. Returns the remote path.
    /// With `once`, a file of that name and size already there is taken as this file
    /// uploaded before (a study zip whose export was not recorded: the database went away
    /// between the upload and the commit) and is not sent again.
    async fn put(&self, session: &mut Session, components: &[String], source: &Path, once: bool) -> Result<String, UploadError> {
        let (name, directories) = components.split_last().ok_or_else(|| UploadError::permanent(KIND, "empty remote path"))?;
        let ftp = &mut session.ftp;
        self.step("CWD", ftp.cwd(session.home.as_str())).await?;
        for directory in directories {
            if ftp.cwd(directory.as_str()).await.is_err() {
                // Another upload may create it at the same moment; the CWD after tells.
                let _ = ftp.mkdir(directory.as_str()).await;
                self.step("CWD", ftp.cwd(directory.as_str())).await?;
            }
        }
        let partial = format!(".{name}.partial");
        // Opened before STOR, so a missing file fails without touching the server.
        let file = std::fs::File::open(source).map_err(|e| UploadError::transient(KIND, format!("cannot read the file to upload: {e}")))?;
        let size = file.metadata().map_err(|e| UploadError::transient(KIND, format!("cannot read the file to upload: {e}")))?.len();
        if once
            && let Ok(Ok(stored)) = tokio::time::timeout(IDLE_TIMEOUT, ftp.size(name.as_str())).await
            && stored as u64 == size
        {
            tracing::info!(bytes = size, "the study's zip is already on the server (an upload whose export was not recorded); not sent again");
            return Ok(components.join("/"));
        }
        let mut transfer = self.step("STOR", ftp.put_with_stream(partial.as_str())).await?;
        send_file(file, &mut transfer).await?;
        self.step("end of transfer", transfer.finish()).await?;
        // SIZE is an extension; a server without it is trusted on its 226.
        if let Ok(Ok(stored)) = tokio::time::timeout(IDLE_TIMEOUT, ftp.size(partial.as_str())).await
            && stored as u64 != size
        {
            return Err(UploadError::transient(KIND, format!("the server holds {stored} of {size} bytes after the transfer")));
        }
        if ftp.rename(partial.as_str(), name.as_str()).await.is_err() {
            // Some servers will not rename over an existing file (an earlier upload of the
            // same study whose completion was not recorded): replace it.
            let _ = ftp.rm(name.as_str()).await;
            self.step("RNFR/RNTO", ftp.rename(partial.as_str(), name.as_str())).await?;
        }
        Ok(components.join("/"))
    }

    /// Uploads each `(local file, remote components)` in one session, in order.
    pub async fn put_files(&self, files: &[(&Path, Vec<String>)], once: bool) -> Result<Vec<String>, UploadError> {
        let mut session = self.open().await?;
        let mut stored = Vec::with_capacity(files.len());
        for (source, components) in files {
            stored.push(self.put(&mut session, components, source, once).await?);
        }
        // The files are in place; a failing QUIT changes nothing.
        let _ = tokio::time::timeout(IDLE_TIMEOUT, session.ftp.quit()).await;
        Ok(stored)
    }
}

/// Copies `file` to the data connection. A blocking thread reads chunks ahead into a small
/// ring of reused buffers while this task writes, so the file and the network are busy at
/// once and no chunk is allocated or handed to a thread pool per read.
async fn send_file<W: tokio::io::AsyncWrite + Unpin>(mut file: std::fs::File, transfer: &mut W) -> Result<(), UploadError> {
    use std::io::Read;
    let (full_tx, mut full_rx) = tokio::sync::mpsc::channel::<std::io::Result<(Vec<u8>, usize)>>(CHUNKS_IN_FLIGHT);
    let (empty_tx, mut empty_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    for _ in 0..CHUNKS_IN_FLIGHT {
        empty_tx.try_send(vec![0u8; CHUNK]).expect("room for every buffer");
    }
    let reader = tokio::task::spawn_blocking(move || {
        // Ends when the file is read, or when the writer stops taking chunks.
        while let Some(mut buffer) = empty_rx.blocking_recv() {
            let read = match file.read(&mut buffer) {
                Ok(0) => return,
                Ok(read) => read,
                Err(error) => {
                    let _ = full_tx.blocking_send(Err(error));
                    return;
                }
            };
            if full_tx.blocking_send(Ok((buffer, read))).is_err() {
                return;
            }
        }
    });
    while let Some(chunk) = full_rx.recv().await {
        let (buffer, read) = chunk.map_err(|e| UploadError::transient(KIND, format!("cannot read the file to upload: {e}")))?;
        match tokio::time::timeout(IDLE_TIMEOUT, transfer.write_all(&buffer[..read])).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(UploadError::transient(KIND, format!("upload interrupted: {error}"))),
            Err(_) => return Err(UploadError::transient(KIND, format!("upload stalled for {} s", IDLE_TIMEOUT.as_secs()))),
        }
        // The reader may have finished and dropped its receiver; then the buffer is not needed.
        let _ = empty_tx.send(buffer).await;
    }
    reader.await.map_err(|e| UploadError::transient(KIND, format!("file reader: {e}")))?;
    Ok(())
}

/// A logged-in FTPS session.
struct Session {
    ftp: AsyncRustlsFtpStream,
    /// The login directory, where every remote path starts.
    home: String,
}

impl Uploader for FtpsUploader {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn upload_study<'a>(&'a self, study: &'a StudyPackage) -> BoxFuture<'a, Result<String, UploadError>> {
        Box::pin(async move {
            let mut stored = self.put_files(&[(study.zip.as_path(), study.remote_path())], true).await?;
            Ok(stored.remove(0))
        })
    }

    fn upload_parquet<'a>(&'a self, bundle: &'a ParquetBundle) -> BoxFuture<'a, Result<Vec<String>, UploadError>> {
        Box::pin(async move {
            let mut files = Vec::with_capacity(bundle.files.len());
            for relative in &bundle.files {
                super::check_relative(relative)?;
                files.push((bundle.root.join(relative), bundle.remote_path(relative)));
            }
            let borrowed: Vec<(&Path, Vec<String>)> = files.iter().map(|(path, remote)| (path.as_path(), remote.clone())).collect();
            self.put_files(&borrowed, false).await
        })
    }
}
