//! OMOP-ES extracts: `extract_summary.json`, `private/PERSON_LINKS`,
//! `private/PROCEDURE_OCCURRENCE_LINKS` and `public/omop/PROCEDURE_OCCURRENCE`, each either
//! one `.parquet` file (flat layout) or a directory of `part-*.parquet` files (the batched
//! Arrow-dataset layout). Table names are matched case-insensitively.
//!
//! The three tables are staged as they are; the join (person links ⋈ procedure occurrence
//! ⋈ procedure links, as PIXL does it) runs in Postgres.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, ArrayRef, RecordBatch, cast::AsArray, types};
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use parquet::arrow::{ProjectionMask, arrow_reader::ParquetRecordBatchReaderBuilder};
use pixl_core::ids::{AccessionNumber, Mrn, ProjectSlug, StudyUid};
use serde::Deserialize;

use super::{ChunkWriter, CohortError, CopyRow, ReadStats, StageChunk, StageTable, parse_timestamp};

/// A recognised OMOP-ES extract directory.
#[derive(Debug, Clone)]
pub struct OmopExtract {
    pub root: PathBuf,
    /// Slug of `settings.cdm_source_name`.
    pub project: ProjectSlug,
    /// `datetime` of the summary.
    pub extract_datetime: DateTime<Utc>,
    /// `public/`, copied to the export tree as it is.
    pub public_dir: PathBuf,
    person_links: Vec<PathBuf>,
    procedures: Vec<PathBuf>,
    procedure_links: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct Summary {
    datetime: String,
    settings: SummarySettings,
}

#[derive(Deserialize)]
struct SummarySettings {
    cdm_source_name: String,
}

/// The project slug (slugified `settings.cdm_source_name`) and timestamp (`datetime`) of
/// an extract, from its `extract_summary.json`.
pub fn read_summary(root: &Path) -> Result<(ProjectSlug, DateTime<Utc>), CohortError> {
    let summary_path = root.join("extract_summary.json");
    if !summary_path.is_file() {
        return Err(CohortError::MissingFile { extract: root.to_owned(), what: "extract_summary.json".to_owned() });
    }
    let unreadable = |problem: String| CohortError::Unreadable { path: summary_path.clone(), problem };
    let text = std::fs::read_to_string(&summary_path).map_err(|e| unreadable(e.to_string()))?;
    let summary: Summary = serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
    let project = ProjectSlug::from_name(&summary.settings.cdm_source_name).map_err(|e| CohortError::BadValue {
        path: summary_path.clone(),
        location: "settings".to_owned(),
        column: "cdm_source_name".to_owned(),
        problem: e.to_string(),
    })?;
    let extract_datetime = parse_timestamp(summary.datetime.trim()).map_err(|problem| CohortError::BadValue {
        path: summary_path.clone(),
        location: "summary".to_owned(),
        column: "datetime".to_owned(),
        problem,
    })?;
    Ok((project, extract_datetime))
}

impl OmopExtract {
    pub fn open(root: &Path) -> Result<Self, CohortError> {
        let (project, extract_datetime) = read_summary(root)?;
        let private = root.join("private");
        let public = root.join("public");
        let public_tables = if public.join("omop").is_dir() { public.join("omop") } else { public.clone() };
        Ok(Self {
            root: root.to_owned(),
            project,
            extract_datetime,
            person_links: find_table(root, &private, "PERSON_LINKS")?,
            procedure_links: find_table(root, &private, "PROCEDURE_OCCURRENCE_LINKS")?,
            procedures: find_table(root, &public_tables, "PROCEDURE_OCCURRENCE")?,
            public_dir: public,
        })
    }

    /// Link rows to read, from parquet metadata.
    pub fn expected_rows(&self) -> Result<u64, CohortError> {
        let mut total = 0;
        for path in &self.procedure_links {
            let file = File::open(path).map_err(|e| unreadable(path, e))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| unreadable(path, e))?;
            total += builder.metadata().file_metadata().num_rows() as u64;
        }
        Ok(total)
    }

