//! The report parquet source (sites without EMAP): reports by accession number, rows
//! without a text or an accession skipped and counted, the file found whatever its case,
//! and errors that name the file and column but no value.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use pixl_cli::cohort::reports::{ReportFileError, read_reports};

fn write(dir: &std::path::Path, name: &str, columns: Vec<(&str, ArrayRef)>) {
    std::fs::create_dir_all(dir.join("private")).unwrap();
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(dir.join("private").join(name)).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn reports_are_read_by_accession_number() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "radiology_reports.parquet",
        vec![
            ("procedure_occurrence_id", Arc::new(Int32Array::from(vec![Some(1), Some(2), None, Some(4)])) as ArrayRef),
            ("accession_number", Arc::new(StringArray::from(vec![Some("RRV1"), Some("RRV2"), Some("RRV3"), None])) as ArrayRef),
            ("report_text", Arc::new(StringArray::from(vec![Some("Seen by Dr Okafor."), None, Some("No PHI."), Some("orphan")])) as ArrayRef),
        ],
    );
    let file = read_reports(dir.path()).unwrap();
    assert_eq!(file.reports.len(), 2);
    assert_eq!(file.skipped, 2, "a row without a text and one without an accession number");
    assert_eq!(file.reports["RRV1"].text, "Seen by Dr Okafor.");
    assert_eq!(file.reports["RRV1"].procedure_occurrence_id, Some(1));
    assert_eq!(file.reports["RRV3"].procedure_occurrence_id, None);
    assert!(!format!("{:?}", file.reports["RRV1"]).contains("Okafor"), "Debug shows no text");
}

#[test]
fn a_missing_file_or_column_is_named_without_values() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(read_reports(dir.path()), Err(ReportFileError::Missing(_))));
    write(
        dir.path(),
        "RADIOLOGY_REPORTS.parquet",
        vec![
            ("accession_number", Arc::new(StringArray::from(vec!["RRV1"])) as ArrayRef),
            ("report_text", Arc::new(StringArray::from(vec!["Dr Okafor"])) as ArrayRef),
        ],
    );
    let error = read_reports(dir.path()).unwrap_err().to_string();
    assert!(error.contains("no column \"procedure_occurrence_id\""), "{error}");
    assert!(!error.contains("Okafor") && !error.contains("RRV1"), "{error}");
    std::fs::write(dir.path().join("private/RADIOLOGY_REPORTS.parquet"), b"not parquet").unwrap();
    assert!(read_reports(dir.path()).unwrap_err().to_string().ends_with("not a readable parquet file"));
}
