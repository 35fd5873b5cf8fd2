//! The image linker of an extract covers every exported study of the project that the
//! extract's procedures name, with this extract's procedure ids, also when an earlier
//! extract queued (and exported) the study: as PIXL joins all exported images of the
//! project to the extract's procedures on MRN and accession number.

use pixl_cli::populate::{PopulateOptions, populate};
use pixl_core::queues::WorkQueue;
use pixl_core::testing::TestContext;

const SLUG: &str = "test-extract-uclh-omop-cdm";

fn cohort(dir: &std::path::Path, name: &str, extract: &str, rows: &[(i64, &str)]) -> std::path::PathBuf {
    let mut csv = String::from("procedure_id,mrn,accession_number,project_name,extract_generated_timestamp,study_date,study_uid,participant_id\n");
    for (procedure, patient) in rows {
        csv.push_str(&format!("{procedure},MRN-{patient},ACC-{patient},{SLUG},{extract},2022-01-01,,\n"));
    }
    let path = dir.join(name);
    std::fs::write(&path, csv).unwrap();
    path
}

#[tokio::test]
async fn a_later_extract_links_studies_an_earlier_one_exported() {
    let mut ctx = TestContext::new().await;
    let dir = tempfile::tempdir().unwrap();
    ctx.settings.host_export_root_dir = dir.path().to_owned();
    let run = |path| PopulateOptions { path, queue: WorkQueue::ImagingPrimary, priority: 1, show_progress: false };

    populate(&ctx.settings, &run(cohort(dir.path(), "first.csv", "2025-01-01T00:00:00Z", &[(1, "A")]))).await.unwrap();
    sqlx::query("UPDATE studies SET state = 'exported', exported_at = now(), exported_to = 'ftps', pseudo_study_uid = '2.25.77' WHERE mrn = 'MRN-A'")
        .execute(&ctx.pool)
        .await
        .unwrap();
    let second = populate(&ctx.settings, &run(cohort(dir.path(), "second.csv", "2025-02-01T00:00:00Z", &[(11, "A"), (12, "B")]))).await.unwrap();

    let extract = |when: &'static str| {
        let pool = ctx.pool.clone();
        async move { sqlx::query_scalar::<_, i64>("SELECT id FROM extracts WHERE extract_datetime = $1::timestamptz").bind(when).fetch_one(&pool).await.unwrap() }
    };
    let linked = |rows: Vec<pixl_export_api::linker::LinkerRow>| -> Vec<(Option<i64>, String)> {
        rows.into_iter().map(|r| (r.procedure_occurrence_id, r.pseudo_study_uid.as_str().to_owned())).collect()
    };
    let first_id = extract("2025-01-01T00:00:00Z").await;
    let second_id = extract("2025-02-01T00:00:00Z").await;
    assert_eq!(linked(pixl_export_api::linker::exported_studies(&ctx.pool, first_id).await.unwrap()), vec![(Some(1), "2.25.77".to_owned())]);
    // B is not exported yet; A is, under the first extract, and the second extract's
    // linker gives it the second extract's procedure id.
    assert_eq!(linked(pixl_export_api::linker::exported_studies(&ctx.pool, second_id).await.unwrap()), vec![(Some(11), "2.25.77".to_owned())], "{second}");
    ctx.teardown().await;
}
