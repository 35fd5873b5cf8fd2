//! Bad input: each class gives one clear message naming the file, column and row, a
//! non-zero exit, and leaves nothing behind (no rows, no messages, no files).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use pixl_core::queues::WorkQueue;

use crate::support::{Env, fixture};

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A copy of the flat OMOP fixture to break.
fn omop_copy(dir: &Path) -> PathBuf {
    let root = dir.join("extract");
    copy_tree(&fixture("omop"), &root);
    root
}

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn csv(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("cohort.csv");
    std::fs::write(&path, text).unwrap();
    path
}

const HEADER: &str = "procedure_id,mrn,accession_number,project_name,extract_generated_timestamp,study_date,study_uid,participant_id\n";

/// Populates `input`, expects an error containing every one of `expected`, then checks
/// that nothing was written anywhere.
async fn assert_rejected(env: &Env, input: &Path, expected: &[&str]) {
    let error = env.populate(input).await.expect_err("populate should fail").to_string();
    for part in expected {
        assert!(error.contains(part), "expected {part:?} in: {error}");
    }
    for table in ["studies", "extracts", "outbox"] {
        assert_eq!(env.count(table).await, 0, "{table} after: {error}");
    }
    assert!(env.ctx.take_messages(WorkQueue::ImagingPrimary).await.is_empty(), "messages after: {error}");
    assert_eq!(std::fs::read_dir(env.export_root.path()).unwrap().count(), 0, "export files after: {error}");
}

#[tokio::test]
async fn missing_paths_and_files_are_named() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();

    assert_rejected(&env, &dir.path().join("nope.csv"), &["nope.csv: no such file or directory"]).await;

    let text = dir.path().join("cohort.txt");
    std::fs::write(&text, "hello").unwrap();
    assert_rejected(&env, &text, &["cohort.txt: not a cohort"]).await;

    let root = omop_copy(dir.path());
    std::fs::remove_file(root.join("private/PERSON_LINKS.parquet")).unwrap();
    assert_rejected(&env, &root, &["extract: missing private/PERSON_LINKS.parquet"]).await;

    std::fs::remove_file(root.join("extract_summary.json")).unwrap();
    assert_rejected(&env, &root, &["extract: missing extract_summary.json"]).await;
    env.teardown().await;
}

#[tokio::test]
async fn a_broken_extract_summary_is_reported() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let root = omop_copy(dir.path());
    std::fs::write(root.join("extract_summary.json"), r#"{"datetime": "2023-12-07 14:08:58", "settings": {}}"#).unwrap();
    assert_rejected(&env, &root, &["extract_summary.json: cannot be read", "cdm_source_name"]).await;
    std::fs::write(root.join("extract_summary.json"), r#"{"datetime": "last tuesday", "settings": {"cdm_source_name": "Test Extract - UCLH OMOP CDM"}}"#)
        .unwrap();
    assert_rejected(&env, &root, &["extract_summary.json: summary, column `datetime`: is not a timestamp"]).await;
    env.teardown().await;
}

#[tokio::test]
async fn missing_columns_are_named_with_their_file() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let root = omop_copy(dir.path());
    write_parquet(
        &root.join("private/PERSON_LINKS.parquet"),
        vec![("person_id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef), ("SomeOtherMrn", Arc::new(StringArray::from(vec!["1", "2"])) as ArrayRef)],
    );
    assert_rejected(&env, &root, &["PERSON_LINKS.parquet: missing column `PrimaryMrn`"]).await;

    let no_mrn = csv(dir.path(), "procedure_id,accession_number,project_name,extract_generated_timestamp,study_date,study_uid\n");
    assert_rejected(&env, &no_mrn, &["cohort.csv: missing column `mrn`"]).await;
    env.teardown().await;
}

#[tokio::test]
async fn wrong_types_are_named_with_file_and_column() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let root = omop_copy(dir.path());
    write_parquet(
        &root.join("private/PERSON_LINKS.parquet"),
        vec![
            ("person_id", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
            ("PrimaryMrn", Arc::new(Int64Array::from(vec![12345678, 987654321, 5020765])) as ArrayRef),
        ],
    );
    assert_rejected(&env, &root, &["PERSON_LINKS.parquet: column `PrimaryMrn` has type Int64, expected a string"]).await;

    let root = dir.path().join("extract2");
    copy_tree(&fixture("omop"), &root);
    write_parquet(
        &root.join("private/PROCEDURE_OCCURRENCE_LINKS.parquet"),
        vec![
            ("procedure_occurrence_id", Arc::new(StringArray::from(vec!["four"])) as ArrayRef),
            ("AccessionNumber", Arc::new(StringArray::from(vec!["AA1"])) as ArrayRef),
            ("StudyUid_X", Arc::new(StringArray::from(vec!["1.2.3"])) as ArrayRef),
        ],
    );
    assert_rejected(&env, &root, &["PROCEDURE_OCCURRENCE_LINKS.parquet: column `procedure_occurrence_id` has type Utf8, expected an integer"]).await;

    let bad_id = csv(dir.path(), &format!("{HEADER}x1,mrn,123,i-am-a-project,2023-01-01T00:00:00Z,2023-01-01,1.2.3,\n"));
    assert_rejected(&env, &bad_id, &["cohort.csv: line 2, column `procedure_id`: is not a whole number"]).await;
    env.teardown().await;
}

#[tokio::test]
async fn unparseable_dates_name_file_row_and_column() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    // Two good rows first: they must not be saved either.
    let bad_date = csv(
        dir.path(),
        &format!(
            "{HEADER}1,mrn,123,i-am-a-project,2023-01-01T00:00:00Z,2023-01-01,1.2.3,\n2,mrn,234,i-am-a-project,2023-01-01T00:00:00Z,2023-01-01,2.3.4,\n3,mrn,345,i-am-a-project,2023-01-01T00:00:00Z,01/02/2023,3.4.5,\n"
        ),
    );
    assert_rejected(&env, &bad_date, &["cohort.csv: line 4, column `study_date`: is not a date in YYYY-MM-DD form"]).await;

    let bad_timestamp = csv(dir.path(), &format!("{HEADER}1,mrn,123,i-am-a-project,soon,2023-01-01,1.2.3,\n"));
    assert_rejected(&env, &bad_timestamp, &["line 2, column `extract_generated_timestamp`: is not a timestamp"]).await;

    let root = omop_copy(dir.path());
    write_parquet(
        &root.join("public/omop/PROCEDURE_OCCURRENCE.parquet"),
        vec![
            ("procedure_occurrence_id", Arc::new(Int64Array::from(vec![4, 5])) as ArrayRef),
            ("person_id", Arc::new(Int64Array::from(vec![2, 2])) as ArrayRef),
            ("procedure_date", Arc::new(StringArray::from(vec!["2020-05-23", "23rd May"])) as ArrayRef),
        ],
    );
    assert_rejected(&env, &root, &["PROCEDURE_OCCURRENCE.parquet: row 2, column `procedure_date`: is not a date"]).await;
    env.teardown().await;
}

#[tokio::test]
async fn bad_identifiers_and_malformed_rows_are_named_without_echoing_them() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let bad_uid = csv(dir.path(), &format!("{HEADER}1,mrn,123,i-am-a-project,2023-01-01T00:00:00Z,2023-01-01,SECRET-UID,\n"));
    let error = env.populate(&bad_uid).await.unwrap_err().to_string();
    assert!(error.contains("line 2, column `study_uid`: study UID contains a character that is not allowed"), "{error}");
    assert!(!error.contains("SECRET"), "{error}");

    let ragged = csv(dir.path(), &format!("{HEADER}1,mrn,123\n"));
    assert_rejected(&env, &ragged, &["cohort.csv: line 2: has 3 fields, but the header has 8"]).await;
    env.teardown().await;
}

