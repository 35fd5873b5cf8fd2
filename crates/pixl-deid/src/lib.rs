//! De-identification of a set of DICOM files with a project's config: one study from the
//! raw cache (the service) or a folder (`pixl anonymise`). Both call [`deidentify_files`],
//! so the offline command and the service write the same bytes.
//!
//! Three steps: headers only (filters, instances per series, and the keyed inputs every
//! kept instance will need), one batch of keyed hashes (hasher-api, or local keys
//! offline), then the de-identification proper. Output goes to
//! `OUTPUT/<study uid>/<series uid>/<sop instance uid>.dcm`, every name pseudonymous, each
//! file written under a temporary name, fsynced and renamed (and the directories fsynced
//! before the run returns), so a crash never leaves half a file, what a run reports as
//! written is on disk, and a second run over the same input overwrites with the same bytes.
//!
//! Before an instance is written, [`leak`] checks that none of the study's original
//! identifiers survives anywhere in it; one that does fails that instance with a reason
//! naming the identifier kind and the tag.

pub mod leak;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use futures_util::future::BoxFuture;
use pixl_core::hasher_client::{HasherClient, HasherError};
use pixl_core::hashing::ProjectKeys;
use pixl_core::ids::ProjectSlug;
use pixl_core::project_config::{LoadedProject, ProjectConfigError, load_project};
use pixl_dicom::deid::{self, keyed_inputs};
use pixl_dicom::filters::{AllowedManufacturer, DropReason, SeriesFilter};
use pixl_dicom::recipe::{Recipe, RecipeError};
use pixl_dicom::scheme::{SchemeError, TagScheme};

/// A project ready to de-identify with: its config, merged tag scheme and filters.
#[derive(Debug)]
pub struct Project {
    pub loaded: LoadedProject,
    pub scheme: TagScheme,
    pub filter: SeriesFilter,
    /// `image_operation_files.deid_recipes`: burned-in annotation masking.
    pub recipes: Vec<Recipe>,
}

/// A project that cannot be used. Permanent: retrying will not help until the config is
/// fixed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    Config(#[from] ProjectConfigError),
    #[error("cannot read tag-operation file {path}: {problem}")]
    Read { path: PathBuf, problem: String },
    #[error(transparent)]
    Scheme(#[from] SchemeError),
    #[error(transparent)]
    Recipe(#[from] RecipeError),
}

impl Project {
    /// Reads `<configs_dir>/<slug>.yaml` and the tag-operation files it names.
    pub fn load(configs_dir: &Path, slug: &ProjectSlug) -> Result<Self, ProjectError> {
        let loaded = load_project(configs_dir, slug)?;
        let read = |paths: &[PathBuf]| -> Result<Vec<(String, String)>, ProjectError> {
            paths
                .iter()
                .map(|path| {
                    let text = std::fs::read_to_string(path).map_err(|e| ProjectError::Read { path: path.clone(), problem: e.to_string() })?;
                    Ok((path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), text))
                })
                .collect()
        };
        let scheme = TagScheme::from_yaml(&read(&loaded.base_tag_files)?, &read(&loaded.manufacturer_override_files)?)?;
        let filter = series_filter(&loaded);
        let recipes = read(&loaded.deid_recipe_files)?.iter().map(|(name, text)| Recipe::parse(name, text)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { loaded, scheme, filter, recipes })
    }
}

fn series_filter(project: &LoadedProject) -> SeriesFilter {
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

/// Keyed hashes could not be computed.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct HashFailure {
    pub reason: String,
    /// Worth retrying later (the hasher-api or its key store is down).
    pub transient: bool,
}

/// Computes the 64-hex keyed hashes of many inputs in one go.
pub trait KeyedHashes: Send + Sync {
    fn hash_all<'a>(&'a self, inputs: &'a [String]) -> BoxFuture<'a, Result<Vec<String>, HashFailure>>;
}

/// Offline: the project's keys in this process.
impl KeyedHashes for ProjectKeys {
    fn hash_all<'a>(&'a self, inputs: &'a [String]) -> BoxFuture<'a, Result<Vec<String>, HashFailure>> {
        Box::pin(async move { inputs.iter().map(|input| self.hash(input, 64).map_err(|e| HashFailure { reason: e.to_string(), transient: false })).collect() })
    }
}

/// The service: the hasher-api, for one project.
#[derive(Debug)]
pub struct RemoteHashes<'c> {
    pub client: &'c HasherClient,
    pub project: ProjectSlug,
}