    pub(super) fn stream(&self, sink: &mut dyn FnMut(StageChunk) -> Result<(), CohortError>, progress: &mut dyn FnMut(u64)) -> Result<ReadStats, CohortError> {
        let mut writer = ChunkWriter::new(StageTable::Person, sink);
        for path in &self.person_links {
            read_file(path, &["person_id", "PrimaryMrn"], |batch, first_row| {
                let person_id = IntColumn::new(path, batch, "person_id")?;
                let mrn = TextColumn::new(path, batch, "PrimaryMrn")?;
                for i in 0..batch.num_rows() {
                    let at = |column: &str, problem: String| bad_value(path, first_row + i, column, problem);
                    let mrn = mrn.get(i).map(Mrn::parse).transpose().map_err(|e| at("PrimaryMrn", e.to_string()))?;
                    let person_id = person_id.get(i).map_err(|p| at("person_id", p))?;
                    let mut row = CopyRow::new();
                    row.int(Some((first_row + i) as i64)).int(person_id).text(mrn.as_ref().map(Mrn::expose));
                    writer.push(row)?;
                }
                Ok(())
            })?;
        }
        writer.flush()?;

        let mut writer = ChunkWriter::new(StageTable::Procedure, writer.sink);
        for path in &self.procedures {
            read_file(path, &["procedure_occurrence_id", "person_id", "procedure_date"], |batch, first_row| {
                let procedure_id = IntColumn::new(path, batch, "procedure_occurrence_id")?;
                let person_id = IntColumn::new(path, batch, "person_id")?;
                let date = DateColumn::new(path, batch, "procedure_date")?;
                for i in 0..batch.num_rows() {
                    let at = |column: &str, problem: String| bad_value(path, first_row + i, column, problem);
                    let mut row = CopyRow::new();
                    row.int(Some((first_row + i) as i64))
                        .int(procedure_id.get(i).map_err(|p| at("procedure_occurrence_id", p))?)
                        .int(person_id.get(i).map_err(|p| at("person_id", p))?)
                        .text(date.get(i).map_err(|p| at("procedure_date", p))?.map(|d| d.to_string()).as_deref());
                    writer.push(row)?;
                }
                Ok(())
            })?;
        }
        writer.flush()?;

        let mut stats = ReadStats::default();
        let mut writer = ChunkWriter::new(StageTable::ProcedureLink, writer.sink);
        for path in &self.procedure_links {
            read_file(path, &["procedure_occurrence_id", "AccessionNumber", "StudyUid_X"], |batch, first_row| {
                let procedure_id = IntColumn::new(path, batch, "procedure_occurrence_id")?;
                let accession = TextColumn::new(path, batch, "AccessionNumber")?;
                let study_uid = TextColumn::new(path, batch, "StudyUid_X")?;
                for i in 0..batch.num_rows() {
                    let at = |column: &str, problem: String| bad_value(path, first_row + i, column, problem);
                    stats.rows_read += 1;
                    let accession = accession.get(i).map(AccessionNumber::parse).transpose().map_err(|e| at("AccessionNumber", e.to_string()))?;
                    let study_uid = study_uid.get(i).map(StudyUid::parse).transpose().map_err(|e| at("StudyUid_X", e.to_string()))?;
                    if accession.is_none() && study_uid.is_none() {
                        stats.dropped_without_identifier += 1;
                        continue;
                    }
                    let mut row = CopyRow::new();
                    row.int(Some((first_row + i) as i64))
                        .int(procedure_id.get(i).map_err(|p| at("procedure_occurrence_id", p))?)
                        .text(accession.as_ref().map(AccessionNumber::expose))
                        .text(study_uid.as_ref().map(StudyUid::expose));
                    writer.push(row)?;
                }
                progress(batch.num_rows() as u64);
                Ok(())
            })?;
        }
        writer.flush()?;
        Ok(stats)
    }
}

fn unreadable(path: &Path, error: impl std::fmt::Display) -> CohortError {
    CohortError::Unreadable { path: path.to_owned(), problem: error.to_string() }
}

fn bad_value(path: &Path, row_index: usize, column: &str, problem: String) -> CohortError {
    CohortError::BadValue {
        path: path.to_owned(),
        // Rows are numbered from 1, as a person counts them.
        location: format!("row {}", row_index + 1),
        column: column.to_owned(),
        problem,
    }
}

