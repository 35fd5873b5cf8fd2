//! `pixl populate` on PIXL's real input fixtures: rows, messages, idempotence.

use pixl_core::ids::StudyId;
use pixl_core::messages::{QueueMessage, StudyRef};
use pixl_core::queues::WorkQueue;

use crate::support::{Env, fixture};

/// (procedure id, mrn, accession, study uid, date) of a study row.
type Key = (Option<i64>, String, Option<String>, Option<String>, Option<String>);

/// The key of each study row.
fn keys(rows: &[crate::support::StudyRow]) -> Vec<Key> {
    rows.iter().map(|r| (r.procedure_occurrence_id, r.mrn.clone(), r.accession_number.clone(), r.study_uid.clone(), r.study_date.clone())).collect()
}

fn imaging(rows: &[crate::support::StudyRow]) -> Vec<QueueMessage> {
    rows.iter().map(|r| QueueMessage::ImagingV1(StudyRef { study_id: StudyId(r.id), project: r.project.parse_slug() })).collect()
}

trait ParseSlug {
    fn parse_slug(&self) -> pixl_core::ids::ProjectSlug;
}

impl ParseSlug for String {
    fn parse_slug(&self) -> pixl_core::ids::ProjectSlug {
        pixl_core::ids::ProjectSlug::parse(self).unwrap()
    }
}

fn sorted(mut messages: Vec<QueueMessage>) -> Vec<QueueMessage> {
    messages.sort_by_key(QueueMessage::study_id);
    messages
}

#[tokio::test]
async fn flat_omop_extract_queues_the_two_studies_with_accession_numbers() {
    let env = Env::new().await;
    let summary = env.populate(&fixture("omop")).await.unwrap();

    let rows = env.studies().await;
    assert_eq!(
        keys(&rows),
        vec![
            (
                Some(4),
                "987654321".into(),
                Some("AA12345601".into()),
                Some("1.3.6.1.4.1.14519.5.2.1.99.1071.12985477682660597455732044031486".into()),
                Some("2020-05-23".into())
            ),
            (
                Some(5),
                "987654321".into(),
                Some("AA12345605".into()),
                Some("1.2.276.0.7230010.3.1.2.929116473.1.1710754859.579485".into()),
                Some("2020-05-23".into())
            ),
        ]
    );
    assert!(rows.iter().all(|r| r.project == "test-extract-uclh-omop-cdm" && r.state == "queued"));
    assert!(rows.iter().all(|r| r.extract_datetime.starts_with("2023-12-07 14:08:58")), "{rows:?}");
    assert_eq!(sorted(env.ctx.take_messages(WorkQueue::ImagingPrimary).await), sorted(imaging(&rows)));
    assert_eq!(env.count("outbox").await, 0, "published messages leave the outbox");

    // Each study is also queued for ehr-api (the project reads its EHR from EMAP, the default).
    let ehr: Vec<i64> = env.ctx.take_messages(WorkQueue::Ehr).await.iter().map(|m| m.study_id().0).collect();
    assert_eq!(sorted_ids(ehr), sorted_ids(rows.iter().map(|r| r.id).collect()));
    assert_eq!((summary.rows_read, summary.dropped_without_identifier, summary.published), (6, 4, 4));
    assert_eq!(summary.projects.len(), 1);
    assert_eq!((summary.projects[0].queued, summary.projects[0].already_known), (2, 0));

    // The public OMOP files are copied and `latest` points at the extract.
    let project_dir = env.export_root.path().join("test-extract-uclh-omop-cdm");
    let copied = project_dir.join("all_extracts/2023-12-07t14-08-58/omop/public/omop/PROCEDURE_OCCURRENCE.parquet");
    assert_eq!(std::fs::read(&copied).unwrap(), std::fs::read(fixture("omop/public/omop/PROCEDURE_OCCURRENCE.parquet")).unwrap());
    assert_eq!(std::fs::read_link(project_dir.join("latest")).unwrap(), std::path::Path::new("all_extracts/2023-12-07t14-08-58"));
    assert!(project_dir.join("latest/omop/public/omop/PROCEDURE_OCCURRENCE.parquet").is_file());
    assert_eq!(summary.public_copy.as_deref(), Some(project_dir.join("all_extracts/2023-12-07t14-08-58/omop/public").as_path()));
    env.teardown().await;
}

