//! Reading a cohort: an OMOP-ES extract directory (flat or batched parquet) or a CSV file.
//!
//! Readers are synchronous and streaming: they validate each row, then hand out
//! [`StageChunk`]s, already encoded for Postgres `COPY`, a few thousand rows at a time. The
//! caller stages them in temporary tables, so memory does not grow with the input, and the
//! OMOP join and de-duplication happen in Postgres.

mod copy_text;
mod csv_cohort;
pub mod omop;
pub mod reports;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use pixl_core::ids::ProjectSlug;
use pixl_core::project_config::ProjectConfigError;

pub use copy_text::CopyRow;
pub use omop::OmopExtract;

/// Rows per chunk handed to the database writer.
const CHUNK_ROWS: usize = 8192;

/// A cohort that cannot be read. Names the file, and the column and row where there is
/// one; never quotes a cell, because cells hold identifiers.
#[derive(Debug, thiserror::Error)]
pub enum CohortError {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error("{path}: not a cohort: expected an OMOP-ES extract directory or a .csv file")]
    UnknownFormat { path: PathBuf },
    #[error("{extract}: missing {what}")]
    MissingFile { extract: PathBuf, what: String },
    #[error("{path}: cannot be read: {problem}")]
    Unreadable { path: PathBuf, problem: String },
    #[error("{path}: {problem}")]
    Malformed { path: PathBuf, problem: String },
    #[error("{path}: missing column `{column}`")]
    MissingColumn { path: PathBuf, column: &'static str },
    #[error("{path}: column `{column}` has type {found}, expected {expected}")]
    WrongType { path: PathBuf, column: String, found: String, expected: &'static str },
    #[error("{path}: {location}, column `{column}`: {problem}")]
    BadValue { path: PathBuf, location: String, column: String, problem: String },
    #[error(transparent)]
    Project(#[from] ProjectConfigError),
    #[error("the database writer stopped")]
    WriterGone,
}

/// Temporary tables the readers fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageTable {
    /// Ready cohort rows (CSV, or the OMOP join).
    Cohort,
    Person,
    Procedure,
    ProcedureLink,
}

impl StageTable {
    /// The `COPY ... FROM STDIN` statement for this table.
    pub fn copy_statement(self) -> &'static str {
        match self {
            Self::Cohort => {
                "COPY stage_cohort (row_no, project_slug, extract_datetime, mrn, accession_number, study_uid, series_uids, study_date, procedure_occurrence_id, participant_id) FROM STDIN"
            }
            Self::Person => "COPY stage_person (row_no, person_id, mrn) FROM STDIN",
            Self::Procedure => "COPY stage_procedure (row_no, procedure_occurrence_id, person_id, procedure_date) FROM STDIN",
            Self::ProcedureLink => "COPY stage_procedure_link (row_no, procedure_occurrence_id, accession_number, study_uid) FROM STDIN",
        }
    }
}

/// Encoded rows for one staging table.
#[derive(Debug)]
pub struct StageChunk {
    pub table: StageTable,
    pub bytes: Vec<u8>,
    pub rows: u64,
}

/// Counts a reader reports besides what it staged.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadStats {
    /// Data rows read from the input (for OMOP, procedure link rows).
    pub rows_read: u64,
    /// Rows with neither accession number nor study UID (PIXL drops these).
    pub dropped_without_identifier: u64,
}

/// A cohort input, opened and recognised.
#[derive(Debug)]
pub enum Cohort {
    Csv(PathBuf),
    Omop(OmopExtract),
}

impl Cohort {
    /// Recognises `path`: a directory is an OMOP-ES extract, a `.csv` file a CSV cohort.
    pub fn open(path: &Path) -> Result<Self, CohortError> {
        if !path.exists() {
            return Err(CohortError::NotFound { path: path.to_owned() });
        }
        if path.is_dir() {
            return Ok(Self::Omop(OmopExtract::open(path)?));
        }
        let is_csv = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if is_csv { Ok(Self::Csv(path.to_owned())) } else { Err(CohortError::UnknownFormat { path: path.to_owned() }) }
    }

    /// Total input rows if known cheaply (parquet metadata), for the progress bar.
    pub fn expected_rows(&self) -> Option<u64> {
        match self {
            Self::Csv(_) => None,
            Self::Omop(extract) => extract.expected_rows().ok(),
        }
    }

    /// Streams every row into `sink`. `check_project` is called once per distinct project
    /// slug, before any row of that project is staged.
    pub fn stream(
        &self,
        check_project: &mut dyn FnMut(&ProjectSlug) -> Result<(), ProjectConfigError>,
        sink: &mut dyn FnMut(StageChunk) -> Result<(), CohortError>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<ReadStats, CohortError> {
        match self {
            Self::Csv(path) => csv_cohort::stream(path, check_project, sink, progress),
            Self::Omop(extract) => {
                check_project(&extract.project)?;
                extract.stream(sink, progress)
            }
        }
    }
}

/// Buffers encoded rows of one table and hands them to the sink in chunks.
struct ChunkWriter<'a> {
    table: StageTable,
    buffer: Vec<u8>,
    rows: u64,
    sink: &'a mut dyn FnMut(StageChunk) -> Result<(), CohortError>,
}

impl<'a> ChunkWriter<'a> {
    fn new(table: StageTable, sink: &'a mut dyn FnMut(StageChunk) -> Result<(), CohortError>) -> Self {
        Self { table, buffer: Vec::with_capacity(1 << 20), rows: 0, sink }
    }

    fn push(&mut self, row: CopyRow) -> Result<(), CohortError> {
        self.buffer.extend_from_slice(&row.finish());
        self.rows += 1;
        if self.rows as usize >= CHUNK_ROWS { self.flush() } else { Ok(()) }
    }

    fn flush(&mut self) -> Result<(), CohortError> {
        if self.rows == 0 {
            return Ok(());
        }
        let bytes = std::mem::replace(&mut self.buffer, Vec::with_capacity(1 << 20));
        let rows = std::mem::take(&mut self.rows);
        (self.sink)(StageChunk { table: self.table, bytes, rows })
    }
}

/// Caches the project check so each slug is checked once.
pub fn cached_project_check(configs_dir: PathBuf) -> impl FnMut(&ProjectSlug) -> Result<(), ProjectConfigError> {
    let mut seen: HashMap<ProjectSlug, Result<(), ProjectConfigError>> = HashMap::new();
    move |slug| seen.entry(slug.clone()).or_insert_with(|| pixl_core::project_config::load_project(&configs_dir, slug).map(|_| ())).clone()
}

/// Parses a cohort date: `YYYY-MM-DD`.
fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| "is not a date in YYYY-MM-DD form".to_owned())
}

/// Extract timestamps are parsed as PIXL writes them; export-api parses them too.
pub(crate) use pixl_core::export_tree::parse_extract_datetime as parse_timestamp;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_iso() {
        assert_eq!(parse_date("2022-01-01").unwrap(), NaiveDate::from_ymd_opt(2022, 1, 1).unwrap());
        for bad in ["2022-13-01", "01/01/2022", "2022-1", ""] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }
}
