//! `pixl anonymise --project SLUG INPUT_DIR OUTPUT_DIR`: the de-identification engine over
//! a folder of DICOM files, offline, with the project's config and the local keys. Users
//! check a profile with it before a real run; the service computes the same output.
//!
//! Two passes: headers first (filters and instances per series, without pixel data), then
//! the full de-identification of what is kept. Output goes to
//! `OUTPUT_DIR/<study uid>/<series uid>/<sop instance uid>.dcm` (all pseudonymous).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use pixl_core::hashing::ProjectKeys;
use pixl_core::ids::ProjectSlug;
use pixl_core::project_config::{LoadedProject, ProjectConfigError, load_project};
use pixl_core::pseudonym_keys::{KeyError, KeySource};
use pixl_dicom::deid::{self, keyed_inputs};
use pixl_dicom::filters::{AllowedManufacturer, DropReason, SeriesFilter};
use pixl_dicom::scheme::{SchemeError, TagScheme};

/// Why the run could not start. Per-file problems are counted in the summary instead.
#[derive(Debug, thiserror::Error)]
pub enum AnonymiseError {
    #[error(transparent)]
    Project(#[from] ProjectConfigError),
    #[error(transparent)]
    Scheme(#[from] SchemeError),
    #[error("cannot read {path}: {problem}")]
    Read { path: PathBuf, problem: String },
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot write to {path}: {problem}")]
    Write { path: PathBuf, problem: String },
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AnonymiseSummary {
    pub files_seen: u64,
    pub written: u64,
    /// Instances dropped by a filter, by reason.
    pub dropped: BTreeMap<DropReason, u64>,
    /// Files that could not be de-identified, by reason (never a value or a path).
    pub failed: BTreeMap<String, u64>,
    pub output: PathBuf,
}

impl fmt::Display for AnonymiseSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "files read:         {}", self.files_seen)?;
        writeln!(f, "de-identified:      {} (in {})", self.written, self.output.display())?;
        for (reason, count) in &self.dropped {
            writeln!(f, "dropped, {:<28} {count}", format!("{}:", reason.label()))?;
        }
        for (reason, count) in &self.failed {
            writeln!(f, "failed, {reason}: {count}")?;
        }
        Ok(())
    }
}

/// Reads a project's tag-operation files into a scheme.
pub fn load_scheme(project: &LoadedProject) -> Result<TagScheme, AnonymiseError> {
    let read = |paths: &[PathBuf]| -> Result<Vec<(String, String)>, AnonymiseError> {
        paths
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).map_err(|e| AnonymiseError::Read { path: path.clone(), problem: e.to_string() })?;
                Ok((path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), text))
            })
            .collect()
    };
    Ok(TagScheme::from_yaml(&read(&project.base_tag_files)?, &read(&project.manufacturer_override_files)?)?)
}

/// The project's series filter.
pub fn series_filter(project: &LoadedProject) -> SeriesFilter {
    let config = &project.config;
    let manufacturers = config
        .allowed_manufacturers
        .iter()
        .map(|entry| AllowedManufacturer {
            // Validated when the project config was loaded.
            pattern: regex::RegexBuilder::new(&entry.regex).case_insensitive(true).build().expect("validated regex"),
            exclude_series_numbers: entry.exclude_series_numbers.clone(),
        })
        .collect();
    SeriesFilter::new(&config.project.modalities, manufacturers, &config.series_filters, config.min_instances_per_series as usize)
}

