//! From a storage to de-identified tables: patient selection (period, minimum number of
//! visits), pseudonymous ids (keyed, with the identity tag appended as ssmixtools
//! appends its own), timestamps as time since birth or shifted by the patient's offset,
//! dates of birth only in their own table, every file optionally encrypted for a
//! recipient, and a report of counts.
//!
//! Workers read, parse and (for free text) de-identify whole patients; one writer writes
//! each table in batches (parquet or CSV) through a temporary name, in storage order (with
//! one worker, one thread does both). An
//! encrypted table is assembled in memory and only its encrypted form reaches the disk.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use chrono::NaiveDate;
use serde::Serialize;

use crate::crypto::RecipientKey;
use crate::read::{FreeText, FreeTextCounts, PatientRecords, ReadCounts, read_patient, resolve_free_text};
use crate::records::{Record, Table, Value};
use crate::storage;
use crate::time;

/// How timestamps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeMode {
    /// As ssmixtools: time since the date of birth (`23376 days 10:05:00.000003`).
    SinceBirth,
    /// Shifted by the patient's pixl offset (the same as their imaging dates).
    Shift,
}

/// Whether and how dates of birth are written (only ever in `date_of_birth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BirthDates {
    None,
    Full,
    Year,
}

/// The tables' file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
        }
    }
}

/// The project's keys as SS-MIX2 extraction uses them.
pub trait Ids {
    /// The keyed pseudonym of a storage patient id (without the tag).
    fn pseudonym(&self, pid: &str) -> String;
    /// The patient's date shift in days.
    fn offset_days(&self, pid: &str) -> i64;
}

/// What to extract and how.
#[derive(Debug)]
pub struct Options {
    pub identity_tag: String,
    pub time_mode: TimeMode,
    pub birth_dates: BirthDates,
    pub period_start: Option<NaiveDate>,
    pub period_end: Option<NaiveDate>,
    /// Patients with fewer date folders (days with records) are left out.
    pub min_encounters: usize,
    pub format: Format,
    pub recipient: Option<RecipientKey>,
    /// ssmixtools' ids instead of keyed pseudonyms: the numbers 1..N in an order drawn
    /// from a CSPRNG (never a fixed seed), with the identity tag; the table of storage id
    /// and number is written only encrypted, for this key (`patient_id_<tag>.csv.bin`).
    pub shuffled_ids_map_key: Option<RecipientKey>,
    /// Threads reading and parsing patients (the tables are written by one more; with one
    /// worker, a single thread does both).
    pub max_workers: usize,
    /// Free-text results and local wording: left out, or through pixl-text.
    pub free_text: FreeText,
}

/// The default number of workers: the cores but one, at least one.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).saturating_sub(1).max(1)
}

/// The counts of a run (the analytics JSON). Never a value of the data.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub identity_tag: String,
    /// Files per `<data type>/<condition flag>`.
    pub files: BTreeMap<String, u64>,
    pub messages_parsed: u64,
    pub decode_errors: u64,
    pub unparsable_messages: u64,
    pub patients: u64,
    pub patients_included: u64,
    pub excluded_no_birth_date_or_sex: u64,
    pub excluded_by_period: u64,
    pub excluded_by_min_encounters: u64,
    pub rows: BTreeMap<String, u64>,
    pub deviations: BTreeMap<String, u64>,
    pub free_text: FreeTextCounts,
    pub files_written: Vec<String>,
}

/// The run failed (a file could not be written or the storage read).
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("{path}: {problem}")]
    Io { path: PathBuf, problem: String },
    #[error("writing table {table}: {problem}")]
    Table { table: String, problem: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExtractError + '_ {
    move |e| ExtractError::Io { path: path.to_owned(), problem: e.to_string() }
}

enum Sink {
    Parquet(parquet::arrow::ArrowWriter<Box<dyn Write + Send>>, Arc<Schema>),
    Csv(csv::Writer<Box<dyn Write + Send>>),
}

/// Memory when the table is encrypted, a temporary file otherwise.
#[derive(Clone, Default)]
struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct TableWriter {
    name: String,
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
    written: u64,
    sink: Sink,
    memory: Option<Shared>,
    temp: PathBuf,
    target: PathBuf,
}

