//! The pixl services of a test, in this process: hasher-api, anon-node and imaging-api.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pixl_core::hasher_client::HasherClientConfig;
use pixl_core::testing::TestContext;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::peers::{Peer, free_port};

/// Ports fixed before the archives start (they need anon-node's address).
pub struct Ports {
    pub anon_node_dicom: u16,
}

impl Ports {
    pub fn new() -> Self {
        Self { anon_node_dicom: free_port() }
    }
}

pub struct Pipeline {
    pub anon_store: PathBuf,
    pub raw_cache: PathBuf,
    /// imaging-api's REST address.
    pub imaging_http: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

fn lookup(vars: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
}

impl Pipeline {
    pub async fn start(ctx: &TestContext, dir: &Path, ports: &Ports, vna: &Peer, pacs: Option<&Peer>, window: &str) -> Self {
        let shutdown = CancellationToken::new();
        let secrets = dir.join("secrets.json");
        if !secrets.exists() {
            std::fs::write(&secrets, r#"{"hashing-key": "imaging-test-key"}"#).unwrap();
        }
        let configs = ctx.settings.project_configs_dir.clone();
        let hasher_config = pixl_hasher_api::HasherConfig::from_lookup(lookup(vec![
            ("PIXL_SECRETS_FILE", secrets.display().to_string()),
            ("PROJECT_CONFIGS_DIR", configs.display().to_string()),
        ]))
        .unwrap();
        let hasher_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hasher_url = format!("http://{}", hasher_listener.local_addr().unwrap());
        let mut tasks = vec![tokio::spawn(pixl_hasher_api::run(hasher_config, hasher_listener, shutdown.clone()))];

        let anon_store = dir.join("anon-store");
        let raw_cache = dir.join("raw-cache");
        let anon_config = pixl_anon_node::AnonNodeConfig::from_lookup(lookup(vec![
            ("ANON_NODE_ALLOWED_CALLERS", "VNA,PACS".to_owned()),
            ("ANON_NODE_RAW_CACHE_DIR", raw_cache.display().to_string()),
            ("ANON_NODE_ANON_STORE_DIR", anon_store.display().to_string()),
        ]))
        .unwrap();
        let dicom = tokio::net::TcpListener::bind(("127.0.0.1", ports.anon_node_dicom)).await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let anon_url = format!("http://{}", http.local_addr().unwrap());
        let settings = ctx.settings.clone();
        let anon_shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            pixl_anon_node::service::run(anon_config, &settings, HasherClientConfig::new(hasher_url), dicom, http, anon_shutdown).await
        }));

        let mut vars = vec![
            ("PRIMARY_DICOM_SOURCE_AE_TITLE", vna.ae_title.clone()),
            ("PRIMARY_DICOM_SOURCE_PORT", vna.dicom_port.to_string()),
            ("SECONDARY_DICOM_SOURCE_WINDOW", window.to_owned()),
            ("ANON_NODE_URL", anon_url),
            ("IMAGING_API_RATE", "50".to_owned()),
            ("IMAGING_API_RETRY_PAUSE", "0.2".to_owned()),
            ("IMAGING_API_MAX_ATTEMPTS", "3".to_owned()),
        ];
        if let Some(pacs) = pacs {
            vars.push(("SECONDARY_DICOM_SOURCE_AE_TITLE", pacs.ae_title.clone()));
            vars.push(("SECONDARY_DICOM_SOURCE_PORT", pacs.dicom_port.to_string()));
        }
        let imaging_config = pixl_imaging_api::ImagingConfig::from_lookup(lookup(vars)).unwrap();
        let imaging_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let imaging_http = imaging_listener.local_addr().unwrap();
        let settings = ctx.settings.clone();
        let imaging_shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move { pixl_imaging_api::service::run(imaging_config, &settings, imaging_listener, imaging_shutdown).await }));
        Self { anon_store, raw_cache, imaging_http, shutdown, tasks }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(30), task).await.expect("stops in time").unwrap().unwrap();
        }
    }
}

/// (id, state, failure reason, pseudo study uid) of every study, by id.
pub async fn studies(ctx: &TestContext) -> Vec<(i64, String, Option<String>, Option<String>)> {
    sqlx::query("SELECT id, state::text AS state, failure_reason, pseudo_study_uid FROM studies ORDER BY id")
        .fetch_all(&ctx.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get("id"), r.get("state"), r.get("failure_reason"), r.get("pseudo_study_uid")))
        .collect()
}

/// Waits until every study is in one of `states`.
pub async fn wait_for_states(ctx: &TestContext, states: &[&str]) -> Vec<(i64, String, Option<String>, Option<String>)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = studies(ctx).await;
        if rows.iter().all(|(_, state, _, _)| states.contains(&state.as_str())) {
            return rows;
        }
        assert!(Instant::now() < deadline, "studies did not settle: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SeriesDescription of every de-identified instance of a pseudonymous study.
pub fn series_descriptions(anon_store: &Path, project: &str, pseudo_uid: &str) -> Vec<String> {
    let mut descriptions = Vec::new();
    let dir = anon_store.join(project).join(pseudo_uid);
    for series in std::fs::read_dir(&dir).unwrap() {
        for file in std::fs::read_dir(series.unwrap().path()).unwrap() {
            let object = dicom_object::open_file(file.unwrap().path()).unwrap();
            descriptions.push(object.element(dicom_dictionary_std::tags::SERIES_DESCRIPTION).unwrap().to_str().unwrap().trim().to_owned());
        }
    }
    descriptions.sort();
    descriptions
}

/// Instances in the raw cache for an original study UID.
pub fn cached(raw_cache: &Path, study_uid: &str) -> usize {
    std::fs::read_dir(raw_cache.join(study_uid)).map(|d| d.filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".dcm")).count()).unwrap_or(0)
}