impl KeyedHashes for RemoteHashes<'_> {
    fn hash_all<'a>(&'a self, inputs: &'a [String]) -> BoxFuture<'a, Result<Vec<String>, HashFailure>> {
        Box::pin(async move {
            let messages: Vec<&str> = inputs.iter().map(String::as_str).collect();
            self.client.hash_batch(&self.project, &messages, 64).await.map_err(|e| {
                let transient = matches!(e, HasherError::Unavailable { .. });
                HashFailure { reason: e.to_string(), transient }
            })
        })
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub files_seen: u64,
    pub written: u64,
    /// Instances dropped by a filter, by reason.
    pub dropped: BTreeMap<DropReason, u64>,
    /// Files that could not be de-identified, by reason (never a value or a path).
    pub failed: BTreeMap<String, u64>,
    /// Pseudonymous StudyInstanceUIDs written.
    pub studies: BTreeSet<String>,
    pub output: PathBuf,
}

impl Summary {
    /// Every input is written, dropped or failed: nothing is lost without a count.
    pub fn accounted(&self) -> u64 {
        self.written + self.dropped.values().sum::<u64>() + self.failed.values().sum::<u64>()
    }

    /// A one-line account for a failure reason (labels and counts only).
    pub fn brief(&self) -> String {
        let mut parts = vec![format!("{} of {} instances de-identified", self.written, self.files_seen)];
        parts.extend(self.dropped.iter().map(|(reason, count)| format!("{count} dropped ({})", reason.label())));
        parts.extend(self.failed.iter().map(|(reason, count)| format!("{count} failed ({reason})")));
        parts.join(", ")
    }
}

