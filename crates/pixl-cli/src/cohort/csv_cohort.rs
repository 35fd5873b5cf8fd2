//! CSV cohorts: `procedure_id,mrn,accession_number,project_name,extract_generated_timestamp,
//! study_date,study_uid[,series_uid],participant_id`, one row per study (or series
//! selection), possibly for several projects.

use std::path::{Path, PathBuf};

use pixl_core::ids::{AccessionNumber, Mrn, ParticipantId, ProjectSlug, SeriesUid, StudyUid};
use pixl_core::project_config::ProjectConfigError;

use super::{ChunkWriter, CohortError, CopyRow, ReadStats, StageChunk, StageTable, parse_date, parse_timestamp};

const REQUIRED: [&str; 6] = ["mrn", "accession_number", "project_name", "extract_generated_timestamp", "study_date", "study_uid"];

struct Columns {
    mrn: usize,
    accession_number: usize,
    project_name: usize,
    extract_generated_timestamp: usize,
    study_date: usize,
    study_uid: usize,
    procedure_id: Option<usize>,
    series_uid: Option<usize>,
    participant_id: Option<usize>,
}

pub(super) fn stream(
    path: &Path,
    check_project: &mut dyn FnMut(&ProjectSlug) -> Result<(), ProjectConfigError>,
    sink: &mut dyn FnMut(StageChunk) -> Result<(), CohortError>,
    progress: &mut dyn FnMut(u64),
) -> Result<ReadStats, CohortError> {
    let unreadable = |problem: String| CohortError::Unreadable { path: path.to_owned(), problem };
    let mut reader = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_path(path).map_err(|e| unreadable(e.to_string()))?;
    let headers = reader.headers().map_err(|e| unreadable(e.to_string()))?.clone();
    let find = |name: &str| headers.iter().position(|h| h == name);
    let required = |name: &'static str| find(name).ok_or(CohortError::MissingColumn { path: path.to_owned(), column: name });
    let columns = Columns {
        mrn: required(REQUIRED[0])?,
        accession_number: required(REQUIRED[1])?,
        project_name: required(REQUIRED[2])?,
        extract_generated_timestamp: required(REQUIRED[3])?,
        study_date: required(REQUIRED[4])?,
        study_uid: required(REQUIRED[5])?,
        procedure_id: find("procedure_id"),
        series_uid: find("series_uid"),
        participant_id: find("participant_id"),
    };

    let mut stats = ReadStats::default();
    let mut writer = ChunkWriter::new(StageTable::Cohort, sink);
    let mut record = csv::StringRecord::new();
    loop {
        // csv's error names the line and what is wrong (for example a wrong field count),
        // without quoting the record.
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => return Err(record_error(path, error)),
        }
        stats.rows_read += 1;
        let line = record.position().map_or(stats.rows_read + 1, |p| p.line());
        if let Some(row) = parse_record(path, line, &record, &columns, check_project)? {
            writer.push(row_to_copy(stats.rows_read, row))?;
        } else {
            stats.dropped_without_identifier += 1;
        }
        if stats.rows_read % 4096 == 0 {
            progress(4096);
        }
    }
    progress(stats.rows_read % 4096);
    writer.flush()?;
    Ok(stats)
}

/// Describes a record the csv crate rejected, by line, without quoting it.
fn record_error(path: &Path, error: csv::Error) -> CohortError {
    let line = |position: &Option<csv::Position>| position.as_ref().map_or("a line".to_owned(), |p| format!("line {}", p.line()));
    let problem = match error.kind() {
        csv::ErrorKind::UnequalLengths { pos, expected_len, len } => {
            format!("{}: has {len} fields, but the header has {expected_len}", line(pos))
        }
        csv::ErrorKind::Utf8 { pos, .. } => format!("{}: is not valid UTF-8", line(pos)),
        _ => return CohortError::Unreadable { path: path.to_owned(), problem: error.to_string() },
    };
    CohortError::Malformed { path: path.to_owned(), problem }
}

