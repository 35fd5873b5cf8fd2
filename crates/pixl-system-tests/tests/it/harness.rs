//! The pixl services in this test process, started the way their binaries start them:
//! hasher-api (local keys, a bearer token), anon-node, imaging-api and export-api, each on
//! port 0 unless a test needs a known port, all stopped through one cancellation token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pixl_core::hasher_client::HasherClientConfig;
use pixl_core::testing::TestContext;
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The bearer tokens of the services in these tests.
pub const HASHER_TOKEN: &str = "system-test-hasher-token";
pub const ANON_NODE_TOKEN: &str = "system-test-anon-node-token";
pub const EHR_TOKEN: &str = "system-test-ehr-api-token";

/// A service task: its error as text.
pub type Task = JoinHandle<Result<(), String>>;

/// A lookup over `vars`, as the services' `from_lookup` take.
pub fn lookup(vars: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
}

/// Services of one test, stopped together.
#[derive(Debug, Default)]
pub struct Services {
    pub shutdown: CancellationToken,
    tasks: Vec<(&'static str, Task)>,
}

impl Services {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, name: &'static str, task: Task) {
        self.tasks.push((name, task));
    }

    /// hasher-api with the local secrets file `dir/hasher-secrets.json` (created with
    /// `key` if missing).
    pub async fn hasher(&mut self, dir: &Path, configs: &Path, key: &str) -> HasherClientConfig {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.hasher_on(listener, dir, configs, key).await
    }

    /// As [`Services::hasher`], on `listener` (a port reserved earlier: a hasher started
    /// late).
    pub async fn hasher_on(&mut self, listener: tokio::net::TcpListener, dir: &Path, configs: &Path, key: &str) -> HasherClientConfig {
        let secrets = dir.join("hasher-secrets.json");
        if !secrets.exists() {
            std::fs::write(&secrets, serde_json::json!({ "hashing-key": key }).to_string()).unwrap();
        }
        self.hasher_with(listener, &secrets, configs).await
    }

    /// hasher-api on `listener` with the local secrets file `secrets` (shared with an
    /// offline `pixl anonymise`, so both use the same project salts).
    pub async fn hasher_with(&mut self, listener: tokio::net::TcpListener, secrets: &Path, configs: &Path) -> HasherClientConfig {
        let config = pixl_hasher_api::HasherConfig::from_lookup(lookup(vec![
            ("PIXL_SECRETS_FILE", secrets.display().to_string()),
            ("PROJECT_CONFIGS_DIR", configs.display().to_string()),
            ("HASHER_API_TOKEN", HASHER_TOKEN.to_owned()),
        ]))
        .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = self.shutdown.clone();
        self.push("hasher-api", tokio::spawn(async move { pixl_hasher_api::run(config, listener, shutdown).await.map_err(|e| e.to_string()) }));
        hasher_client(&url)
    }

