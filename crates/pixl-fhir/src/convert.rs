//! NDJSON files → one parquet table per view, streaming, with de-identification before
//! any row is made.
//!
//! Each file's resource type is that of its first line (Bulk Data gives one type per
//! file); files of a type no view reads are not parsed. With de-identification, the
//! Patient files are read first to learn each patient's pseudonym, date shift and probes.
//! A line that is not a resource is reported with its file and line and counted; the
//! conversion goes on, and the summary (and `pixl fhir convert`'s exit status) says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::deid::{DeidCounts, Deidentifier};
use crate::ndjson::{LineError, MAX_LINE_BYTES, NdjsonReader, file_type};
use crate::table::{TableError, TableWriter};
use crate::view::{View, ViewError};

/// Why a conversion stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot create the output folder {path}: {source}")]
    Output { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("view {view:?} failed on {path}:{line}: {source}")]
    View { view: String, path: PathBuf, line: u64, source: ViewError },
    #[error("two views are named {0:?}: each view gives one file")]
    DuplicateView(String),
    #[error("{0} holds no .ndjson file")]
    NoInput(PathBuf),
}

/// What a conversion did.
#[derive(Debug, Default)]
pub struct ConvertSummary {
    pub files: u64,
    pub bytes: u64,
    pub resources: u64,
    /// Rows per view, and the file each was written to.
    pub tables: BTreeMap<String, (u64, PathBuf)>,
    /// Resources per type that no view reads (their files were not parsed: counted as files).
    pub unread_files: BTreeMap<String, u64>,
    /// Lines that were not resources (the first 20 kept; all counted).
    pub bad_lines: Vec<LineError>,
    pub bad_line_count: u64,
    /// Values that did not fit their column's declared type (written as null).
    pub type_mismatches: u64,
    /// Files of the input folder that were not read (not `.ndjson`/`.jsonl`).
    pub ignored_files: Vec<PathBuf>,
    pub deid: Option<DeidCounts>,
}

/// `.ndjson` (any case) and `.jsonl`.
fn is_ndjson(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("ndjson") || e.eq_ignore_ascii_case("jsonl"))
}

/// Files of `dir` that are not read (not `.ndjson`/`.jsonl`: `.ndjson.gz`, say), to be
/// named to the user.
pub fn other_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !is_ndjson(p) && p.file_name().is_none_or(|name| name != BULK_STATE_FILE))
        .collect();
    files.sort();
    files
}

/// The state file `pixl fhir export` keeps beside the files it downloads: not a file to read.
pub const BULK_STATE_FILE: &str = "bulk-state.json";

/// The `.ndjson` (and `.jsonl`) files of `dir`, sorted.
pub fn ndjson_files(dir: &Path) -> Result<Vec<PathBuf>, ConvertError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ConvertError::Read { path: dir.to_owned(), source })?;
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_ndjson(p) && p.is_file()).collect();
    files.sort();
    if files.is_empty() {
        return Err(ConvertError::NoInput(dir.to_owned()));
    }
    Ok(files)
}

/// Converts the NDJSON files of `input` into `output/<view>.parquet`, one per view.
pub fn convert(input: &Path, views: &[View], output: &Path, mut deid: Option<&mut Deidentifier<'_>>) -> Result<ConvertSummary, ConvertError> {
    let files = ndjson_files(input)?;
    std::fs::create_dir_all(output).map_err(|source| ConvertError::Output { path: output.to_owned(), source })?;
    let mut names = std::collections::BTreeSet::new();
    for view in views {
        if !names.insert(view.name.clone()) {
            return Err(ConvertError::DuplicateView(view.name.clone()));
        }
    }
    let mut typed = Vec::new();
    for file in files {
        let ty = file_type(&file).map_err(|source| ConvertError::Read { path: file.clone(), source })?;
        typed.push((file, ty));
    }
    let mut summary = ConvertSummary { ignored_files: other_files(input), ..Default::default() };

    if let Some(deid) = deid.as_deref_mut() {
        for (file, ty) in &typed {
            if ty.as_deref() == Some("Patient") {
                read_file(file, "Patient", &mut summary, &mut |resource, _| {
                    deid.learn_patient(&resource);
                    Ok(())
                })?;
            }
        }
        // Learning read the Patient files once more than converting will; count them once.
        summary.bytes = 0;
        summary.resources = 0;
        summary.bad_lines.clear();
        summary.bad_line_count = 0;
    }

    let mut writers: Vec<TableWriter> = Vec::with_capacity(views.len());
    for view in views {
        writers.push(TableWriter::create(&output.join(format!("{}.parquet", view.name)), &view.columns)?);
    }
    let mut deid_counts = DeidCounts::default();
    let mut rows = Vec::new();
    for (file, ty) in &typed {
        summary.files += 1;
        let Some(ty) = ty else {
            // A file none of whose lines is a resource (compressed, another format) is a
            // fault the summary names, not an empty input.
            if std::fs::metadata(file).map(|m| m.len() > 0).unwrap_or(true) {
                summary.bad_line_count += 1;
                summary.bad_lines.push(LineError::NoResource { path: file.clone() });
            }
            continue;
        };
        let readers: Vec<usize> = views.iter().enumerate().filter(|(_, v)| v.resource == *ty).map(|(i, _)| i).collect();
        if readers.is_empty() {
            *summary.unread_files.entry(ty.clone()).or_default() += 1;
            continue;
        }
        let deid = deid.as_deref();
        read_file(file, ty, &mut summary, &mut |mut resource, line| {
            if let Some(deid) = deid {
                deid.deidentify(&mut resource, &mut deid_counts);
            }
            for &i in &readers {
                rows.clear();
                views[i].rows(&resource, &mut rows).map_err(|source| ConvertError::View { view: views[i].name.clone(), path: file.clone(), line, source })?;
                for row in rows.drain(..) {
                    writers[i].push(row)?;
                }
            }
            Ok(())
        })?;
    }
    for (view, writer) in views.iter().zip(writers) {
        summary.type_mismatches += writer.mismatches;
        let path = output.join(format!("{}.parquet", view.name));
        let rows = writer.finish()?;
        summary.tables.insert(view.name.clone(), (rows, path));
    }
    if deid.is_some() {
        summary.deid = Some(deid_counts);
    }
    Ok(summary)
}

/// Streams the resources of one file (of type `ty`) through `each`.
fn read_file(file: &Path, ty: &str, summary: &mut ConvertSummary, each: &mut dyn FnMut(Value, u64) -> Result<(), ConvertError>) -> Result<(), ConvertError> {
    let mut reader = NdjsonReader::open(file, MAX_LINE_BYTES).map_err(|source| ConvertError::Read { path: file.to_owned(), source })?;
    summary.bytes += std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    while let Some(next) = reader.next_resource() {
        let line = reader.line();
        let checked = next.map_err(|source| ConvertError::Read { path: file.to_owned(), source })?.and_then(|resource| {
            let found = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
            if found == ty {
                Ok(resource)
            } else {
                Err(LineError::WrongType { path: file.to_owned(), line, expected: ty.to_owned(), found: crate::ndjson::printable_type(found) })
            }
        });
        match checked {
            Ok(resource) => {
                summary.resources += 1;
                each(resource, line)?;
            }
            Err(bad) => {
                summary.bad_line_count += 1;
                if summary.bad_lines.len() < 20 {
                    summary.bad_lines.push(bad);
                }
            }
        }
    }
    Ok(())
}