struct CsvRow {
    project: ProjectSlug,
    extract_datetime: String,
    mrn: Mrn,
    accession_number: Option<AccessionNumber>,
    study_uid: Option<StudyUid>,
    series_uids: Vec<SeriesUid>,
    study_date: Option<String>,
    procedure_id: Option<i64>,
    participant_id: Option<ParticipantId>,
}

fn parse_record(
    path: &Path,
    line: u64,
    record: &csv::StringRecord,
    columns: &Columns,
    check_project: &mut dyn FnMut(&ProjectSlug) -> Result<(), ProjectConfigError>,
) -> Result<Option<CsvRow>, CohortError> {
    let bad = |column: &str, problem: String| CohortError::BadValue {
        path: PathBuf::from(path),
        location: format!("line {line}"),
        column: column.to_owned(),
        problem,
    };
    let cell = |index: usize| record.get(index).map(str::trim).filter(|value| !value.is_empty());

    let accession_number = cell(columns.accession_number).map(AccessionNumber::parse).transpose().map_err(|e| bad("accession_number", e.to_string()))?;
    let study_uid = cell(columns.study_uid).map(StudyUid::parse).transpose().map_err(|e| bad("study_uid", e.to_string()))?;
    if accession_number.is_none() && study_uid.is_none() {
        return Ok(None);
    }
    let mrn = Mrn::parse(cell(columns.mrn).unwrap_or_default()).map_err(|e| bad("mrn", e.to_string()))?;
    let project_name = cell(columns.project_name).ok_or_else(|| bad("project_name", "is empty".to_owned()))?;
    let project = ProjectSlug::from_name(project_name).map_err(|e| bad("project_name", e.to_string()))?;
    check_project(&project)?;
    let extract_datetime = cell(columns.extract_generated_timestamp)
        .ok_or_else(|| bad("extract_generated_timestamp", "is empty".to_owned()))
        .and_then(|text| parse_timestamp(text).map_err(|p| bad("extract_generated_timestamp", p)))?
        .to_rfc3339();
    let study_date = cell(columns.study_date).map(|text| parse_date(text).map(|d| d.to_string())).transpose().map_err(|p| bad("study_date", p))?;
    let series_uids = match columns.series_uid.and_then(cell) {
        None => Vec::new(),
        Some(joined) => joined
            .split('\\')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(SeriesUid::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| bad("series_uid", e.to_string()))?,
    };
    let procedure_id =
        columns.procedure_id.and_then(cell).map(|text| text.parse::<i64>().map_err(|_| bad("procedure_id", "is not a whole number".to_owned()))).transpose()?;
    let participant_id = columns.participant_id.and_then(cell).map(ParticipantId::parse).transpose().map_err(|e| bad("participant_id", e.to_string()))?;
    Ok(Some(CsvRow { project, extract_datetime, mrn, accession_number, study_uid, series_uids, study_date, procedure_id, participant_id }))
}

fn row_to_copy(row_no: u64, row: CsvRow) -> CopyRow {
    let series: Vec<&str> = row.series_uids.iter().map(SeriesUid::expose).collect();
    let series = series.join("\\");
    let mut copy = CopyRow::new();
    copy.int(Some(row_no as i64))
        .text(Some(row.project.as_str()))
        .text(Some(&row.extract_datetime))
        .text(Some(row.mrn.expose()))
        .text(row.accession_number.as_ref().map(AccessionNumber::expose))
        .text(row.study_uid.as_ref().map(StudyUid::expose))
        // Series are staged joined by a backslash, the DICOM separator, and split in SQL.
        .text(if series.is_empty() { None } else { Some(&series) })
        .text(row.study_date.as_deref())
        .int(row.procedure_id)
        .text(row.participant_id.as_ref().map(ParticipantId::expose));
    copy
}