const BATCH_ROWS: usize = 8192;

impl TableWriter {
    fn new(out: &Path, name: &str, columns: Vec<String>, options: &Options) -> Result<Self, ExtractError> {
        let file_name = format!("{name}_{}.{}", options.identity_tag, options.format.extension());
        let target = out.join(if options.recipient.is_some() { format!("{file_name}.bin") } else { file_name.clone() });
        let temp = out.join(format!("{file_name}.partial"));
        let (writer, memory): (Box<dyn Write + Send>, Option<Shared>) = if options.recipient.is_some() {
            let memory = Shared::default();
            (Box::new(memory.clone()), Some(memory))
        } else {
            (Box::new(std::io::BufWriter::new(std::fs::File::create(&temp).map_err(io(&temp))?)), None)
        };
        let table_error = |problem: String| ExtractError::Table { table: name.to_owned(), problem };
        let sink = match options.format {
            Format::Parquet => {
                let schema = Arc::new(Schema::new(columns.iter().map(|c| Field::new(c, DataType::Utf8, true)).collect::<Vec<_>>()));
                // Row groups of 65,536 rows: memory bounded by that, not by the storage.
                let properties = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(65_536))
                    .build();
                let writer = parquet::arrow::ArrowWriter::try_new(writer, schema.clone(), Some(properties))
                    .map_err(|_| table_error("cannot start the parquet file".to_owned()))?;
                Sink::Parquet(writer, schema)
            }
            Format::Csv => {
                let mut csv = csv::Writer::from_writer(writer);
                csv.write_record(&columns).map_err(|_| table_error("cannot write the header".to_owned()))?;
                Sink::Csv(csv)
            }
        };
        Ok(Self { name: name.to_owned(), columns, rows: Vec::new(), written: 0, sink, memory, temp, target })
    }

    fn push(&mut self, row: Vec<Option<String>>) -> Result<(), ExtractError> {
        self.rows.push(row);
        if self.rows.len() >= BATCH_ROWS { self.flush() } else { Ok(()) }
    }

    fn flush(&mut self) -> Result<(), ExtractError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        self.written += rows.len() as u64;
        // Library errors are not passed on as they are: they can quote a value.
        let table_error = |what: &str| ExtractError::Table { table: self.name.clone(), problem: what.to_owned() };
        match &mut self.sink {
            Sink::Parquet(writer, schema) => {
                let arrays: Vec<ArrayRef> =
                    (0..self.columns.len()).map(|i| Arc::new(rows.iter().map(|r| r[i].as_deref()).collect::<StringArray>()) as ArrayRef).collect();
                let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|_| table_error("a batch does not fit the schema"))?;
                writer.write(&batch).map_err(|_| table_error("cannot write a batch"))?;
            }
            Sink::Csv(writer) => {
                for row in rows {
                    writer.write_record(row.iter().map(|v| v.as_deref().unwrap_or(""))).map_err(|_| table_error("cannot write a row"))?;
                }
            }
        }
        Ok(())
    }

    fn finish(mut self, recipient: Option<&RecipientKey>) -> Result<(String, u64), ExtractError> {
        self.flush()?;
        let table_error = |what: &str| ExtractError::Table { table: self.name.clone(), problem: what.to_owned() };
        match self.sink {
            Sink::Parquet(writer, _) => {
                let mut inner = writer.into_inner().map_err(|_| table_error("cannot finish the parquet file"))?;
                inner.flush().map_err(|_| table_error("cannot finish the file"))?;
            }
            Sink::Csv(writer) => {
                let mut inner = writer.into_inner().map_err(|_| table_error("cannot finish the CSV file"))?;
                inner.flush().map_err(|_| table_error("cannot finish the file"))?;
            }
        }
        match (self.memory, recipient) {
            (Some(memory), Some(recipient)) => {
                let plaintext = std::mem::take(&mut *memory.0.lock().expect("buffer lock"));
                let sealed = recipient.seal(&plaintext);
                let temp = self.target.with_extension("bin.partial");
                std::fs::write(&temp, sealed).map_err(io(&temp))?;
                std::fs::rename(&temp, &self.target).map_err(io(&self.target))?;
            }
            _ => std::fs::rename(&self.temp, &self.target).map_err(io(&self.target))?,
        }
        let name = self.target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok((name, self.written))
    }
}

