//! `POST /export-patient-data`: what each bad request gets, a project exporting nothing,
//! a study of a project whose DICOM destination is `none`, and the parquet upload to a
//! directory destination.

use pixl_core::rest::{ErrorBody, PatientDataExported};

use crate::export::support::*;

async fn post(api: &ExportApi, body: serde_json::Value) -> (u16, String) {
    let response = reqwest::Client::new().post(format!("{}/export-patient-data", api.url)).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn error(text: &str) -> String {
    serde_json::from_str::<ErrorBody>(text).unwrap().error
}

#[tokio::test]
async fn bad_requests_get_clear_answers() {
    let f = Fixture::new("directory", "directory", 0, 0, 0).await;
    let api = ExportApi::start(&f.ctx, &f.vars()).await;
    // Before the service listens, retry.
    let mut answer = None;
    for _ in 0..50 {
        if let Ok(response) = reqwest::Client::new().get(format!("{}/heart-beat", api.url)).send().await {
            answer = Some(response.status());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answer, Some(reqwest::StatusCode::OK));

    let (status, text) = post(&api, serde_json::json!({"project_name": PROJECT, "extract_datetime": "yesterday"})).await;
    assert_eq!((status, error(&text).as_str()), (400, "extract_datetime is not a timestamp (expected e.g. 2023-12-07T14:08:58Z)"));
    let (status, text) = post(&api, serde_json::json!({"project_name": PROJECT, "extract_datetime": "2023-12-07T14:08:58"})).await;
    assert_eq!((status, error(&text).as_str()), (404, "project test-extract-uclh-omop-cdm has no extract of 2023-12-07t14-08-58; populate it first"));
    let (status, text) = post(&api, serde_json::json!({"project_name": PROJECT})).await;
    assert_eq!(status, 400, "{text}");
    assert!(error(&text).contains("extract_datetime"), "{text}");
    let (status, _) = post(&api, serde_json::json!({"project_name": "Unknown Project", "extract_datetime": "2023-12-07T14:08:58"})).await;
    assert_eq!(status, 404);
    api.stop().await;
    f.ctx.teardown().await;
}

#[tokio::test]
async fn directory_destination_gets_the_linker_and_none_exports_nothing() {
    let mut f = Fixture::new("directory", "directory", 2, 2, 32).await;
    let api = ExportApi::start(&f.ctx, &f.vars()).await;

    queue_exports(&f.ctx, &f.studies).await;
    let settled = wait_for(&f.ctx, &f.studies, &["exported", "failed"]).await;
    assert!(settled.iter().all(|(state, _, to)| state == "exported" && to.as_deref() == Some("directory")), "{settled:?}");
    let destination = f.dir.path().join("research-export");
    // SS-MIX2 tables written into the extract's tree (as `pixl ssmix2 extract --extract`
    // writes them) pass the identifier check and are uploaded with the rest.
    let ssmix2_tables = ssmix2_into_tree(&f.ctx.settings.host_export_root_dir.join(PROJECT).join("all_extracts/2024-01-01t00-00-00/ssmix2"));
    let (status, text) =
        post(&api, serde_json::json!({"project_name": "Test Extract - UCLH OMOP CDM", "extract_datetime": "2024-01-01 00:00:00", "output_dir": "/ignored"}))
            .await;
    assert_eq!(status, 200, "{text}");
    let answer: PatientDataExported = serde_json::from_str(&text).unwrap();
    assert_eq!(answer.linked_studies, 2);
    // The image linker, the reports (none yet: ehr-api did not run), the SS-MIX2 tables
    // and the release report.
    let root = format!("{PROJECT}/2024-01-01t00-00-00/parquet");
    let mut wanted = vec![format!("{root}/radiology/IMAGE_LINKER.parquet"), format!("{root}/radiology/radiology.parquet")];
    wanted.extend(ssmix2_tables.iter().map(|table| format!("{root}/ssmix2/{table}")));
    wanted.extend([format!("{root}/release-report.json"), format!("{root}/release-report.html")]);
    assert_eq!(answer.uploaded, wanted);
    assert_eq!((answer.reports, answer.reports_withheld), (0, 0));
    let mut files: Vec<String> = Vec::new();
    let mut found = Vec::new();
    all_files(&destination, &mut found);
    files.extend(found.iter().map(|p| p.strip_prefix(&destination).unwrap().display().to_string()));
    files.sort();
    let mut expected: Vec<String> = f.studies.iter().map(|s| format!("{PROJECT}/{}.zip", s.pseudo_study_uid)).collect();
    expected.extend(answer.uploaded.iter().cloned());
    expected.sort();
    assert_eq!(files, expected);
    let text = parquet_text(&destination.join(&answer.uploaded[0]));
    for study in &f.studies {
        assert!(text.contains(&study.pseudo_study_uid), "the linker names every exported study");
    }
    api.stop().await;

    // The same project exporting nothing: studies are done on purpose, nothing uploaded.
    let configs = project_configs(&f.dir.path().join("none"), "none", "none");
    f.ctx.settings.project_configs_dir = configs;
    let more = deidentified_studies(&f.ctx, &f.dir.path().join("none"), &f.anon_store, 1, 2, 32).await;
    let api = ExportApi::start(&f.ctx, &f.vars()).await;
    queue_exports(&f.ctx, &more).await;
    let settled = wait_for(&f.ctx, &more, &["exported", "failed"]).await;
    assert_eq!((settled[0].0.as_str(), settled[0].2.as_deref()), ("exported", Some("none")));
    let (status, text) = post(&api, serde_json::json!({"project_name": PROJECT, "extract_datetime": "2024-01-01T00:00:00Z"})).await;
    assert_eq!(status, 200, "{text}");
    let answer: PatientDataExported = serde_json::from_str(&text).unwrap();
    assert_eq!((answer.destination.as_str(), answer.uploaded.len(), answer.linked_studies), ("none", 0, 2), "studies with no DICOM export are not linked");
    let mut after = Vec::new();
    all_files(&destination, &mut after);
    assert_eq!(after.len(), expected.len(), "nothing more in the destination");
    api.stop().await;
    f.ctx.teardown().await;
}

/// The independent generator's SS-MIX2 storage extracted into `dir`; the parquet files'
/// names, sorted.
fn ssmix2_into_tree(dir: &std::path::Path) -> Vec<String> {
    struct Ids;
    impl pixl_ssmix2::extract::Ids for Ids {
        fn pseudonym(&self, pid: &str) -> String {
            format!("{:016x}", pid.bytes().fold(7u64, |a, b| a.wrapping_mul(131).wrapping_add(u64::from(b))))
        }
        fn offset_days(&self, _: &str) -> i64 {
            -30
        }
    }
    let storage = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/ssmix2-synthetic/storage");
    let options = pixl_ssmix2::extract::Options {
        identity_tag: "T".to_owned(),
        time_mode: pixl_ssmix2::extract::TimeMode::Shift,
        birth_dates: pixl_ssmix2::extract::BirthDates::Year,
        period_start: None,
        period_end: None,
        min_encounters: 1,
        format: pixl_ssmix2::extract::Format::Parquet,
        recipient: None,
        shuffled_ids_map_key: None,
        max_workers: 1,
        free_text: pixl_ssmix2::read::FreeText::Remove,
    };
    let report = pixl_ssmix2::extract::extract(&storage, dir, &options, &Ids, &|_, _| {}).unwrap();
    assert_eq!(report.patients_included, 6);
    let mut tables: Vec<String> = report.files_written.into_iter().filter(|f| f.ends_with(".parquet")).collect();
    tables.sort();
    assert_eq!(tables.len(), 9, "seven record tables, patient_metadata and date_of_birth: {tables:?}");
    tables
}

#[tokio::test]
async fn a_stale_export_message_leaves_the_study_as_it_is() {
    let f = Fixture::new("directory", "none", 2, 2, 32).await;
    let context = pixl_export_api::service::connect(&config(&f.vars()), &f.ctx.settings).await.unwrap();
    // One study sent back to retrieval by `pixl retry-failed`, one failed elsewhere.
    for (study, state) in f.studies.iter().zip(["retrieved", "failed"]) {
        sqlx::query("UPDATE studies SET state = $2::study_state WHERE id = $1").bind(study.id.0).bind(state).execute(&f.ctx.pool).await.unwrap();
        let message = pixl_core::messages::QueueMessage::ExportV1(pixl_core::messages::ExportRequest {
            study_id: study.id,
            project: pixl_core::ids::ProjectSlug::parse(PROJECT).unwrap(),
            pseudo_study_uid: pixl_core::ids::PseudoStudyUid::parse(&study.pseudo_study_uid).unwrap(),
        });
        let handled = pixl_export_api::service::handle(&context, &message.encode()).await;
        assert_eq!(handled, pixl_core::consumer::Handled::Done, "{state}");
        assert_eq!(study_state(&f.ctx, study.id).await.0, state, "the row keeps its state");
    }
    assert!(!f.dir.path().join("research-export").exists(), "nothing was exported");
    f.ctx.teardown().await;
}

#[tokio::test]
async fn a_parquet_file_holding_a_raw_identifier_never_leaves() {
    let f = Fixture::new("directory", "directory", 1, 2, 32).await;
    let api = ExportApi::start(&f.ctx, &f.vars()).await;
    queue_exports(&f.ctx, &f.studies).await;
    wait_for(&f.ctx, &f.studies, &["exported"]).await;
    // A public table that (wrongly) carries the patient's MRN, spaced out, in a text column.
    let slug = pixl_core::ids::ProjectSlug::parse(PROJECT).unwrap();
    let extract_time = pixl_core::export_tree::parse_extract_datetime("2024-01-01T00:00:00Z").unwrap();
    let public = pixl_core::export_tree::extract_dir(&f.ctx.settings.host_export_root_dir, &slug, extract_time).join("omop/public");
    std::fs::create_dir_all(&public).unwrap();
    let mrn = f.studies[0].original.patient_id.clone();
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("person_id", arrow_schema::DataType::Int64, false),
        arrow_schema::Field::new("person_source_value", arrow_schema::DataType::Utf8, true),
    ]));
    let batch = arrow_array::RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(arrow_array::Int64Array::from(vec![1, 2])),
            std::sync::Arc::new(arrow_array::StringArray::from(vec![Some("not an identifier".to_owned()), Some(format!("patient {mrn}"))])),
        ],
    )
    .unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(public.join("PERSON.parquet")).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let (status, text) = post(&api, serde_json::json!({"project_name": PROJECT, "extract_datetime": "2024-01-01T00:00:00Z"})).await;
    assert_eq!(status, 422, "{text}");
    assert_eq!(
        error(&text),
        "refusing to export: omop/public/PERSON.parquet: column person_source_value, row 1 holds a raw identifier of the project (an MRN)"
    );
    assert!(!text.contains(&mrn));
    // Nothing of the extract reached the destination.
    let mut uploaded = Vec::new();
    all_files(&f.dir.path().join("research-export"), &mut uploaded);
    assert!(uploaded.iter().all(|p| p.extension().is_some_and(|e| e == "zip")), "{uploaded:?}");
    api.stop().await;
    f.ctx.teardown().await;
}