impl fmt::Display for Summary {
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

/// Why a run stopped as a whole (per-file problems are counted in the summary instead).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("keyed hashes: {0}")]
    Hash(#[from] HashFailure),
    #[error("cannot write to {path}: {problem}")]
    Write { path: PathBuf, problem: String },
}

/// The files to de-identify after the header pass, and the hash inputs they need.
struct Plan {
    summary: Summary,
    /// Each kept file with its original StudyInstanceUID.
    kept: Vec<(PathBuf, String)>,
    inputs: Vec<String>,
    /// Original identifiers per original study (a folder may hold several).
    originals: BTreeMap<String, leak::Originals>,
}

use pixl_dicom::element_text as text;

/// Headers only: filters, series selection, instances per series, hash inputs.
fn plan(project: &Project, files: &[PathBuf], series: &BTreeSet<String>, output: &Path, extra: leak::Originals) -> Plan {
    let mut originals: BTreeMap<String, leak::Originals> = BTreeMap::new();
    let mut summary = Summary { output: output.to_owned(), files_seen: files.len() as u64, ..Default::default() };
    let mut candidates: Vec<(PathBuf, String, String, BTreeSet<String>)> = Vec::new();
    let mut per_series: BTreeMap<String, usize> = BTreeMap::new();
    for path in files {
        let Ok(header) = read_checked(path, true) else {
            *summary.failed.entry("not a readable DICOM file".to_owned()).or_default() += 1;
            continue;
        };
        let study_uid = text(&header, tags::STUDY_INSTANCE_UID).unwrap_or_default();
        originals.entry(study_uid.clone()).or_insert_with(|| extra.clone()).add_header(&header);
        let series_uid = text(&header, tags::SERIES_INSTANCE_UID).unwrap_or_default();
        // Every instance of a series counts towards its minimum, whatever the other
        // filters say of it (PIXL's order).
        *per_series.entry(series_uid.clone()).or_default() += 1;
        let verdict = if !series.is_empty() && !series.contains(&series_uid) { Err(DropReason::SeriesNotRequested) } else { project.filter.check(&header) };
        match verdict {
            Err(reason) => *summary.dropped.entry(reason).or_default() += 1,
            Ok(()) => {
                let resolved = project.scheme.resolve(text(&header, tags::MANUFACTURER).as_deref());
                let inputs = keyed_inputs(&header, &resolved);
                candidates.push((path.clone(), study_uid, series_uid, inputs));
            }
        }
    }
    let too_small = project.filter.series_below_minimum(&per_series);
    let mut kept = Vec::with_capacity(candidates.len());
    let mut inputs = BTreeSet::new();
    for (path, study_uid, series_uid, file_inputs) in candidates {
        if too_small.contains(series_uid.as_str()) {
            *summary.dropped.entry(DropReason::TooFewInstancesInSeries).or_default() += 1;
        } else {
            inputs.extend(file_inputs);
            kept.push((path, study_uid));
        }
    }
    Plan { summary, kept, inputs: inputs.into_iter().collect(), originals }
}

/// What is known of a study besides its files.
#[derive(Debug, Clone, Default)]
pub struct StudyInputs {
    /// When not empty, only these original SeriesInstanceUIDs are kept.
    pub series: BTreeSet<String>,
    /// Identifiers known from elsewhere (the database's MRN and accession number); the
    /// inputs' own are added. None of them may appear in the output.
    pub originals: leak::Originals,
    /// The cohort's `participant_id`: when given, the exported PatientID (as PIXL's
    /// `pseudo_patient_id`), in place of the PatientID's keyed hash.
    pub participant_id: Option<String>,
    /// The project's `studies_per_accession: one`: every instance goes into the
    /// pseudonymous study of this original StudyInstanceUID (PIXL's one pseudonymous study
    /// for all the studies of an MRN and accession number).
    pub merge_into: Option<String>,
}

/// De-identifies `files` with `project` into `output`. CPU work runs on tokio's blocking
/// pool.
pub async fn deidentify_files(
    project: Arc<Project>,
    files: Vec<PathBuf>,
    study: StudyInputs,
    hashes: &dyn KeyedHashes,
    output: PathBuf,
) -> Result<Summary, RunError> {
    let StudyInputs { series, originals, participant_id, merge_into } = study;
    let planning = Arc::clone(&project);
    let mut plan = tokio::task::spawn_blocking(move || plan(&planning, &files, &series, &output, originals)).await.expect("planning does not panic");
    let merge_input = merge_into.map(|uid| deid::uid_input(&uid));
    if let Some(input) = &merge_input
        && !plan.kept.is_empty()
        && !plan.inputs.contains(input)
    {
        plan.inputs.push(input.clone());
    }
    let hashed = if plan.inputs.is_empty() { Vec::new() } else { hashes.hash_all(&plan.inputs).await? };
    if hashed.len() != plan.inputs.len() {
        return Err(HashFailure { reason: format!("{} hashes for {} inputs", hashed.len(), plan.inputs.len()), transient: true }.into());
    }
    let pseudonyms: BTreeMap<String, String> = plan.inputs.into_iter().zip(hashed).collect();
    let merged_study = merge_input.and_then(|input| pseudonyms.get(&input).and_then(|hash| deid::uid_from_hash(hash)));
    let Plan { mut summary, kept, originals, .. } = plan;
    tokio::task::spawn_blocking(move || {
        let matchers: BTreeMap<&String, leak::Matcher> = originals.iter().map(|(study, values)| (study, values.matcher())).collect();
        let mut written = BTreeSet::new();
        for (path, study_uid) in &kept {
            let matcher = &matchers[study_uid];
            let overrides = Overrides { participant_id: participant_id.as_deref(), study_uid: merged_study.as_deref() };
            match deidentify_file(path, &project, &pseudonyms, overrides, matcher, &summary.output, &mut written) {
                Ok(study) => {
                    summary.written += 1;
                    summary.studies.insert(study);
                }
                Err(FileError::Write(error)) => return Err(error),
                Err(FileError::Failed(reason)) => *summary.failed.entry(reason).or_default() += 1,
                Err(FileError::Dropped(reason)) => *summary.dropped.entry(reason).or_default() += 1,
            }
        }
        // The renames and new directories, durable before the caller records the study.
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        for file in &written {
            let mut dir = file.parent();
            while let Some(current) = dir {
                if !dirs.insert(current.to_owned()) || current == summary.output.parent().unwrap_or(Path::new("/")) {
                    break;
                }
                dir = current.parent();
            }
        }
        for dir in dirs.iter().rev() {
            sync_dir(dir).map_err(|e| RunError::Write { path: dir.clone(), problem: e.to_string() })?;
        }
        Ok(summary)
    })
    .await
    .expect("de-identification does not panic")
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

/// Values set in every output file in place of what the scheme gives.
#[derive(Clone, Copy)]
struct Overrides<'a> {
    participant_id: Option<&'a str>,
    study_uid: Option<&'a str>,
}

enum FileError {
    /// The file cannot be de-identified; counted, the run goes on.
    Failed(String),
    /// Dropped on purpose, as PIXL would (counted with the filters' drops).
    Dropped(DropReason),
    /// The output cannot be written; the run stops.
    Write(RunError),
}

fn write_error(path: &Path, error: impl fmt::Display) -> FileError {
    FileError::Write(RunError::Write { path: path.to_owned(), problem: error.to_string() })
}

/// De-identifies one file; returns its pseudonymous StudyInstanceUID.
fn deidentify_file(
    path: &Path,
    project: &Project,
    pseudonyms: &BTreeMap<String, String>,
    overrides: Overrides<'_>,
    originals: &leak::Matcher,
    output: &Path,
    written: &mut BTreeSet<PathBuf>,
) -> Result<String, FileError> {
    let mut object = read_checked(path, false).map_err(|_| FileError::Failed("not a readable DICOM file".to_owned()))?;
    let scheme = &project.scheme;
    // Masking reads the original header (the recipes' filters, the pixel layout), as deid
    // reads the received instance, before the tag operations change it.
    let mask_plan = pixl_dicom::recipe::plan(&project.recipes, &object);
    if let Err(error) = pixl_dicom::mask::apply(&mut object, &mask_plan) {
        tracing::warn!(problem = %error, "an instance's pixel data cannot be masked; it is dropped");
        return Err(FileError::Dropped(DropReason::PixelsNotMaskable));
    }
    let resolved = scheme.resolve(text(&object, tags::MANUFACTURER).as_deref());
    let outcome = deid::deidentify(&mut object, &resolved, &scheme.sources, pseudonyms).map_err(|error| match error {
        deid::DeidError::SecureHashNotLo { .. } => FileError::Dropped(DropReason::SecureHashNotLo),
        other => FileError::Failed(other.to_string()),
    })?;
    let (Some(mut study), Some(series), Some(sop)) = (outcome.study_instance_uid, outcome.series_instance_uid, outcome.sop_instance_uid) else {
        return Err(FileError::Failed("the scheme leaves no Study, Series or SOP Instance UID".to_owned()));
    };
    let text_element = |tag, vr, value: &str| dicom_core::DataElement::new(tag, vr, dicom_core::PrimitiveValue::from(value));
    if let Some(participant) = overrides.participant_id {
        object.put(text_element(tags::PATIENT_ID, dicom_core::VR::LO, participant));
    }
    if let Some(merged) = overrides.study_uid {
        object.put(text_element(tags::STUDY_INSTANCE_UID, dicom_core::VR::UI, merged));
        study = merged.to_owned();
    }
    originals.check_file(&object).map_err(|leak| FileError::Failed(leak.to_string()))?;
    let dir = output.join(&study).join(&series);
    let target = dir.join(format!("{sop}.dcm"));
    if !written.insert(target.clone()) {
        // Two inputs with one SOPInstanceUID are one instance (for example the same image in
        // two transfer syntaxes): the first is kept, the others counted, not overwritten.
        return Err(FileError::Failed("duplicate SOP Instance UID (same instance as another input)".to_owned()));
    }
    native_pixel_bytes(&mut object);
    std::fs::create_dir_all(&dir).map_err(|e| write_error(&dir, e))?;
    let partial = dir.join(format!(".{sop}.partial"));
    object.write_to_file(&partial).map_err(|e| write_error(&partial, e))?;
    std::fs::File::open(&partial).and_then(|file| file.sync_all()).map_err(|e| write_error(&partial, e))?;
    std::fs::rename(&partial, &target).map_err(|e| write_error(&target, e))?;
    Ok(study)
}

/// Reads a Part 10 file after checking that its declared lengths fit its bytes (so a
/// crafted length cannot make the parser reserve gigabytes); with `header_only`, the
/// elements before the pixel data.
pub fn read_checked(path: &Path, header_only: bool) -> Result<dicom_object::DefaultDicomObject, String> {
    let bytes = std::fs::read(path).map_err(|e| e.kind().to_string())?;
    let magic = pixl_dicom::lengths::check_file(&bytes).map_err(|e| e.to_string())?;
    let mut options = OpenFileOptions::new().read_preamble(dicom_object::file::ReadPreamble::Never);
    if header_only {
        options = options.read_until(tags::PIXEL_DATA);
    }
    options.from_reader(&bytes[magic..]).map_err(|_| "not a readable DICOM file".to_owned())
}

/// Makes a directory's entries (renames, new files) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Every regular file under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.is_file() {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    Ok(files)
}