/// Finds `<NAME>.parquet` or a `<name>/` directory of parquet parts in `dir`, ignoring case.
fn find_table(extract: &Path, dir: &Path, name: &str) -> Result<Vec<PathBuf>, CohortError> {
    let missing = || CohortError::MissingFile {
        extract: extract.to_owned(),
        what: format!("{}/{name}.parquet (or a {}/ directory of parquet parts)", relative(extract, dir), name.to_lowercase()),
    };
    let entries = std::fs::read_dir(dir).map_err(|_| missing())?;
    let file_name = format!("{name}.parquet");
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        if path.is_file() && entry_name.eq_ignore_ascii_case(&file_name) {
            return Ok(vec![path]);
        }
        if path.is_dir() && entry_name.eq_ignore_ascii_case(name) {
            let mut parts: Vec<PathBuf> = std::fs::read_dir(&path)
                .map_err(|e| unreadable(&path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "parquet"))
                .collect();
            if parts.is_empty() {
                return Err(missing());
            }
            parts.sort();
            return Ok(parts);
        }
    }
    Err(missing())
}

fn relative(base: &Path, path: &Path) -> String {
    path.strip_prefix(base).unwrap_or(path).display().to_string()
}

/// Reads the named columns of a parquet file batch by batch; `each` receives the batch and
/// the index of its first row in the file.
fn read_file(path: &Path, columns: &[&'static str], mut each: impl FnMut(&RecordBatch, usize) -> Result<(), CohortError>) -> Result<(), CohortError> {
    let file = File::open(path).map_err(|e| unreadable(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| unreadable(path, e))?;
    let mut indices = Vec::with_capacity(columns.len());
    for column in columns {
        let index = builder.schema().index_of(column).map_err(|_| CohortError::MissingColumn { path: path.to_owned(), column })?;
        indices.push(index);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let reader = builder.with_projection(mask).with_batch_size(8192).build().map_err(|e| unreadable(path, e))?;
    let mut first_row = 0;
    for batch in reader {
        let batch = batch.map_err(|e| unreadable(path, e))?;
        each(&batch, first_row)?;
        first_row += batch.num_rows();
    }
    Ok(())
}

fn column<'b>(path: &Path, batch: &'b RecordBatch, name: &'static str) -> Result<&'b ArrayRef, CohortError> {
    batch.column_by_name(name).ok_or(CohortError::MissingColumn { path: path.to_owned(), column: name })
}

fn wrong_type(path: &Path, name: &str, found: &DataType, expected: &'static str) -> CohortError {
    CohortError::WrongType { path: path.to_owned(), column: name.to_owned(), found: found.to_string(), expected }
}

/// An id column: integers, or floats holding whole numbers (pandas writes ids with missing
/// values as doubles).
enum IntColumn<'a> {
    Int32(&'a arrow_array::Int32Array),
    Int64(&'a arrow_array::Int64Array),
    Float64(&'a arrow_array::Float64Array),
    Float32(&'a arrow_array::Float32Array),
    Null,
}

impl<'a> IntColumn<'a> {
    fn new(path: &Path, batch: &'a RecordBatch, name: &'static str) -> Result<Self, CohortError> {
        let array = column(path, batch, name)?;
        Ok(match array.data_type() {
            DataType::Int32 => Self::Int32(array.as_primitive::<types::Int32Type>()),
            DataType::Int64 => Self::Int64(array.as_primitive::<types::Int64Type>()),
            DataType::Float64 => Self::Float64(array.as_primitive::<types::Float64Type>()),
            DataType::Float32 => Self::Float32(array.as_primitive::<types::Float32Type>()),
            DataType::Null => Self::Null,
            other => return Err(wrong_type(path, name, other, "an integer")),
        })
    }

    fn get(&self, i: usize) -> Result<Option<i64>, String> {
        let whole = |value: f64| {
            if value.is_finite() && value.fract() == 0.0 && value.abs() < 9.0e15 {
                Ok(Some(value as i64))
            } else if value.is_nan() {
                Ok(None)
            } else {
                Err("is not a whole number".to_owned())
            }
        };
        match self {
            Self::Int32(a) => Ok(a.is_valid(i).then(|| i64::from(a.value(i)))),
            Self::Int64(a) => Ok(a.is_valid(i).then(|| a.value(i))),
            Self::Float64(a) => {
                if a.is_valid(i) {
                    whole(a.value(i))
                } else {
                    Ok(None)
                }
            }
            Self::Float32(a) => {
                if a.is_valid(i) {
                    whole(f64::from(a.value(i)))
                } else {
                    Ok(None)
                }
            }
            Self::Null => Ok(None),
        }
    }
}

/// A text column; empty and whitespace-only values count as missing.
enum TextColumn<'a> {
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
    Null,
}

impl<'a> TextColumn<'a> {
    fn new(path: &Path, batch: &'a RecordBatch, name: &'static str) -> Result<Self, CohortError> {
        let array = column(path, batch, name)?;
        Ok(match array.data_type() {
            DataType::Utf8 => Self::Utf8(array.as_string::<i32>()),
            DataType::LargeUtf8 => Self::LargeUtf8(array.as_string::<i64>()),
            DataType::Utf8View => Self::View(array.as_string_view()),
            DataType::Null => Self::Null,
            other => return Err(wrong_type(path, name, other, "a string")),
        })
    }

    fn get(&self, i: usize) -> Option<&'a str> {
        let value = match self {
            Self::Utf8(a) => a.is_valid(i).then(|| a.value(i)),
            Self::LargeUtf8(a) => a.is_valid(i).then(|| a.value(i)),
            Self::View(a) => a.is_valid(i).then(|| a.value(i)),
            Self::Null => None,
        };
        value.map(str::trim).filter(|v| !v.is_empty())
    }
}

/// A date column: a date, a timestamp (its UTC date), or `YYYY-MM-DD` text.
enum DateColumn<'a> {
    Date32(&'a arrow_array::Date32Array),
    Date64(&'a arrow_array::Date64Array),
    Timestamp(arrow_array::Int64Array, i64),
    Text(TextColumn<'a>),
    Null,
}

impl<'a> DateColumn<'a> {
    fn new(path: &Path, batch: &'a RecordBatch, name: &'static str) -> Result<Self, CohortError> {
        let array = column(path, batch, name)?;
        Ok(match array.data_type() {
            DataType::Date32 => Self::Date32(array.as_primitive::<types::Date32Type>()),
            DataType::Date64 => Self::Date64(array.as_primitive::<types::Date64Type>()),
            DataType::Timestamp(unit, _) => {
                let per_second = match unit {
                    TimeUnit::Second => 1,
                    TimeUnit::Millisecond => 1_000,
                    TimeUnit::Microsecond => 1_000_000,
                    TimeUnit::Nanosecond => 1_000_000_000,
                };
                // Every timestamp array is a primitive array of i64 underneath.
                let values = array.to_data().into_builder().data_type(DataType::Int64).build().map_err(|e| unreadable(path, e))?;
                Self::Timestamp(arrow_array::Int64Array::from(values), per_second)
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Self::Text(TextColumn::new(path, batch, name)?),
            DataType::Null => Self::Null,
            other => return Err(wrong_type(path, name, other, "a date")),
        })
    }

    fn get(&self, i: usize) -> Result<Option<NaiveDate>, String> {
        let out_of_range = || "is out of range".to_owned();
        match self {
            Self::Date32(a) => a.is_valid(i).then(|| a.value_as_date(i).ok_or_else(out_of_range)).transpose(),
            Self::Date64(a) => a.is_valid(i).then(|| a.value_as_date(i).ok_or_else(out_of_range)).transpose(),
            Self::Timestamp(a, per_second) => a
                .is_valid(i)
                .then(|| {
                    let seconds = a.value(i).div_euclid(*per_second);
                    DateTime::from_timestamp(seconds, 0).map(|t| t.date_naive()).ok_or_else(out_of_range)
                })
                .transpose(),
            Self::Text(text) => text.get(i).map(super::parse_date).transpose(),
            Self::Null => Ok(None),
        }
    }
}
