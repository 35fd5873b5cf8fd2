//! Cohort → populate → imaging-api (C-FIND/C-MOVE from the archives) → anon-node →
//! de-identified studies, with PIXL's system-test studies.

use std::path::{Path, PathBuf};

use pixl_cli::demo_data::{StudySpec, radiograph_studies, system_test_studies, write_study};
use pixl_cli::populate::{PopulateOptions, populate};
use pixl_core::ids::{ProjectSlug, StudyId};
use pixl_core::messages::{QueueMessage, StudyRef};
use pixl_core::queues::{Outgoing, WorkQueue};
use pixl_core::testing::TestContext;

use crate::imaging::peers::Peer;
use crate::imaging::pipeline::{Pipeline, Ports, cached, series_descriptions, wait_for_states};

pub const PROJECT: &str = "test-extract-uclh-omop-cdm";

/// One cohort row: (study, include the study UID, series UIDs).
pub fn cohort(dir: &Path, rows: &[(&StudySpec, bool, Vec<String>)]) -> PathBuf {
    let mut csv = String::from("procedure_id,mrn,accession_number,project_name,extract_generated_timestamp,study_date,study_uid,series_uid,participant_id\n");
    for (i, (study, with_uid, series)) in rows.iter().enumerate() {
        let date = format!("{}-{}-{}", &study.study_date[..4], &study.study_date[4..6], &study.study_date[6..]);
        let uid = if *with_uid { study.study_uid.as_str() } else { "" };
        csv.push_str(&format!("{i},{},{},{PROJECT},2024-01-01T00:00:00Z,{date},{uid},{},\n", study.patient_id, study.accession_number, series.join("\\")));
    }
    let path = dir.join(format!("cohort-{}.csv", rand_suffix()));
    std::fs::write(&path, csv).unwrap();
    path
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

async fn setup() -> (TestContext, tempfile::TempDir) {
    let mut ctx = TestContext::new().await;
    let dir = tempfile::tempdir().unwrap();
    ctx.settings.host_export_root_dir = dir.path().join("exports");
    (ctx, dir)
}

async fn run_populate(ctx: &TestContext, cohort: &Path) {
    let options = PopulateOptions { path: cohort.to_owned(), queue: WorkQueue::ImagingPrimary, priority: 1, show_progress: false };
    populate(&ctx.settings, &options).await.unwrap();
}

fn pseudo_of(rows: &[(i64, String, Option<String>, Option<String>)], index: usize) -> &str {
    rows[index].3.as_deref().unwrap_or_else(|| panic!("study {index} has no pseudonymous UID: {rows:?}"))
}

#[tokio::test]
async fn studies_come_from_the_vna_or_the_pacs_and_filters_apply() {
    let (ctx, dir) = setup().await;
    let ports = Ports::new();
    let vna = Peer::orthanc(dir.path(), "VNA", ("PIXL_RAW", ports.anon_node_dicom));
    let pacs = Peer::dcmqrscp(dir.path(), "PACS", ("PIXL_RAW", ports.anon_node_dicom));
    let data = dir.path().join("data");
    let studies = system_test_studies();
    let pacs_only = radiograph_studies(1, 2, 64).remove(0);
    let mut missing = radiograph_studies(2, 1, 64).remove(1);
    missing.study_uid = "1.2.826.0.1.3680043.10.1001.9.9".to_owned();
    for study in &studies {
        vna.load(&write_study(&data, study).unwrap()).await;
    }
    pacs.load(&write_study(&data, &pacs_only).unwrap()).await;
    let pipeline = Pipeline::start(&ctx, dir.path(), &ports, &vna, Some(&pacs), "always").await;

    // Study 1 by UID, study 2 by accession number only, one only in the PACS, one nowhere.
    let rows = [(&studies[0], true, vec![]), (&studies[1], false, vec![]), (&pacs_only, true, vec![]), (&missing, true, vec![])];
    run_populate(&ctx, &cohort(dir.path(), &rows)).await;
    let settled = wait_for_states(&ctx, &["anonymised", "failed"]).await;
    assert_eq!(settled.len(), 4, "{settled:?}");
    for (index, (_, state, reason, _)) in settled.iter().enumerate().take(3) {
        assert_eq!(state, "anonymised", "study {index}: {reason:?}");
    }
    assert_eq!(settled[3].1, "failed");
    assert_eq!(settled[3].2.as_deref(), Some("not found in the VNA or the PACS"));

    // PIXL's system test: the MR and positioning series are absent.
    assert_eq!(series_descriptions(&pipeline.anon_store, PROJECT, pseudo_of(&settled, 0)), ["AP", "AP", "include123", "include123"]);
    assert_eq!(series_descriptions(&pipeline.anon_store, PROJECT, pseudo_of(&settled, 1)), ["include123", "include123"]);
    assert_eq!(series_descriptions(&pipeline.anon_store, PROJECT, pseudo_of(&settled, 2)), ["CHEST PA", "CHEST PA"]);
    // Study 2 was found by accession number: the UID found is recorded beside the cohort's.
    let uid: Option<String> = sqlx::query_scalar("SELECT resolved_study_uid FROM studies WHERE id = $1").bind(settled[1].0).fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(uid.as_deref(), Some(studies[1].study_uid.as_str()));

    // REST: PIXL's rate endpoint, and the metrics.
    let base = format!("http://{}", pipeline.imaging_http);
    let client = reqwest::Client::new();
    let rate: serde_json::Value = client.get(format!("{base}/token-bucket-refresh-rate")).send().await.unwrap().json().await.unwrap();
    assert_eq!(rate["rate"], 50.0);
    let refused = client.post(format!("{base}/token-bucket-refresh-rate")).json(&serde_json::json!({"rate": -1})).send().await.unwrap();
    assert!(refused.status().is_client_error());
    let set =
        client.post(format!("{base}/token-bucket-refresh-rate")).json(&serde_json::json!({"rate": 7.5, "queue": "imaging-secondary"})).send().await.unwrap();
    assert!(set.status().is_success());
    let rate: serde_json::Value = client.get(format!("{base}/token-bucket-refresh-rate?queue=imaging-secondary")).send().await.unwrap().json().await.unwrap();
    assert_eq!(rate["rate"], 7.5);
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    for name in ["pixl_imaging_studies_retrieved_total", "pixl_imaging_retrieval_seconds", "pixl_imaging_queue_waiting"] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    // `pixl status` shows it: per state, the dead letter, the reason (and no identifier).
    let status = pixl_cli::control::status(&ctx.settings, "http://127.0.0.1:9").await.unwrap().to_string();
    let line = status.lines().find(|l| l.starts_with(PROJECT)).unwrap_or_else(|| panic!("{status}"));
    let numbers: Vec<&str> = line.split_whitespace().skip(1).collect();
    assert_eq!(numbers, ["0", "0", "0", "3", "0", "1"], "queued..failed columns: {status}");
    assert!(status.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["imaging-secondary", "0", "1", "0"]), "{status}");
    assert!(status.contains("1 × not found in the VNA or the PACS"), "{status}");
    for secret in [&missing.accession_number, &missing.study_uid, &missing.patient_id] {
        assert!(!status.contains(secret.as_str()), "{secret} in pixl status");
    }

    let letters = ctx.take_dead_letters(WorkQueue::ImagingSecondary).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(QueueMessage::decode(&letters[0].0).unwrap().study_id(), StudyId(settled[3].0));

    // A repeated imaging message for a retrieved study retrieves nothing again.
    let cached_file = std::fs::read_dir(pipeline.raw_cache.join(&studies[0].study_uid)).unwrap().next().unwrap().unwrap().path();
    let before = std::fs::metadata(&cached_file).unwrap().modified().unwrap();
    let message = QueueMessage::ImagingV1(StudyRef { study_id: StudyId(settled[0].0), project: ProjectSlug::parse(PROJECT).unwrap() });
    ctx.broker.publish(&Outgoing { queue: WorkQueue::ImagingPrimary, priority: 1, message }).await.unwrap();
    // Re-populating the same cohort queues nothing new.
    run_populate(&ctx, &cohort(dir.path(), &rows)).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(ctx.broker.counts(&ctx.broker.topology().queue_name(WorkQueue::ImagingPrimary)).await.unwrap().messages, 0);
    assert_eq!(std::fs::metadata(&cached_file).unwrap().modified().unwrap(), before, "not moved again");
    assert_eq!(wait_for_states(&ctx, &["anonymised", "failed"]).await, settled);

    // `pixl retry-failed` queues the missing study again; it fails again, with its reason
    // and a fresh dead letter, and nothing else is touched.
    assert_eq!(pixl_cli::control::retry_failed(&ctx.settings, Some(PROJECT)).await.unwrap(), 1);
    let letters = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let letters = ctx.take_dead_letters(WorkQueue::ImagingSecondary).await;
            if !letters.is_empty() {
                break letters;
            }
            assert!(std::time::Instant::now() < deadline, "no new dead letter");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    assert_eq!(letters.len(), 1);
    let again = wait_for_states(&ctx, &["anonymised", "failed"]).await;
    assert_eq!(again, settled);

    pipeline.stop().await;
    ctx.teardown().await;
}

