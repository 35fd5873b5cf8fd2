//! End to end: PIXL's fixture OMOP-ES extract (`projects/demo/omop-extract`) populated,
//! its studies retrieved from a real archive (Orthanc as the VNA), de-identified by
//! anon-node with hasher-api pseudonyms, exported by export-api to a real FTPS server in
//! PIXL's implicit mode; then `pixl export-patient-data` uploads the parquet files with
//! the image linker. ehr-api reads each study's EHR from a synthetic EMAP database and
//! de-identifies its report: the export is refused while a flagged report waits for
//! review, and after its release `radiology/radiology.parquet` and the release report go
//! with the parquet files. Every exported byte is scanned for the input's identifiers,
//! the generated patients' among them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use arrow_array::{Array, Int64Array, StringArray};
use pixl_cli::demo_data::{system_test_studies, write_study};
use pixl_cli::populate::{PopulateOptions, populate};
use pixl_core::queues::WorkQueue;
use pixl_core::testing::TestContext;
use pixl_core::testing::peers::{Peer, free_port};
use sqlx::Row;

use crate::export::support::*;
use crate::harness::Services;

/// Every study row's raw identifiers, as the database holds them.
async fn database_identifiers(ctx: &TestContext) -> Vec<String> {
    let rows = sqlx::query("SELECT mrn, accession_number, study_uid, resolved_study_uid, series_uids FROM studies").fetch_all(&ctx.pool).await.unwrap();
    let mut identifiers = Vec::new();
    for row in rows {
        identifiers.push(row.get::<String, _>("mrn"));
        identifiers.extend(row.get::<Option<String>, _>("accession_number"));
        identifiers.extend(row.get::<Option<String>, _>("study_uid"));
        identifiers.extend(row.get::<Option<String>, _>("resolved_study_uid"));
        identifiers.extend(row.get::<Vec<String>, _>("series_uids"));
    }
    identifiers
}