#[tokio::test]
async fn batched_omop_extract_joins_every_part_and_drops_rows_without_identifiers() {
    let env = Env::new().await;
    let summary = env.populate(&fixture("omop-batched")).await.unwrap();
    let rows = env.studies().await;
    let expected: Vec<Key> = [
        (1, "12345678", "12345678", "1.2.840.114350.2.525.2.798268.2.190000011.1", "2021-07-01"),
        (2, "12345678", "ABC1234567", "1.2.840.114350.2.525.2.798268.2.190000012.1", "2021-07-01"),
        (3, "987654321", "ABC1234560", "1.2.840.114350.2.525.2.798268.2.190000013.1", "2020-05-01"),
        (4, "5020765", "MIG0234560", "1.2.840.114350.2.525.2.798268.2.110000014.1", "2015-05-01"),
        (5, "987654321", "AA12345601", "1.2.840.114350.2.525.2.798268.2.190000015.1", "2020-05-23"),
        (6, "987654321", "AA12345605", "1.2.840.114350.2.525.2.798268.2.190000016.1", "2020-05-23"),
    ]
    .into_iter()
    .map(|(p, m, a, u, d)| (Some(p), m.to_owned(), Some(a.to_owned()), Some(u.to_owned()), Some(d.to_owned())))
    .collect();
    assert_eq!(keys(&rows), expected);
    assert_eq!((summary.rows_read, summary.dropped_without_identifier), (10, 4));
    assert_eq!(sorted(env.ctx.take_messages(WorkQueue::ImagingPrimary).await), sorted(imaging(&rows)));
    env.teardown().await;
}

