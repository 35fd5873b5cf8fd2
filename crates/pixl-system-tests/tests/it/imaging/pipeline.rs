//! The pixl services of a test, in this process: hasher-api, anon-node and imaging-api.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pixl_core::testing::TestContext;
use sqlx::Row;

use crate::harness::Services;
use crate::imaging::peers::{Peer, free_port};

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
    services: Services,
}

impl Pipeline {
    pub async fn start(ctx: &TestContext, dir: &Path, ports: &Ports, vna: &Peer, pacs: Option<&Peer>, window: &str) -> Self {
        let mut services = Services::new();
        let configs = ctx.settings.project_configs_dir.clone();
        let hasher = services.hasher(dir, &configs, "imaging-test-key").await;
        // Raw instances are kept after de-identification, for the tests to count them.
        let node = services.anon_node(ctx, dir, "VNA,PACS", Some(ports.anon_node_dicom), hasher, vec![("ANON_NODE_RAW_RETENTION_HOURS", "1".to_owned())]).await;
        let imaging_http = services.imaging_api(ctx, vna, pacs, &node.url, vec![("SECONDARY_DICOM_SOURCE_WINDOW", window.to_owned())]).await;
        Self { anon_store: node.anon_store, raw_cache: node.raw_cache, imaging_http, services }
    }

    pub async fn stop(self) {
        self.services.stop().await;
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
