//! The `pixl-imaging-api` binary at trace level (it is the service that sends MRNs and
//! accession numbers to the archive in C-FIND): its logs hold no identifier of the study
//! and no token. A malformed message whose field holds an MRN-like value is dead-lettered,
//! and the value appears in no dead-letter header, no log line and no `pixl status` output.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::BasicPublishOptions;
use pixl_cli::demo_data::{radiograph_studies, write_study};
use pixl_cli::populate::{PopulateOptions, populate};
use pixl_core::queues::WorkQueue;
use pixl_core::testing::TestContext;

use crate::harness::{ANON_NODE_TOKEN, HASHER_TOKEN, Services};
use crate::imaging::peers::{Peer, free_port};
use crate::imaging::pipeline::studies;
use crate::imaging::retrieval::cohort;

#[tokio::test]
async fn trace_logs_dead_letters_and_status_hold_no_identifier() {
    let mut ctx = TestContext::new().await;
    let dir = tempfile::tempdir().unwrap();
    ctx.settings.host_export_root_dir = dir.path().join("exports");
    let anon_dicom = free_port();
    let vna = Peer::orthanc(dir.path(), "VNA", ("PIXL_RAW", anon_dicom));
    let specs = radiograph_studies(2, 2, 32);
    for spec in &specs {
        vna.load(&write_study(&dir.path().join("archive-input"), spec).unwrap()).await;
    }
    let mut services = Services::new();
    let hasher = services.hasher(dir.path(), &ctx.settings.project_configs_dir, "log-key").await;
    let node = services.anon_node(&ctx, dir.path(), "VNA", Some(anon_dicom), hasher, vec![]).await;

    let http_port = free_port();
    let log_path = dir.path().join("imaging-api.log");
    let settings = &ctx.settings;
    let mut child = Command::new(pixl_testkit::bin_path("pixl-imaging-api"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("PIXL_DB_HOST", &settings.database.host)
        .env("PIXL_DB_PORT", settings.database.port.to_string())
        .env("PIXL_DB_NAME", &settings.database.name)
        .env("PIXL_QUEUE_PREFIX", &settings.queue_prefix)
        .env("PROJECT_CONFIGS_DIR", &settings.project_configs_dir)
        .env("PRIMARY_DICOM_SOURCE_AE_TITLE", &vna.ae_title)
        .env("PRIMARY_DICOM_SOURCE_PORT", vna.dicom_port.to_string())
        .env("ANON_NODE_URL", &node.url)
        .env("ANON_NODE_API_TOKEN", ANON_NODE_TOKEN)
        .env("IMAGING_API_PORT", http_port.to_string())
        .env("IMAGING_API_RATE", "50")
        .env("PIXL_LOG_FORMAT", "text")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();

    let rows: Vec<_> = specs.iter().map(|spec| (spec, false, Vec::new())).collect();
    let options = PopulateOptions { path: cohort(dir.path(), &rows), queue: WorkQueue::ImagingPrimary, priority: 1, show_progress: false };
    populate(&ctx.settings, &options).await.unwrap();
    // A malformed message holding an MRN-like value in a field.
    let mrn_like = "40987654321";
    let malformed = format!(r#"{{"type":"imaging.v1","study_id":"{mrn_like}","project":"test-extract-uclh-omop-cdm"}}"#);
    let channel = ctx.broker.open_channel().await.unwrap();
    let queue = ctx.broker.topology().queue_name(WorkQueue::ImagingPrimary);
    channel
        .basic_publish("".into(), queue.as_str().into(), BasicPublishOptions::default(), malformed.as_bytes(), Default::default())
        .await
        .unwrap()
        .await
        .unwrap();
    let _ = channel.close(200, "done".into()).await;

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = studies(&ctx).await;
        if rows.iter().all(|(_, state, ..)| state == "anonymised") {
            break;
        }
        assert!(Instant::now() < deadline, "{rows:?}: {}", std::fs::read_to_string(&log_path).unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let letters = loop {
        let letters = ctx.take_dead_letters(WorkQueue::ImagingPrimary).await;
        if !letters.is_empty() {
            break letters;
        }
        assert!(Instant::now() < deadline, "the malformed message was not dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = &letters[0].1;
    assert!(reason.starts_with("message is not a valid pixl message"), "{reason}");
    assert!(!reason.contains(mrn_like), "{reason}");
    let status = pixl_cli::control::status(&ctx.settings, "http://127.0.0.1:9").await.unwrap().to_string();
    child.kill().unwrap();
    child.wait().unwrap();

    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains("TRACE") && logs.contains("study retrieved"), "the logs are at trace level and cover the retrieval");
    let mut forbidden: Vec<(&str, String)> =
        vec![("the MRN-like value", mrn_like.to_owned()), ("the hasher token", HASHER_TOKEN.to_owned()), ("anon-node's token", ANON_NODE_TOKEN.to_owned())];
    for spec in &specs {
        forbidden.push(("an MRN", spec.patient_id.clone()));
        forbidden.push(("an accession number", spec.accession_number.clone()));
        forbidden.push(("a study UID", spec.study_uid.clone()));
        forbidden.push(("a patient name", spec.patient_name.clone()));
    }
    for (what, value) in &forbidden {
        assert!(!logs.contains(value.as_str()), "the logs contain {what}");
        assert!(!status.contains(value.as_str()), "pixl status shows {what}");
    }
    services.stop().await;
    ctx.teardown().await;
}