    /// anon-node for archives `callers`, with its raw cache and anon store under `dir`;
    /// the SCP on `dicom_port` (0: any; `None`: no SCP, a consumer replica). `extra`
    /// variables override the defaults.
    pub async fn anon_node(
        &mut self,
        ctx: &TestContext,
        dir: &Path,
        callers: &str,
        dicom_port: Option<u16>,
        hasher: HasherClientConfig,
        extra: Vec<(&'static str, String)>,
    ) -> AnonNode {
        self.anon_node_with(&ctx.settings, dir, callers, dicom_port, hasher, extra).await
    }

    /// As [`Services::anon_node`], with explicit settings (another project configs
    /// directory, say).
    pub async fn anon_node_with(
        &mut self,
        settings: &pixl_core::config::Settings,
        dir: &Path,
        callers: &str,
        dicom_port: Option<u16>,
        hasher: HasherClientConfig,
        extra: Vec<(&'static str, String)>,
    ) -> AnonNode {
        let raw_cache = dir.join("raw-cache");
        let anon_store = dir.join("anon-store");
        let mut vars = vec![
            ("ANON_NODE_ALLOWED_CALLERS", callers.to_owned()),
            ("ANON_NODE_RAW_CACHE_DIR", raw_cache.display().to_string()),
            ("ANON_NODE_ANON_STORE_DIR", anon_store.display().to_string()),
            ("ANON_NODE_API_TOKEN", ANON_NODE_TOKEN.to_owned()),
            ("ANON_NODE_SCP", dicom_port.is_some().to_string()),
        ];
        vars.retain(|(name, _)| !extra.iter().any(|(other, _)| other == name));
        vars.extend(extra);
        let config = pixl_anon_node::AnonNodeConfig::from_lookup(lookup(vars)).unwrap();
        let dicom = match dicom_port {
            Some(port) => Some(tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap()),
            None => None,
        };
        let dicom_port = dicom.as_ref().map(|d| d.local_addr().unwrap().port());
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_address = http.local_addr().unwrap();
        let (settings, shutdown) = (settings.clone(), self.shutdown.clone());
        self.push(
            "anon-node",
            tokio::spawn(async move { pixl_anon_node::service::run(config, &settings, hasher, dicom, http, shutdown).await.map_err(|e| e.to_string()) }),
        );
        AnonNode { dicom_port, http: http_address, url: format!("http://{http_address}"), raw_cache, anon_store }
    }

    /// imaging-api for archive `vna` (and `pacs`), moving to anon-node at `anon_url`.
    pub async fn imaging_api(
        &mut self,
        ctx: &TestContext,
        vna: &pixl_core::testing::peers::Peer,
        pacs: Option<&pixl_core::testing::peers::Peer>,
        anon_url: &str,
        extra: Vec<(&'static str, String)>,
    ) -> SocketAddr {
        let pacs = pacs.map(|pacs| (pacs.ae_title.as_str(), pacs.dicom_port));
        self.imaging_api_at(ctx, (&vna.ae_title, vna.dicom_port), pacs, anon_url, extra).await
    }

    /// As [`Services::imaging_api`], for archives given by AE title and port.
    pub async fn imaging_api_at(
        &mut self,
        ctx: &TestContext,
        vna: (&str, u16),
        pacs: Option<(&str, u16)>,
        anon_url: &str,
        extra: Vec<(&'static str, String)>,
    ) -> SocketAddr {
        let mut vars = vec![
            ("PRIMARY_DICOM_SOURCE_AE_TITLE", vna.0.to_owned()),
            ("PRIMARY_DICOM_SOURCE_PORT", vna.1.to_string()),
            ("ANON_NODE_URL", anon_url.to_owned()),
            ("ANON_NODE_API_TOKEN", ANON_NODE_TOKEN.to_owned()),
            ("IMAGING_API_RATE", "50".to_owned()),
            ("IMAGING_API_RETRY_PAUSE", "0.2".to_owned()),
            ("IMAGING_API_MAX_ATTEMPTS", "3".to_owned()),
        ];
        if let Some((ae_title, port)) = pacs {
            vars.push(("SECONDARY_DICOM_SOURCE_AE_TITLE", ae_title.to_owned()));
            vars.push(("SECONDARY_DICOM_SOURCE_PORT", port.to_string()));
        }
        vars.retain(|(name, _)| !extra.iter().any(|(other, _)| other == name));
        vars.extend(extra);
        let config = pixl_imaging_api::ImagingConfig::from_lookup(lookup(vars)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (settings, shutdown) = (ctx.settings.clone(), self.shutdown.clone());
        self.push(
            "imaging-api",
            tokio::spawn(async move { pixl_imaging_api::service::run(config, &settings, listener, shutdown).await.map_err(|e| e.to_string()) }),
        );
        address
    }

    /// export-api with the given variables (see `export::support::export_vars`).
    pub async fn export_api(&mut self, ctx: &TestContext, vars: &[(String, String)]) -> String {
        let config = pixl_export_api::ExportConfig::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (settings, shutdown) = (ctx.settings.clone(), self.shutdown.clone());
        self.push(
            "export-api",
            tokio::spawn(async move { pixl_export_api::service::run(config, &settings, listener, shutdown).await.map_err(|e| e.to_string()) }),
        );
        url
    }

    /// ehr-api reading the EMAP database `emap`; returns its base URL.
    pub async fn ehr_api(&mut self, ctx: &TestContext, emap: &pixl_core::config::DatabaseSettings) -> String {
        let vars = [
            ("EHR_API_TOKEN", EHR_TOKEN.to_owned()),
            ("EHR_API_RETRY_PAUSE", "0.2".to_owned()),
            ("EMAP_DB_HOST", emap.host.clone()),
            ("EMAP_DB_PORT", emap.port.to_string()),
            ("EMAP_DB_USER", emap.user.clone()),
            ("EMAP_DB_NAME", emap.name.clone()),
        ];
        let config = pixl_ehr_api::service::EhrConfig::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (settings, shutdown) = (ctx.settings.clone(), self.shutdown.clone());
        self.push("ehr-api", tokio::spawn(async move { pixl_ehr_api::service::run(config, &settings, listener, shutdown).await.map_err(|e| e.to_string()) }));
        url
    }

    /// Stops every service; each must end cleanly within `pixl`'s grace period and some.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for (name, task) in self.tasks {
            let ended = tokio::time::timeout(Duration::from_secs(30), task).await.unwrap_or_else(|_| panic!("{name} did not stop in time"));
            ended.unwrap().unwrap_or_else(|error| panic!("{name} ended with an error: {error}"));
        }
    }
}

/// A running anon-node.
#[derive(Debug, Clone)]
pub struct AnonNode {
    pub dicom_port: Option<u16>,
    pub http: SocketAddr,
    pub url: String,
    pub raw_cache: PathBuf,
    pub anon_store: PathBuf,
}

/// A hasher client for the hasher-api at `url`, with the tests' token.
pub fn hasher_client(url: &str) -> HasherClientConfig {
    let mut client = HasherClientConfig::new(url.to_owned());
    client.token = Some(SecretString::from(HASHER_TOKEN));
    client
}
