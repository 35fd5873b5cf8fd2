//! kill -9 of imaging-api and of anon-node in the middle of a run, each restarted: every
//! study still ends de-identified, once (one output per instance, one export per study).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pixl_cli::demo_data::{radiograph_studies, write_study};
use pixl_cli::populate::{PopulateOptions, populate};
use pixl_core::queues::WorkQueue;
use pixl_core::testing::TestContext;

use crate::imaging::peers::{Peer, free_port};
use crate::imaging::pipeline::studies;

/// The service binaries, built by `cargo test --workspace`.
fn binary(name: &str) -> PathBuf {
    pixl_testkit::bin_path(name)
}

struct Service {
    program: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Service {
    fn start(program: PathBuf, env: Vec<(String, String)>, log: PathBuf) -> Self {
        let mut service = Self { program, env, log, child: None };
        service.spawn();
        service
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(&self.program).envs(self.env.iter().map(|(k, v)| (k, v))).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.child = Some(child);
    }

    /// SIGKILL, then start again.
    fn crash_and_restart(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        self.spawn();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn count_in(ctx: &TestContext, state: &str) -> usize {
    studies(ctx).await.iter().filter(|(_, s, _, _)| s == state).count()
}

async fn wait_until(ctx: &TestContext, what: &str, mut done: impl AsyncFnMut(&TestContext) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(ctx).await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {:?}", studies(ctx).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn killed_services_restart_and_every_study_is_deidentified_once() {
    let mut ctx = TestContext::new().await;
    let dir = tempfile::tempdir().unwrap();
    ctx.settings.host_export_root_dir = dir.path().join("exports");
    let anon_dicom = free_port();
    let vna = Peer::orthanc(dir.path(), "VNA", ("PIXL_RAW", anon_dicom));
    let cohort_studies = radiograph_studies(12, 5, 64);
    let data = dir.path().join("data");
    for study in &cohort_studies {
        vna.load(&write_study(&data, study).unwrap()).await;
    }

    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, r#"{"hashing-key": "crash-test-key"}"#).unwrap();
    let hasher_port = free_port();
    let anon_store = dir.path().join("anon-store");
    let env: Vec<(String, String)> = [
        ("PIXL_DB_NAME", ctx.settings.database.name.clone()),
        ("PIXL_QUEUE_PREFIX", ctx.settings.queue_prefix.clone()),
        ("PROJECT_CONFIGS_DIR", ctx.settings.project_configs_dir.display().to_string()),
        ("PIXL_SECRETS_FILE", secrets.display().to_string()),
        ("HASHER_API_PORT", hasher_port.to_string()),
        ("HASHER_API_URL", format!("http://127.0.0.1:{hasher_port}")),
        ("HASHER_API_TOKEN", crate::harness::HASHER_TOKEN.to_owned()),
        ("ANON_NODE_API_TOKEN", crate::harness::ANON_NODE_TOKEN.to_owned()),
        ("ANON_NODE_DICOM_PORT", anon_dicom.to_string()),
        ("ANON_NODE_HTTP_PORT", free_port().to_string()),
        ("ANON_NODE_ALLOWED_CALLERS", "VNA".to_owned()),
        ("ANON_NODE_RAW_CACHE_DIR", dir.path().join("raw-cache").display().to_string()),
        ("ANON_NODE_ANON_STORE_DIR", anon_store.display().to_string()),
        ("IMAGING_API_PORT", free_port().to_string()),
        ("PRIMARY_DICOM_SOURCE_AE_TITLE", "VNA".to_owned()),
        ("PRIMARY_DICOM_SOURCE_PORT", vna.dicom_port.to_string()),
        // Slow enough to be killed in the middle of the run.
        ("IMAGING_API_RATE", "4".to_owned()),
        ("IMAGING_API_RETRY_PAUSE", "0.2".to_owned()),
        ("PIXL_MAX_MESSAGES_IN_FLIGHT", "2".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let _hasher = Service::start(binary("pixl-hasher-api"), env.clone(), dir.path().join("hasher.log"));
    let mut anon = Service::start(binary("pixl-anon-node"), env.clone(), dir.path().join("anon-node.log"));
    let mut imaging = Service::start(binary("pixl-imaging-api"), env.clone(), dir.path().join("imaging-api.log"));

    let csv: String =
        std::iter::once("procedure_id,mrn,accession_number,project_name,extract_generated_timestamp,study_date,study_uid,participant_id\n".to_owned())
            .chain(cohort_studies.iter().enumerate().map(|(i, s)| {
                format!("{i},{},{},test-extract-uclh-omop-cdm,2024-01-01T00:00:00Z,2023-01-01,{},\n", s.patient_id, s.accession_number, s.study_uid)
            }))
            .collect();
    let cohort = dir.path().join("cohort.csv");
    std::fs::write(&cohort, csv).unwrap();
    populate(&ctx.settings, &PopulateOptions { path: cohort, queue: WorkQueue::ImagingPrimary, priority: 1, show_progress: false }).await.unwrap();

    wait_until(&ctx, "a first study retrieved", async |ctx| count_in(ctx, "anonymised").await + count_in(ctx, "retrieved").await >= 2).await;
    imaging.crash_and_restart();
    wait_until(&ctx, "more studies retrieved", async |ctx| count_in(ctx, "anonymised").await >= 5).await;
    anon.crash_and_restart();
    wait_until(&ctx, "every study de-identified", async |ctx| count_in(ctx, "anonymised").await == 12).await;

    // Once each: one pseudonymous study per study, five instances each, and one export
    // message per study (the outbox may publish twice after a crash; never zero times).
    let rows = studies(&ctx).await;
    let pseudo: BTreeSet<String> = rows.iter().map(|r| r.3.clone().unwrap()).collect();
    assert_eq!(pseudo.len(), 12);
    for uid in &pseudo {
        let dir = anon_store.join("test-extract-uclh-omop-cdm").join(uid);
        let files: usize = std::fs::read_dir(&dir).unwrap().map(|s| std::fs::read_dir(s.unwrap().path()).unwrap().count()).sum();
        assert_eq!(files, 5, "{}", dir.display());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let exported: BTreeSet<i64> = ctx.take_messages(WorkQueue::Export).await.iter().map(|m| m.study_id().0).collect();
    assert_eq!(exported.len(), 12, "an export message for every study");
    assert!(ctx.take_dead_letters(WorkQueue::ImagingPrimary).await.is_empty());
    assert!(ctx.take_dead_letters(WorkQueue::Anonymise).await.is_empty());
    drop(imaging);
    drop(anon);
    ctx.teardown().await;
}