fn dicom_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), AnonymiseError> {
    let entries = std::fs::read_dir(dir).map_err(|e| AnonymiseError::Read { path: dir.to_owned(), problem: e.to_string() })?;
    for entry in entries {
        let path = entry.map_err(|e| AnonymiseError::Read { path: dir.to_owned(), problem: e.to_string() })?.path();
        if path.is_dir() {
            dicom_files(&path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn text(object: &InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    object.element_opt(tag).ok().flatten().and_then(|e| e.to_str().ok().map(|s| s.trim().to_owned()))
}

/// Runs the engine over `input` into `output`.
pub async fn anonymise(
    configs_dir: &Path,
    keys: &KeySource,
    project: &ProjectSlug,
    input: &Path,
    output: &Path,
) -> Result<AnonymiseSummary, AnonymiseError> {
    let loaded = load_project(configs_dir, project)?;
    let scheme = load_scheme(&loaded)?;
    let filter = series_filter(&loaded);
    let project_keys = keys.project_keys(&loaded).await?;
    let mut files = Vec::new();
    dicom_files(input, &mut files)?;
    files.sort();
    let mut summary = AnonymiseSummary { output: output.to_owned(), files_seen: files.len() as u64, ..Default::default() };

    // Pass 1: headers only.
    let mut kept: Vec<(PathBuf, String)> = Vec::new();
    let mut per_series: BTreeMap<String, usize> = BTreeMap::new();
    for path in &files {
        let header = OpenFileOptions::new().read_until(tags::PIXEL_DATA).open_file(path);
        let Ok(header) = header else {
            *summary.failed.entry("not a readable DICOM file".to_owned()).or_default() += 1;
            continue;
        };
        match filter.check(&header) {
            Err(reason) => *summary.dropped.entry(reason).or_default() += 1,
            Ok(()) => {
                let series = text(&header, tags::SERIES_INSTANCE_UID).unwrap_or_default();
                *per_series.entry(series.clone()).or_default() += 1;
                kept.push((path.clone(), series));
            }
        }
    }
    let too_small = filter.series_below_minimum(&per_series);

    // Pass 2: de-identify what is kept.
    for (path, series) in &kept {
        if too_small.contains(series.as_str()) {
            *summary.dropped.entry(DropReason::TooFewInstancesInSeries).or_default() += 1;
            continue;
        }
        match deidentify_file(path, &scheme, &project_keys, output) {
            Ok(()) => summary.written += 1,
            Err(FileError::Write(error)) => return Err(error),
            Err(FileError::Failed(reason)) => *summary.failed.entry(reason).or_default() += 1,
        }
    }
    Ok(summary)
}

/// dicom-rs reads native OW pixel data into 16-bit words and writes them back one by one;
/// as little-endian bytes the same data is written in one copy. Only for little-endian
/// transfer syntaxes, where the bytes on disk are exactly these.
fn native_pixel_bytes(object: &mut dicom_object::DefaultDicomObject) {
    use dicom_core::value::{PrimitiveValue, Value};
    let little_endian = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"].contains(&object.meta().transfer_syntax().trim_end_matches('\0'));
    if !little_endian {
        return;
    }
    let Ok(element) = object.element(tags::PIXEL_DATA) else { return };
    let Value::Primitive(PrimitiveValue::U16(words)) = element.value() else { return };
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let vr = element.header().vr();
    object.put(dicom_core::DataElement::new(tags::PIXEL_DATA, vr, PrimitiveValue::U8(bytes.into())));
}

enum FileError {
    /// The file cannot be de-identified; counted, the run goes on.
    Failed(String),
    /// The output cannot be written; the run stops.
    Write(AnonymiseError),
}

fn deidentify_file(path: &Path, scheme: &TagScheme, keys: &ProjectKeys, output: &Path) -> Result<(), FileError> {
    let mut object = dicom_object::open_file(path).map_err(|_| FileError::Failed("not a readable DICOM file".to_owned()))?;
    let resolved = scheme.resolve(text(&object, tags::MANUFACTURER).as_deref());
    let pseudonyms: BTreeMap<String, String> = keyed_inputs(&object, &resolved)
        .into_iter()
        .map(|input| {
            let hash = keys.hash(&input, 64).map_err(|e| FileError::Failed(e.to_string()))?;
            Ok((input, hash))
        })
        .collect::<Result<_, FileError>>()?;
    let outcome = deid::deidentify(&mut object, &resolved, &scheme.sources, &pseudonyms).map_err(|e| FileError::Failed(e.to_string()))?;
    let (Some(study), Some(series), Some(sop)) = (outcome.study_instance_uid, outcome.series_instance_uid, outcome.sop_instance_uid) else {
        return Err(FileError::Failed("the scheme leaves no Study, Series or SOP Instance UID".to_owned()));
    };
    let dir = output.join(&study).join(&series);
    std::fs::create_dir_all(&dir).map_err(|e| FileError::Write(AnonymiseError::Write { path: dir.clone(), problem: e.to_string() }))?;
    let target = dir.join(format!("{sop}.dcm"));
    native_pixel_bytes(&mut object);
    if target.exists() {
        // Two inputs with one SOPInstanceUID are one instance (for example the same image in
        // two transfer syntaxes): the first is kept, the others counted, not overwritten.
        return Err(FileError::Failed("duplicate SOP Instance UID (same instance as another input)".to_owned()));
    }
    object
        .write_to_file(&target)
        .map_err(|e| FileError::Write(AnonymiseError::Write { path: target.clone(), problem: e.to_string() }))
}