#[tokio::test]
async fn series_level_cohorts_retrieve_only_their_series_and_the_pacs_waits_for_its_window() {
    let (ctx, dir) = setup().await;
    let ports = Ports::new();
    let vna = Peer::orthanc(dir.path(), "VNA", ("PIXL_RAW", ports.anon_node_dicom));
    let pacs = Peer::dcmqrscp(dir.path(), "PACS", ("PIXL_RAW", ports.anon_node_dicom));
    let data = dir.path().join("data");
    let studies = system_test_studies();
    let pacs_only = radiograph_studies(1, 2, 64).remove(0);
    vna.load(&write_study(&data, &studies[0]).unwrap()).await;
    vna.load(&write_study(&data, &studies[1]).unwrap()).await;
    pacs.load(&write_study(&data, &pacs_only).unwrap()).await;
    // The PACS window is closed for this whole test.
    let pipeline = Pipeline::start(&ctx, dir.path(), &ports, &vna, Some(&pacs), "never").await;

    // Study 1: AP and MR "exclude123" (two series joined by a backslash); study 2: only
    // its "include123" series (one).
    let two = vec![studies[0].series_uid(0), studies[0].series_uid(2)];
    let rows = [(&studies[0], true, two), (&pacs_only, true, vec![]), (&studies[1], true, vec![studies[1].series_uid(0)])];
    run_populate(&ctx, &cohort(dir.path(), &rows)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let settled = loop {
        let rows = crate::imaging::pipeline::studies(&ctx).await;
        if rows[0].1 == "anonymised" && rows[1].1 == "queued" && rows[2].1 == "anonymised" {
            // Rerouted to the PACS queue, where it waits.
            let waiting = ctx.broker.counts(&ctx.broker.topology().queue_name(WorkQueue::ImagingSecondary)).await.unwrap().messages;
            if waiting == 1 {
                break rows;
            }
        }
        assert!(std::time::Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(cached(&pipeline.raw_cache, &studies[0].study_uid), 4, "only the two requested series were moved");
    // The MR series was retrieved but the project keeps DX/CR only.
    assert_eq!(series_descriptions(&pipeline.anon_store, PROJECT, pseudo_of(&settled, 0)), ["AP", "AP"]);
    assert_eq!(cached(&pipeline.raw_cache, &studies[1].study_uid), 2, "only the requested series was moved");
    assert_eq!(series_descriptions(&pipeline.anon_store, PROJECT, pseudo_of(&settled, 2)), ["include123", "include123"]);
    assert_eq!(cached(&pipeline.raw_cache, &pacs_only.study_uid), 0, "the PACS was not asked outside its window");
    pipeline.stop().await;
    ctx.teardown().await;
}

#[tokio::test]
async fn a_partly_cached_study_moves_only_what_is_missing() {
    let (ctx, dir) = setup().await;
    let ports = Ports::new();
    let vna = Peer::orthanc(dir.path(), "VNA", ("PIXL_RAW", ports.anon_node_dicom));
    let data = dir.path().join("data");
    let study = system_test_studies().remove(0);
    let files = write_study(&data, &study).unwrap();
    vna.load(&files).await;
    let pipeline = Pipeline::start(&ctx, dir.path(), &ports, &vna, None, "always").await;

    // The AP series (files "1-*") reached anon-node before, say in a run that crashed.
    let ap: Vec<PathBuf> = files.iter().filter(|f| f.file_name().unwrap().to_string_lossy().starts_with("1-")).cloned().collect();
    // Off the runtime: anon-node answers on this test's thread.
    let port = ports.anon_node_dicom.to_string();
    let to_send = ap.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("storescu")
            .env("TCP_NODELAY", "1")
            .args(["-aet", "VNA", "-aec", "PIXL_RAW", "127.0.0.1", &port])
            .args(&to_send)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let cached_ap: Vec<PathBuf> = std::fs::read_dir(pipeline.raw_cache.join(&study.study_uid)).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(cached_ap.len(), 2);
    let times: Vec<_> = cached_ap.iter().map(|p| std::fs::metadata(p).unwrap().modified().unwrap()).collect();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    run_populate(&ctx, &cohort(dir.path(), &[(&study, true, vec![])])).await;
    let settled = wait_for_states(&ctx, &["anonymised", "failed"]).await;
    assert_eq!(settled[0].1, "anonymised", "{settled:?}");
    assert_eq!(cached(&pipeline.raw_cache, &study.study_uid), 8, "the three other series were moved");
    let after: Vec<_> = cached_ap.iter().map(|p| std::fs::metadata(p).unwrap().modified().unwrap()).collect();
    assert_eq!(after, times, "the cached series was not moved again");
    assert_eq!(series_descriptions(&pipeline.anon_store, PROJECT, pseudo_of(&settled, 0)), ["AP", "AP", "include123", "include123"]);
    pipeline.stop().await;
    ctx.teardown().await;
}

/// Two studies in the VNA under one MRN and accession number (a study split in two), the
/// cohort naming the accession number only: with `studies_per_accession: separate` (the
/// default) each becomes a pseudonymous study; with `one` (PIXL's way) both become one
/// pseudonymous study holding the series of both.
#[tokio::test]
async fn several_studies_for_one_accession_follow_the_projects_option() {
    for (option, expected_rows) in [("separate", 2), ("one", 1)] {
        let (mut ctx, dir) = setup().await;
        let configs = dir.path().join("configs");
        std::fs::create_dir_all(&configs).unwrap();
        std::os::unix::fs::symlink(ctx.settings.project_configs_dir.join("tag-operations"), configs.join("tag-operations")).unwrap();
        let yaml = std::fs::read_to_string(ctx.settings.project_configs_dir.join(format!("{PROJECT}.yaml"))).unwrap();
        std::fs::write(configs.join(format!("{PROJECT}.yaml")), format!("{yaml}\nstudies_per_accession: {option}\n")).unwrap();
        ctx.settings.project_configs_dir = configs;

        let ports = Ports::new();
        let vna = Peer::orthanc(dir.path(), "VNA", ("PIXL_RAW", ports.anon_node_dicom));
        let mut studies = radiograph_studies(2, 2, 64);
        studies[1].patient_id = studies[0].patient_id.clone();
        studies[1].patient_name = studies[0].patient_name.clone();
        studies[1].accession_number = studies[0].accession_number.clone();
        studies[1].series[0].description = "CHEST LAT";
        for study in &studies {
            vna.load(&write_study(&dir.path().join(format!("data-{}", study.number)), study).unwrap()).await;
        }
        let pipeline = Pipeline::start(&ctx, dir.path(), &ports, &vna, None, "always").await;
        run_populate(&ctx, &cohort(dir.path(), &[(&studies[0], false, vec![])])).await;
        let settled = wait_for_states(&ctx, &["anonymised", "failed"]).await;
        assert_eq!(settled.len(), expected_rows, "{option}: {settled:?}");
        for (index, (_, state, reason, _)) in settled.iter().enumerate() {
            assert_eq!(state, "anonymised", "{option}, study {index}: {reason:?}");
        }
        if option == "one" {
            assert_eq!(series_descriptions(&pipeline.anon_store, PROJECT, pseudo_of(&settled, 0)), ["CHEST LAT", "CHEST LAT", "CHEST PA", "CHEST PA"]);
        } else {
            let mut each: Vec<Vec<String>> = (0..2).map(|i| series_descriptions(&pipeline.anon_store, PROJECT, pseudo_of(&settled, i))).collect();
            each.sort();
            assert_eq!(each, [["CHEST LAT", "CHEST LAT"], ["CHEST PA", "CHEST PA"]]);
        }
        pipeline.stop().await;
        ctx.teardown().await;
    }
}