#[tokio::test]
async fn unknown_projects_and_unreadable_configs_are_reported() {
    let mut env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let unknown = csv(dir.path(), &format!("{HEADER}1,mrn,123,No Such Project,2023-01-01T00:00:00Z,2023-01-01,1.2.3,\n"));
    assert_rejected(&env, &unknown, &["project \"no-such-project\" has no config", "no-such-project.yaml does not exist"]).await;

    // A configs directory whose project YAML is broken.
    let configs = dir.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    std::os::unix::fs::symlink(env.ctx.settings.project_configs_dir.join("tag-operations"), configs.join("tag-operations")).unwrap();
    std::fs::write(configs.join("i-am-a-project.yaml"), "project:\n  name: \"unclosed\n").unwrap();
    env.ctx.settings.project_configs_dir = configs.clone();
    assert_rejected(&env, &fixture("batch_input.csv"), &["i-am-a-project.yaml: cannot be read"]).await;

    std::fs::write(
        configs.join("test-extract-uclh-omop-cdm.yaml"),
        "project:\n  name: test-extract-uclh-omop-cdm\n  modalities: [DX]\ntag_operation_files:\n  base: [base.yaml]\ndestination:\n  dicom: ftps\n  parquet: nowhere\n",
    )
    .unwrap();
    assert_rejected(&env, &fixture("omop"), &["test-extract-uclh-omop-cdm.yaml: field `destination.parquet`: unknown variant `nowhere`"]).await;
    env.teardown().await;
}

#[tokio::test]
async fn an_input_with_no_usable_row_is_an_error() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let empty = csv(dir.path(), &format!("{HEADER}1,mrn,,i-am-a-project,2023-01-01T00:00:00Z,2023-01-01,,\n"));
    assert_rejected(&env, &empty, &["cohort.csv: no usable row"]).await;
    let header_only = csv(dir.path(), HEADER);
    assert_rejected(&env, &header_only, &["cohort.csv: no usable row"]).await;
    env.teardown().await;
}

/// The binary: exit code, message on stderr, and no identifier in any output even at
/// debug log level.
#[tokio::test]
async fn the_binary_exits_non_zero_with_the_message_and_never_prints_identifiers() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let run = |input: &Path| {
        let s = &env.ctx.settings;
        std::process::Command::new(env!("CARGO_BIN_EXE_pixl"))
            .arg("populate")
            .arg(input)
            .current_dir(dir.path())
            .env("PIXL_DB_NAME", &s.database.name)
            .env("PIXL_QUEUE_PREFIX", &s.queue_prefix)
            .env("PROJECT_CONFIGS_DIR", &s.project_configs_dir)
            .env("HOST_EXPORT_ROOT_DIR", &s.host_export_root_dir)
            .env("RUST_LOG", "debug")
            .output()
            .unwrap()
    };

    let bad = csv(dir.path(), &format!("{HEADER}1,patient_identifier,123456789,i-am-a-project,2023-01-01T00:00:00Z,2023-13-45,1.2.3.4.5.6.7.8,\n"));
    let output = run(&bad);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error: ") && stderr.contains("line 2, column `study_date`"), "{stderr}");

    let output = run(&fixture("test.csv"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("project ms-pinpoint-test: 1 studies, 1 newly queued"), "{stdout}");

    let output = run(&fixture("omop"));
    assert!(output.status.success());
    for output in [&output] {
        let everything = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        for identifier in ["987654321", "AA12345601", "AA12345605", "1.3.6.1.4.1.14519.5.2.1.99.1071"] {
            assert!(!everything.contains(identifier), "output contains an identifier: {everything}");
        }
    }
    env.teardown().await;
}