#[tokio::test]
async fn the_fixture_extract_arrives_on_the_ftps_server_de_identified_and_linked() {
    let mut ctx = TestContext::new().await;
    let dir = tempfile::tempdir().unwrap();
    ctx.settings.project_configs_dir = project_configs(dir.path(), "ftps", "ftps");
    ctx.settings.host_export_root_dir = dir.path().join("exports");

    // The archive, holding PIXL's system-test studies with the extract's identifiers.
    let anon_dicom = free_port();
    let vna = Peer::orthanc(dir.path(), "VNA", ("PIXL_RAW", anon_dicom));
    let specs = system_test_studies();
    let mut originals = Vec::new();
    for spec in &specs {
        let files = write_study(&dir.path().join("archive-input"), spec).unwrap();
        vna.load(&files).await;
        originals.extend(files);
    }

    let mut services = Services::new();
    let hasher = services.hasher(dir.path(), &ctx.settings.project_configs_dir, "end-to-end-key").await;
    let node = services.anon_node(&ctx, dir.path(), &vna.ae_title, Some(anon_dicom), hasher, vec![]).await;
    services.imaging_api(&ctx, &vna, None, &node.url, vec![]).await;
    let anon_url = node.url.clone();
    let server = FtpsServer::start(dir.path(), true, None);
    let secrets = dir.path().join("secrets.json");
    write_secrets(&secrets, &server.secrets(PROJECT));
    let mut vars = export_vars(dir.path(), &anon_url, &secrets);
    vars.push(("PIXL_EXTRA_CA_FILE".to_owned(), server.ca_file.display().to_string()));
    let export_url = services.export_api(&ctx, &vars).await;
    // The EHR: a synthetic EMAP database with a patient per study, and ehr-api.
    let emap = pixl_core::config::DatabaseSettings { name: format!("{}_emap", ctx.settings.database.name), ..ctx.settings.database.clone() };
    let keys: Vec<(String, String, chrono::NaiveDate)> =
        specs.iter().map(|s| (s.patient_id.clone(), s.accession_number.clone(), chrono::NaiveDate::parse_from_str(&s.study_date, "%Y%m%d").unwrap())).collect();
    let patients = pixl_cli::demo_ehr::patients(&keys, 3);
    pixl_cli::demo_ehr::create_database(&emap, &patients).await.unwrap();
    services.ehr_api(&ctx, &emap).await;

    let extract = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../projects/demo/omop-extract");
    let options = PopulateOptions { path: extract.clone(), queue: WorkQueue::ImagingPrimary, priority: 1, show_progress: false };
    populate(&ctx.settings, &options).await.unwrap();

    // Every study ends exported.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let exported: Vec<(i64, String, Option<i64>)> = loop {
        let rows = sqlx::query("SELECT id, state::text AS state, failure_reason, pseudo_study_uid, procedure_occurrence_id FROM studies ORDER BY id")
            .fetch_all(&ctx.pool)
            .await
            .unwrap();
        let states: Vec<(String, Option<String>)> = rows.iter().map(|r| (r.get("state"), r.get("failure_reason"))).collect();
        assert!(states.iter().all(|(state, _)| state != "failed"), "a study failed: {states:?}");
        if !rows.is_empty() && states.iter().all(|(state, _)| state == "exported") {
            break rows.iter().map(|r| (r.get("id"), r.get("pseudo_study_uid"), r.get("procedure_occurrence_id"))).collect();
        }
        assert!(std::time::Instant::now() < deadline, "studies did not finish: {states:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(exported.len() >= 2, "the extract names several studies: {exported:?}");

    // Every study's EHR is handled; the first patient's report is flagged (it names them
    // "Walked") and blocks the export until a person decides.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let flagged: Vec<i64> = loop {
        let rows = sqlx::query("SELECT id, ehr_state::text AS state FROM studies ORDER BY id").fetch_all(&ctx.pool).await.unwrap();
        let states: Vec<Option<String>> = rows.iter().map(|r| r.get("state")).collect();
        if states.iter().all(Option::is_some) {
            assert!(states.iter().all(|s| matches!(s.as_deref(), Some("done" | "flagged"))), "{states:?}");
            break rows.iter().filter(|r| r.get::<Option<String>, _>("state").as_deref() == Some("flagged")).map(|r| r.get("id")).collect();
        }
        assert!(std::time::Instant::now() < deadline, "the EHR was not handled: {states:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(flagged.len(), 1, "the report naming its patient as Walked");
    let refused = pixl_cli::export::export_patient_data(&export_url, &extract, Duration::from_secs(60), false).await.unwrap_err().to_string();
    assert!(refused.contains("1 report(s) of this extract are flagged") && refused.contains("--skip-flagged"), "{refused}");
    assert!(server.files().iter().all(|f| f.ends_with(".zip")), "nothing of the extract uploaded while a report is flagged");
    pixl_core::review::release(&ctx.pool, flagged[0], "Walked is the verb here", "system-test").await.unwrap();

    // `pixl export-patient-data` on the extract.
    let answer = pixl_cli::export::export_patient_data(&export_url, &extract, Duration::from_secs(60), false).await.unwrap();
    assert_eq!((answer.reports, answer.reports_withheld, answer.reports_pending), (exported.len(), 0, 0));
    assert_eq!((answer.linked_studies, answer.destination.as_str(), answer.extract.as_str()), (exported.len(), "ftps", "2023-12-07t14-08-58"));

    // The FTPS server holds one zip per exported study, named by its StudyInstanceUID, and
    // the extract's parquet files.
    let mut expected: BTreeSet<String> = exported.iter().map(|(_, uid, _)| format!("{PROJECT}/{uid}.zip")).collect();
    let parquet_root = format!("{PROJECT}/2023-12-07t14-08-58/parquet");
    expected.insert(format!("{parquet_root}/omop/public/omop/PROCEDURE_OCCURRENCE.parquet"));
    expected.insert(format!("{parquet_root}/radiology/IMAGE_LINKER.parquet"));
    expected.insert(format!("{parquet_root}/radiology/radiology.parquet"));
    expected.insert(format!("{parquet_root}/release-report.json"));
    expected.insert(format!("{parquet_root}/release-report.html"));
    assert_eq!(server.files().into_iter().collect::<BTreeSet<_>>(), expected);
    assert_eq!(answer.uploaded.iter().cloned().collect::<BTreeSet<_>>(), expected.iter().filter(|p| !p.ends_with(".zip")).cloned().collect());
    for (_, uid, _) in &exported {
        let uids = zip_study_uids(&server.root.join(PROJECT).join(format!("{uid}.zip")));
        assert!(!uids.is_empty() && uids.iter().all(|u| u == uid), "{uid}: {uids:?}");
    }

    // IMAGE_LINKER: one row per exported study, pseudonymous UIDs that differ from the
    // originals, and the procedures the database knows.
    let linker = server.root.join(&parquet_root).join("radiology/IMAGE_LINKER.parquet");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&linker).unwrap()).unwrap().build().unwrap();
    let mut linked: BTreeMap<String, Option<i64>> = BTreeMap::new();
    for batch in reader {
        let batch = batch.unwrap();
        let ids = batch.column_by_name("procedure_occurrence_id").unwrap().as_any().downcast_ref::<Int64Array>().unwrap().clone();
        let uids = batch.column_by_name("pseudo_study_uid").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        for row in 0..batch.num_rows() {
            linked.insert(uids.value(row).to_owned(), (!ids.is_null(row)).then(|| ids.value(row)));
        }
    }
    let in_database: BTreeMap<String, Option<i64>> = exported.iter().map(|(_, uid, procedure)| (uid.clone(), *procedure)).collect();
    assert_eq!(linked, in_database, "one linker row per exported study");
    let original_uids: BTreeSet<&str> = specs.iter().map(|s| s.study_uid.as_str()).collect();
    assert!(linked.keys().all(|uid| !original_uids.contains(uid.as_str())));

    // radiology.parquet: a row per study, linked by the pseudonymous UID, with the
    // de-identified report.
    let radiology = server.root.join(&parquet_root).join("radiology/radiology.parquet");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&radiology).unwrap()).unwrap().build().unwrap();
    let mut report_uids = BTreeSet::new();
    for batch in reader {
        let batch = batch.unwrap();
        let uids = batch.column_by_name("pseudo_study_uid").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        let texts = batch.column_by_name("report_text").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        let ages = batch.column_by_name("age").unwrap().as_any().downcast_ref::<arrow_array::Int32Array>().unwrap().clone();
        for row in 0..batch.num_rows() {
            report_uids.insert(uids.value(row).to_owned());
            assert!(texts.value(row).contains("[NAME]") && !ages.is_null(row));
        }
    }
    assert_eq!(report_uids, linked.keys().cloned().collect::<BTreeSet<_>>());
    // The release report: what was exported, reviewed and checked.
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(server.root.join(&parquet_root).join("release-report.json")).unwrap()).unwrap();
    assert_eq!(report["reports"]["exported"], exported.len());
    assert_eq!(report["reports"]["reviews"][0]["action"], "release");
    assert_eq!(report["reports"]["reviews"][0]["reason"], "Walked is the verb here");
    assert!(report["leak_scan"]["parquet"]["blocked"].is_null(), "{report}");
    assert_eq!(report["leak_scan"]["dicom"]["studies_passed"], exported.len());
    assert!(report["leak_scan"]["parquet"]["files"].as_array().unwrap().iter().any(|f| f == "radiology/radiology.parquet"));
    assert_eq!(report["configuration"][0]["role"], "project config");
    assert_eq!(report["configuration"][0]["sha256"].as_str().unwrap().len(), 64);
    assert!(report["dicom_attributes"]["base"]["keep"].as_array().is_some_and(|a| !a.is_empty()), "{report}");

    // No exported byte holds an identifier of the input.
    let mut identifiers = database_identifiers(&ctx).await;
    for patient in &patients {
        identifiers.extend(patient.identifiers());
    }
    for spec in &specs {
        identifiers.extend([spec.patient_id.clone(), spec.patient_name.clone(), spec.accession_number.clone(), spec.study_uid.clone()]);
        identifiers.extend((0..spec.series.len()).map(|i| spec.series_uid(i)));
    }
    for file in &originals {
        let object = dicom_object::open_file(file).unwrap();
        identifiers.push(object.meta().media_storage_sop_instance_uid().trim_end_matches('\0').to_owned());
    }
    identifiers.sort();
    identifiers.dedup();
    let mut exported_files = Vec::new();
    all_files(&server.root, &mut exported_files);
    assert_no_identifier_in(&exported_files, &identifiers);

    services.stop().await;
    pixl_cli::demo_ehr::drop_database(&emap).await.unwrap();
    ctx.teardown().await;
}
