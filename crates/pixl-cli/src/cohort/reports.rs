//! The second EHR source, for sites without EMAP: the extract's report file
//! `private/RADIOLOGY_REPORTS.parquet` (columns `procedure_occurrence_id`,
//! `accession_number`, `report_text`), read whole into a map by accession number. Errors
//! name the file and the column, never a value; rows without an accession number or a
//! text are skipped and counted.

use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
};

use arrow_array::{Array, RecordBatch, cast::AsArray, types::Int32Type, types::Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// One report of the file. Its `Debug` shows no text.
#[derive(Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub procedure_occurrence_id: Option<i64>,
    pub text: String,
}

impl std::fmt::Debug for ReportRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportRow").field("procedure_occurrence_id", &self.procedure_occurrence_id).finish_non_exhaustive()
    }
}

/// The reports of an extract, by accession number.
#[derive(Debug, Default)]
pub struct ReportFile {
    pub reports: HashMap<String, ReportRow>,
    /// Rows without an accession number or a report text.
    pub skipped: u64,
}

/// Why the report file could not be read. Holds no value of it.
#[derive(Debug, thiserror::Error)]
pub enum ReportFileError {
    #[error("the extract has no private/RADIOLOGY_REPORTS.parquet ({0})")]
    Missing(PathBuf),
    #[error("{path}: not a readable parquet file")]
    Unreadable { path: PathBuf },
    #[error("{path}: no column {column:?} (of text, or of integers for procedure_occurrence_id)")]
    Column { path: PathBuf, column: &'static str },
}

/// Finds `RADIOLOGY_REPORTS.parquet` in the extract's `private/` folder, whatever its case.
fn find(extract: &Path) -> Result<PathBuf, ReportFileError> {
    let private = extract.join("private");
    std::fs::read_dir(&private)
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case("RADIOLOGY_REPORTS.parquet")))
        })
        .ok_or(ReportFileError::Missing(private))
}

fn strings(batch: &RecordBatch, path: &Path, column: &'static str) -> Result<Vec<Option<String>>, ReportFileError> {
    let array = batch.column_by_name(column).ok_or_else(|| ReportFileError::Column { path: path.to_owned(), column })?;
    if let Some(a) = array.as_string_opt::<i32>() {
        return Ok((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_owned())).collect());
    }
    if let Some(a) = array.as_string_opt::<i64>() {
        return Ok((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_owned())).collect());
    }
    if let Some(a) = array.as_string_view_opt() {
        return Ok((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_owned())).collect());
    }
    Err(ReportFileError::Column { path: path.to_owned(), column })
}

fn integers(batch: &RecordBatch, path: &Path, column: &'static str) -> Result<Vec<Option<i64>>, ReportFileError> {
    let array = batch.column_by_name(column).ok_or_else(|| ReportFileError::Column { path: path.to_owned(), column })?;
    if let Some(a) = array.as_primitive_opt::<Int64Type>() {
        return Ok((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i))).collect());
    }
    if let Some(a) = array.as_primitive_opt::<Int32Type>() {
        return Ok((0..a.len()).map(|i| a.is_valid(i).then(|| i64::from(a.value(i)))).collect());
    }
    Err(ReportFileError::Column { path: path.to_owned(), column })
}

/// Reads the extract's report file.
pub fn read_reports(extract: &Path) -> Result<ReportFile, ReportFileError> {
    let path = find(extract)?;
    let unreadable = || ReportFileError::Unreadable { path: path.clone() };
    let file = File::open(&path).map_err(|_| unreadable())?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|_| unreadable())?.build().map_err(|_| unreadable())?;
    let mut out = ReportFile::default();
    for batch in reader {
        let batch = batch.map_err(|_| unreadable())?;
        let ids = integers(&batch, &path, "procedure_occurrence_id")?;
        let accessions = strings(&batch, &path, "accession_number")?;
        let texts = strings(&batch, &path, "report_text")?;
        for ((id, accession), text) in ids.into_iter().zip(accessions).zip(texts) {
            match (accession.filter(|a| !a.trim().is_empty()), text.filter(|t| !t.trim().is_empty())) {
                (Some(accession), Some(text)) => {
                    out.reports.insert(accession.trim().to_owned(), ReportRow { procedure_occurrence_id: id, text });
                }
                _ => out.skipped += 1,
            }
        }
    }
    Ok(out)
}