#[tokio::test]
async fn every_csv_fixture_loads_with_pixl_semantics() {
    // (fixture, expected (project, mrn, accession, study uid, series, participant) rows)
    type Expect = (&'static str, &'static str, &'static str, &'static str, &'static [&'static str], Option<&'static str>);
    let cases: &[(&str, &[Expect])] = &[
        (
            "batch_input.csv",
            &[
                ("i-am-a-project", "mrn", "123", "1.2.3", &[], None),
                ("i-am-a-project", "mrn", "234", "2.3.4", &[], None),
                ("i-am-a-project", "mrn", "345", "3.4.5", &[], None),
            ],
        ),
        // Rows 4-6 repeat rows 1-3 with a later extract timestamp: merged.
        (
            "duplicate_input.csv",
            &[
                ("i-am-a-project", "mrn", "123", "1.2.3", &[], None),
                ("i-am-a-project", "mrn", "234", "2.3.4", &[], None),
                ("i-am-a-project", "mrn", "345", "3.4.5", &[], None),
            ],
        ),
        (
            "multiple_projects.csv",
            &[
                ("i-am-a-project", "mrn", "123", "1.2.3", &[], None),
                ("i-am-a-project", "mrn", "234", "2.3.4", &[], None),
                ("i-am-a-project", "mrn", "345", "3.4.5", &[], None),
                ("i-am-another-project", "mrn", "123", "1.2.3", &[], None),
                ("i-am-another-project", "mrn", "234", "2.3.4", &[], None),
                ("i-am-another-project", "mrn", "345", "3.4.5", &[], None),
            ],
        ),
        (
            "participant_id.csv",
            &[
                ("i-am-a-project", "mrn", "123", "1.2.3", &[], Some("AAA00")),
                ("i-am-a-project", "mrn", "234", "2.3.4", &[], Some("BBB11")),
                ("i-am-a-project", "mrn", "345", "3.4.5", &[], Some("CCC22")),
            ],
        ),
        ("test.csv", &[("ms-pinpoint-test", "patient_identifier", "123456789", "1.2.3.4.5.6.7.8", &[], None)]),
        // Whitespace is trimmed, the duplicate merged, rows without identifiers dropped.
        ("test_whitespace_and_na_processing.csv", &[("ms-pinpoint-test", "patient_identifier", "123456789", "1.2.3.4.5.6.7.8", &[], None)]),
        (
            "series-level-querying/single-series.csv",
            &[(
                "test-extract-uclh-omop-cdm",
                "987654321",
                "AA12345601",
                "1.3.6.1.4.1.14519.5.2.1.99.1071.12985477682660597455732044031486",
                &["1.3.46.670589.11.38023.5.0.7404.2023012517551890000"],
                None,
            )],
        ),
        (
            "series-level-querying/all-series.csv",
            &[(
                "test-extract-uclh-omop-cdm",
                "987654321",
                "AA12345601",
                "1.3.6.1.4.1.14519.5.2.1.99.1071.12985477682660597455732044031486",
                &["1.3.46.670589.11.38023.5.0.7404.2023012517551890000", "1.3.46.670589.11.38023.5.0.7404.2023012517551890001"],
                None,
            )],
        ),
    ];
    for (name, expected) in cases {
        let env = Env::new().await;
        let summary = env.populate(&fixture(name)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let rows = env.studies().await;
        assert_eq!(rows.len(), expected.len(), "{name}: {rows:?}");
        for (row, (project, mrn, accession, uid, series, participant)) in rows.iter().zip(expected.iter()) {
            assert_eq!(row.project, *project, "{name}");
            assert_eq!(row.mrn, *mrn, "{name}");
            assert_eq!(row.accession_number.as_deref(), Some(*accession), "{name}");
            assert_eq!(row.study_uid.as_deref(), Some(*uid), "{name}");
            assert_eq!(row.series_uids, series.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{name}");
            assert_eq!(row.participant_id.as_deref(), *participant, "{name}");
        }
        assert_eq!(sorted(env.ctx.take_messages(WorkQueue::ImagingPrimary).await), sorted(imaging(&rows)), "{name}");
        assert_eq!(summary.published as usize, 2 * expected.len(), "{name}: an imaging and an ehr message per study");
        assert!(summary.public_copy.is_none(), "CSV cohorts copy no OMOP files");
        env.teardown().await;
    }
}

#[tokio::test]
async fn whitespace_fixture_reports_what_it_dropped_and_merged() {
    let env = Env::new().await;
    let summary = env.populate(&fixture("test_whitespace_and_na_processing.csv")).await.unwrap();
    assert_eq!((summary.rows_read, summary.dropped_without_identifier, summary.duplicates_merged), (4, 2, 1));
    env.teardown().await;
}

#[tokio::test]
async fn a_second_populate_queues_nothing_and_duplicates_nothing() {
    let env = Env::new().await;
    env.populate(&fixture("omop")).await.unwrap();
    let first_rows = env.studies().await;
    assert_eq!(env.ctx.take_messages(WorkQueue::ImagingPrimary).await.len(), 2);

    let again = env.populate(&fixture("omop")).await.unwrap();
    assert_eq!(env.studies().await, first_rows);
    assert_eq!(env.count("extracts").await, 1);
    assert!(env.ctx.take_messages(WorkQueue::ImagingPrimary).await.is_empty());
    assert_eq!((again.projects[0].queued, again.projects[0].already_known, again.published), (0, 2, 0));
    env.teardown().await;
}

#[tokio::test]
async fn an_exported_study_is_never_queued_again_even_from_a_new_extract() {
    let env = Env::new().await;
    env.populate(&fixture("series-level-querying/single-series.csv")).await.unwrap();
    env.ctx.take_messages(WorkQueue::ImagingPrimary).await;
    sqlx::query("UPDATE studies SET state = 'exported', exported_at = now()").execute(&env.ctx.pool).await.unwrap();

    // The flat OMOP extract is a different extract naming the same study (procedure 4)
    // and one more (procedure 5).
    let summary = env.populate(&fixture("omop")).await.unwrap();
    let rows = env.studies().await;
    assert_eq!(rows.len(), 2);
    let new_study = rows.iter().find(|r| r.state == "queued").unwrap();
    assert_eq!(new_study.accession_number.as_deref(), Some("AA12345605"));
    assert_eq!(env.ctx.take_messages(WorkQueue::ImagingPrimary).await, imaging(std::slice::from_ref(new_study)));
    assert_eq!((summary.projects[0].queued, summary.projects[0].already_known), (1, 1));
    env.teardown().await;
}

#[tokio::test]
async fn messages_left_in_the_outbox_by_an_interrupted_run_are_published_by_the_next() {
    let env = Env::new().await;
    env.populate(&fixture("omop")).await.unwrap();
    env.ctx.take_messages(WorkQueue::ImagingPrimary).await;
    // A run that committed its studies but died before publishing leaves outbox rows.
    sqlx::query("INSERT INTO outbox (study_id, kind, queue, priority) SELECT id, 'imaging', 'imaging-primary', 1 FROM studies")
        .execute(&env.ctx.pool)
        .await
        .unwrap();

    let summary = env.populate(&fixture("test.csv")).await.unwrap();
    assert_eq!(summary.published, 4, "two left over and one new study's imaging and ehr messages");
    assert_eq!(env.ctx.take_messages(WorkQueue::ImagingPrimary).await.len(), 3);
    assert_eq!(env.count("outbox").await, 0);
    env.teardown().await;
}

#[tokio::test]
async fn priority_and_queue_options_are_honoured() {
    let env = Env::new().await;
    let options =
        pixl_cli::populate::PopulateOptions { path: fixture("batch_input.csv"), queue: WorkQueue::ImagingSecondary, priority: 4, show_progress: false };
    pixl_cli::populate::populate(&env.ctx.settings, &options).await.unwrap();
    assert!(env.ctx.take_messages(WorkQueue::ImagingPrimary).await.is_empty());
    assert_eq!(env.ctx.take_messages(WorkQueue::ImagingSecondary).await.len(), 3);
    env.teardown().await;
}

fn sorted_ids(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort_unstable();
    ids
}

/// A CSV cohort of one study of `project`.
fn one_study_csv(dir: &std::path::Path, project: &str) -> std::path::PathBuf {
    let path = dir.join("cohort.csv");
    std::fs::write(
        &path,
        format!(
            "procedure_id,mrn,accession_number,project_name,extract_generated_timestamp,study_date,study_uid,participant_id\n\
                 0,40012345,RRV1234567,{project},2023-01-01T00:01:00Z,2022-01-01,1.2.3.4.5.6.7.8,\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn a_project_saying_ehr_none_queues_no_ehr_work() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let summary = env.populate(&one_study_csv(dir.path(), "no-ehr-project")).await.unwrap();
    assert_eq!(summary.published, 1);
    assert_eq!(env.ctx.take_messages(WorkQueue::ImagingPrimary).await.len(), 1);
    assert!(env.ctx.take_messages(WorkQueue::Ehr).await.is_empty());
    let wanted: bool = sqlx::query_scalar("SELECT ehr_wanted FROM studies").fetch_one(&env.ctx.pool).await.unwrap();
    assert!(!wanted);
    env.teardown().await;
}

#[tokio::test]
async fn reports_from_the_extract_are_kept_until_ehr_api_has_them_and_a_csv_cohort_cannot_give_them() {
    let env = Env::new().await;
    // A copy of the flat OMOP extract for a project reading its reports from the extract,
    // with a report for one of its two studies.
    let dir = tempfile::tempdir().unwrap();
    let extract = dir.path().join("extract");
    copy_dir(&fixture("omop"), &extract);
    let summary_path = extract.join("extract_summary.json");
    let summary = std::fs::read_to_string(&summary_path).unwrap().replace("Test Extract - UCLH OMOP CDM", "Reports Parquet Project");
    std::fs::write(&summary_path, summary).unwrap();
    write_reports(&extract.join("private/RADIOLOGY_REPORTS.parquet"), &[(4, "AA12345601", "Report for the first study.")]);
    env.populate(&extract).await.unwrap();
    let kept: Vec<(String, String)> = sqlx::query_as("SELECT s.accession_number, r.report_text FROM ehr_source_reports r JOIN studies s ON s.id = r.study_id")
        .fetch_all(&env.ctx.pool)
        .await
        .unwrap();
    assert_eq!(kept, [("AA12345601".to_owned(), "Report for the first study.".to_owned())]);
    assert_eq!(env.ctx.take_messages(WorkQueue::Ehr).await.len(), 2, "both studies go to ehr-api; the one without a report has no EHR record");

    // The extract without its report file: a clear error naming the file.
    std::fs::remove_file(extract.join("private/RADIOLOGY_REPORTS.parquet")).unwrap();
    let error = env.populate(&extract).await.unwrap_err().to_string();
    assert!(error.contains("RADIOLOGY_REPORTS.parquet") && error.contains("reports-parquet"), "{error}");
    let error = env.populate(&one_study_csv(dir.path(), "reports-parquet-project")).await.unwrap_err().to_string();
    assert!(error.contains("needs an OMOP extract"), "{error}");
    env.teardown().await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn write_reports(path: &std::path::Path, rows: &[(i64, &str, &str)]) {
    use std::sync::Arc;
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("procedure_occurrence_id", arrow_schema::DataType::Int64, true),
        arrow_schema::Field::new("accession_number", arrow_schema::DataType::Utf8, true),
        arrow_schema::Field::new("report_text", arrow_schema::DataType::Utf8, true),
    ]));
    let batch = arrow_array::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(rows.iter().map(|r| Some(r.0)).collect::<arrow_array::Int64Array>()),
            Arc::new(rows.iter().map(|r| Some(r.1)).collect::<arrow_array::StringArray>()),
            Arc::new(rows.iter().map(|r| Some(r.2)).collect::<arrow_array::StringArray>()),
        ],
    )
    .unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}