fn selected(patient: &PatientRecords, options: &Options, report: &mut Report) -> bool {
    if patient.basics.sex.is_none() || (patient.basics.birth_date.is_none() && options.time_mode == TimeMode::SinceBirth) {
        report.excluded_no_birth_date_or_sex += 1;
        return false;
    }
    let in_period = |day: &String| {
        let Some(day) = NaiveDate::parse_from_str(day, "%Y%m%d").ok() else { return false };
        options.period_start.is_none_or(|start| day >= start) && options.period_end.is_none_or(|end| day <= end)
    };
    if (options.period_start.is_some() || options.period_end.is_some()) && !patient.date_folders.iter().any(in_period) {
        report.excluded_by_period += 1;
        return false;
    }
    if patient.date_folders.len() < options.min_encounters {
        report.excluded_by_min_encounters += 1;
        return false;
    }
    true
}

/// A value as written: text, a converted timestamp, or empty.
fn cell(value: Value, birth: Option<NaiveDate>, offset: i64, options: &Options) -> Option<String> {
    match value {
        Value::Null => None,
        Value::Text(text) => Some(text),
        Value::Bool(b) => Some(b.to_string()),
        // Resolved by the worker; never written as it is.
        Value::FreeText(_) => None,
        Value::Time(stamp) => match options.time_mode {
            TimeMode::SinceBirth => birth.map(|birth| stamp.since_birth(birth)),
            TimeMode::Shift => Some(stamp.shifted(offset)),
        },
    }
}

/// Every table's name.
const TABLE_NAMES: [&str; 10] = [
    "outpatient_visits",
    "admissions",
    "discharges",
    "diagnoses",
    "prescription_orders",
    "injection_orders",
    "lab_results",
    "patient_metadata",
    "date_of_birth",
    "patient_id",
];

/// Extracts the storage at `root` into `out` (created if needed; tables of an earlier run
/// with the same tag are never replaced). `progress` is called with (patients done,
/// patients). On failure no table is left half-written.
pub fn extract(root: &Path, out: &Path, options: &Options, ids: &dyn Ids, progress: &dyn Fn(usize, usize)) -> Result<Report, ExtractError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    for name in TABLE_NAMES {
        for extension in ["parquet", "csv", "parquet.bin", "csv.bin"] {
            let existing = out.join(format!("{name}_{}.{extension}", options.identity_tag));
            if existing.exists() {
                return Err(ExtractError::Io {
                    path: existing,
                    problem: "exists from an earlier run with this identity tag: not replaced; use another folder or tag".to_owned(),
                });
            }
        }
    }
    let result = extract_into(root, out, options, ids, progress);
    if result.is_err() {
        for name in TABLE_NAMES {
            let _ = std::fs::remove_file(out.join(format!("{name}_{}.{}.partial", options.identity_tag, options.format.extension())));
            let _ = std::fs::remove_file(out.join(format!("{name}_{}.{}.bin.partial", options.identity_tag, options.format.extension())));
            let _ = std::fs::remove_file(out.join(format!("{name}_{}.csv.bin.partial", options.identity_tag)));
        }
    }
    result
}

fn extract_into(root: &Path, out: &Path, options: &Options, ids: &dyn Ids, progress: &dyn Fn(usize, usize)) -> Result<Report, ExtractError> {
    let mut counts = ReadCounts::default();
    let dirs = storage::patients(root, &mut counts.deviations).map_err(io(root))?;
    let mut report = Report { identity_tag: options.identity_tag.clone(), patients: dirs.len() as u64, ..Report::default() };
    let mut writers: BTreeMap<Table, TableWriter> = BTreeMap::new();
    for table in Table::ALL {
        let columns = std::iter::once("patient_id").chain(table.columns().iter().copied()).map(str::to_owned).collect();
        writers.insert(table, TableWriter::new(out, table.name(), columns, options)?);
    }
    let metadata_columns = ["patient_id", "sex", "number_of_date_folders", "first_visit_date", "last_visit_date", "number_of_recorded_admissions"];
    let mut metadata = TableWriter::new(out, "patient_metadata", metadata_columns.map(str::to_owned).to_vec(), options)?;
    let mut births = match options.birth_dates {
        BirthDates::None => None,
        BirthDates::Full => Some(TableWriter::new(out, "date_of_birth", vec!["patient_id".to_owned(), "date_of_birth".to_owned()], options)?),
        BirthDates::Year => Some(TableWriter::new(out, "date_of_birth", vec!["patient_id".to_owned(), "birth_year".to_owned()], options)?),
    };
    // Shuffled ids: a random order of 1..N over every patient of the storage.
    let numbers: Option<Vec<u64>> = options.shuffled_ids_map_key.as_ref().map(|_| {
        let mut numbers: Vec<u64> = (1..=dirs.len() as u64).collect();
        rand::seq::SliceRandom::shuffle(numbers.as_mut_slice(), &mut rand::rng());
        numbers
    });
    let mut id_map: Vec<(String, String)> = Vec::new();
    let workers = options.max_workers.clamp(1, dirs.len().max(1));
    let read_one = |path: &PathBuf| {
        let mut counts = ReadCounts::default();
        let dir = storage::read_patient(path, &mut counts.deviations);
        let mut patient = read_patient(&dir, &mut counts);
        resolve_free_text(&mut patient, options.free_text, &mut counts.free_text);
        (patient, counts)
    };
    let mut write_next = |index: usize, patient: PatientRecords, patient_counts: ReadCounts| -> Result<(), ExtractError> {
        let number = numbers.as_ref().map(|n| n[index]);
        counts.merge(patient_counts);
        progress(index + 1, dirs.len());
        let id = match number {
            Some(number) => format!("{number}{}", options.identity_tag),
            None => format!("{}{}", ids.pseudonym(&patient.pid), options.identity_tag),
        };
        let pid = number.is_some().then(|| patient.pid.clone());
        if write_patient(patient, &id, options, ids, &mut report, &mut writers, &mut metadata, births.as_mut())?
            && let Some(pid) = pid
        {
            id_map.push((pid, id));
        }
        Ok(())
    };
    if workers == 1 {
        // One worker: this thread reads and writes (no hand-over between threads).
        for (index, path) in dirs.iter().enumerate() {
            let (patient, patient_counts) = read_one(path);
            write_next(index, patient, patient_counts)?;
        }
    } else {
        let next = std::sync::atomic::AtomicUsize::new(0);
        // Workers read and parse whole patients; this thread writes them in storage order
        // (a small reorder buffer), so that the tables are the same whatever the workers.
        std::thread::scope(|scope| -> Result<(), ExtractError> {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<(usize, PatientRecords, ReadCounts)>(workers * 4);
            for _ in 0..workers {
                let (sender, next, dirs, read_one) = (sender.clone(), &next, &dirs, &read_one);
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(path) = dirs.get(i) else { break };
                        let (patient, counts) = read_one(path);
                        if sender.send((i, patient, counts)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(sender);
            let mut pending: BTreeMap<usize, (PatientRecords, ReadCounts)> = BTreeMap::new();
            let mut wanted = 0;
            for (i, patient, patient_counts) in receiver {
                pending.insert(i, (patient, patient_counts));
                while let Some((patient, patient_counts)) = pending.remove(&wanted) {
                    write_next(wanted, patient, patient_counts)?;
                    wanted += 1;
                }
            }
            Ok(())
        })?;
    }
    if let Some(key) = &options.shuffled_ids_map_key {
        write_id_map(out, options, key, &id_map)?;
    }
    finish(out, options, report, counts, writers, metadata, births)
}

/// The table of storage ids and their numbers, sealed for `key`; never on disk in clear.
fn write_id_map(out: &Path, options: &Options, key: &RecipientKey, id_map: &[(String, String)]) -> Result<(), ExtractError> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    let table_error = || ExtractError::Table { table: "patient_id".to_owned(), problem: "cannot write a row".to_owned() };
    csv.write_record(["patient_id", "deidentified_patient_id"]).map_err(|_| table_error())?;
    for (pid, id) in id_map {
        csv.write_record([pid, id]).map_err(|_| table_error())?;
    }
    let plaintext = zeroize::Zeroizing::new(csv.into_inner().map_err(|_| table_error())?);
    let target = out.join(format!("patient_id_{}.csv.bin", options.identity_tag));
    let temp = out.join(format!("patient_id_{}.csv.bin.partial", options.identity_tag));
    std::fs::write(&temp, key.seal(&plaintext)).map_err(io(&temp))?;
    std::fs::rename(&temp, &target).map_err(io(&target))
}

type Writers = BTreeMap<Table, TableWriter>;

/// One patient's rows, if they are selected; says whether they were.
#[allow(clippy::too_many_arguments)]
fn write_patient(
    patient: PatientRecords,
    id: &str,
    options: &Options,
    ids: &dyn Ids,
    report: &mut Report,
    writers: &mut Writers,
    metadata: &mut TableWriter,
    births: Option<&mut TableWriter>,
) -> Result<bool, ExtractError> {
    {
        if !selected(&patient, options, report) {
            return Ok(false);
        }
        report.patients_included += 1;
        let id = id.to_owned();
        let offset = ids.offset_days(&patient.pid);
        let birth = patient.basics.birth_date;
        let mut admissions = 0u64;
        for Record { table, values } in patient.records {
            admissions += u64::from(table == Table::Admissions);
            let mut row = Vec::with_capacity(values.len() + 1);
            row.push(Some(id.clone()));
            row.extend(values.into_iter().map(|v| cell(v, birth, offset, options)));
            writers.get_mut(&table).expect("a writer per table").push(row)?;
        }
        let day = |d: Option<&String>| d.and_then(|d| time::parse(d)).map(|stamp| cell(Value::Time(stamp), birth, offset, options)).unwrap_or_default();
        metadata.push(vec![
            Some(id.clone()),
            patient.basics.sex.clone(),
            Some(patient.date_folders.len().to_string()),
            day(patient.date_folders.first()),
            day(patient.date_folders.last()),
            Some(admissions.to_string()),
        ])?;
        if let (Some(writer), Some(birth)) = (births, birth) {
            let value = match options.birth_dates {
                BirthDates::Year => birth.format("%Y").to_string(),
                _ => birth.format("%Y-%m-%d").to_string(),
            };
            writer.push(vec![Some(id.clone()), Some(value)])?;
        }
    }
    Ok(true)
}

/// Closes every table (renamed or sealed) and writes the report.
fn finish(
    out: &Path,
    options: &Options,
    mut report: Report,
    counts: ReadCounts,
    writers: Writers,
    metadata: TableWriter,
    births: Option<TableWriter>,
) -> Result<Report, ExtractError> {
    let recipient = options.recipient.as_ref();
    let mut finished: Vec<(String, u64, String)> = Vec::new();
    for (table, writer) in writers {
        let (file, rows) = writer.finish(recipient)?;
        finished.push((table.name().to_owned(), rows, file));
    }
    let (file, rows) = metadata.finish(recipient)?;
    finished.push(("patient_metadata".to_owned(), rows, file));
    if let Some(writer) = births {
        let (file, rows) = writer.finish(recipient)?;
        finished.push(("date_of_birth".to_owned(), rows, file));
    }
    for (table, rows, file) in finished {
        report.rows.insert(table, rows);
        report.files_written.push(file);
    }
    report.files = counts.files.iter().map(|((data_type, flag), n)| (format!("{data_type}/{flag}"), *n)).collect();
    report.messages_parsed = counts.messages_parsed;
    report.decode_errors = counts.decode_errors;
    report.unparsable_messages = counts.unparsable_messages;
    report.deviations = counts.deviations.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    report.free_text = counts.free_text;
    let analytics = out.join(format!("analytics_{}.json", options.identity_tag));
    std::fs::write(&analytics, serde_json::to_vec_pretty(&report).expect("the report serialises")).map_err(io(&analytics))?;
    Ok(report)
}
