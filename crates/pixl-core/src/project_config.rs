//! The project config: PIXL's project YAML, read unchanged, validated once.
//!
//! A project lives in `$PROJECT_CONFIGS_DIR/<slug>.yaml`; the tag-operation files it names
//! live in `$PROJECT_CONFIGS_DIR/tag-operations/` and manufacturer overrides in
//! `$PROJECT_CONFIGS_DIR/tag-operations/manufacturer-overrides/`, as in PIXL.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ids::ProjectSlug;

/// A project config that could not be loaded. Names the file, the field and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectConfigError {
    #[error("project {slug:?} has no config: {path} does not exist")]
    Missing { slug: String, path: PathBuf },
    #[error("{path}: cannot be read: {problem}")]
    Unreadable { path: PathBuf, problem: String },
    #[error("{path}: field `{field}`: {problem}")]
    Invalid { path: PathBuf, field: String, problem: String },
}

/// Where de-identified DICOM of a project goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DicomDestination {
    None,
    Ftps,
    Dicomweb,
    Xnat,
    Directory,
    /// PIXL's TRE API (airlock upload, then flush).
    Tre,
}

/// Where the parquet files (OMOP public tables, linker) of a project go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParquetDestination {
    None,
    Ftps,
    Directory,
    /// PIXL's TRE API: the extract's parquet files in one zip.
    Tre,
}

/// The `project:` section.
#[derive(Debug, Clone, Deserialize)]
pub struct ProjectSection {
    /// Must equal the file stem: it is the slug the cohort refers to.
    pub name: String,
    /// DICOM modalities (0008,0060) whose series are kept.
    pub modalities: Vec<String>,
    /// Name of the project's secrets in the secret store; defaults to the slug.
    #[serde(default)]
    pub azure_kv_alias: Option<String>,
}

/// A list that PIXL's model lets be `null` (or absent): both mean empty.
fn nullable_list<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// The `tag_operation_files:` section: file names, resolved against the tag-operations
/// directory.
#[derive(Debug, Clone, Deserialize)]
pub struct TagOperationFiles {
    /// Merged in order; a later file wins for the same tag.
    pub base: Vec<String>,
    /// Files of `{manufacturer: <regex>, tags: [...]}` entries (`null` or `[]`: none).
    #[serde(default, deserialize_with = "nullable_list")]
    pub manufacturer_overrides: Vec<String>,
}

/// The `image_operation_files:` section (PIXL: `{deid_recipes: [...]}`): pixel operations,
/// resolved against `image-operations/`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageOperationFiles {
    /// pydicom/deid recipes masking burned-in annotations (ultrasound).
    #[serde(default, deserialize_with = "nullable_list")]
    pub deid_recipes: Vec<String>,
}

fn image_operation_files<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<ImageOperationFiles, D::Error> {
    Ok(Option::<ImageOperationFiles>::deserialize(deserializer)?.unwrap_or_default())
}

/// A series number to exclude: PIXL's configs write integers or strings.
fn series_numbers<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(i64),
        Text(String),
    }
    let numbers: Vec<Number> = nullable_list(deserializer)?;
    numbers
        .into_iter()
        .map(|number| match number {
            Number::Int(n) => Ok(n),
            Number::Text(text) => text.trim().parse().map_err(|_| serde::de::Error::custom(format!("{text:?} is not a series number"))),
        })
        .collect()
}

/// One entry of `allowed_manufacturers:`.
#[derive(Debug, Clone, Deserialize)]
pub struct AllowedManufacturer {
    /// Searched (case-insensitive) in the instance's Manufacturer.
    pub regex: String,
    /// Series numbers of this manufacturer to drop (often screen captures or dose reports).
    #[serde(default, deserialize_with = "series_numbers")]
    pub exclude_series_numbers: Vec<i64>,
}

/// The `destination:` section.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Destination {
    pub dicom: DicomDestination,
    pub parquet: ParquetDestination,
}

/// PIXL's `xnat_destination_options:` (they override `XNAT_OVERWRITE` and
/// `XNAT_DESTINATION` for the project).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct XnatDestinationOptions {
    /// `none`, `append` or `delete`.
    #[serde(default)]
    pub overwrite: Option<String>,
    /// `/archive` or `/prearchive`.
    #[serde(default)]
    pub destination: Option<String>,
}

fn min_instances<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    Ok(Option::<u32>::deserialize(deserializer)?.unwrap_or(1).max(1))
}

/// A project config as written in YAML. Keys pixl does not know are warned about, not
/// refused, as PIXL ignores them.
#[derive(Debug, Clone, Deserialize)]
pub struct ProjectConfig {
    pub project: ProjectSection,
    pub tag_operation_files: TagOperationFiles,
    #[serde(default, deserialize_with = "image_operation_files")]
    pub image_operation_files: ImageOperationFiles,
    /// Manufacturers whose instances are kept. Absent (or empty): **none**, as in PIXL,
    /// whose default entry matches nothing; a warning says so.
    #[serde(default, deserialize_with = "nullable_list")]
    pub allowed_manufacturers: Vec<AllowedManufacturer>,
    /// Series with fewer instances than this are dropped (PIXL's default 1: none).
    #[serde(default = "default_min_instances", deserialize_with = "min_instances")]
    pub min_instances_per_series: u32,
    /// Series whose SeriesDescription contains one of these (case-insensitive) are dropped.
    #[serde(default, deserialize_with = "nullable_list")]
    pub series_filters: Vec<String>,
    pub destination: Destination,
    #[serde(default)]
    pub xnat_destination_options: Option<XnatDestinationOptions>,
    /// Overrides the deployment's `HASHER_ALGORITHM` for this project (pixl extension):
    /// `pixl-blake2b` keeps the pseudonyms of a project migrated from PIXL.
    #[serde(default)]
    pub hash_algorithm: Option<crate::hashing::HashAlgorithm>,
    /// What becomes of several original studies found for one MRN and accession number
    /// (pixl extension; see [`StudiesPerAccession`]).
    #[serde(default)]
    pub studies_per_accession: StudiesPerAccession,
    /// Where ehr-api finds the study's EHR fields and report (pixl extension; see
    /// [`EhrSource`]).
    #[serde(default)]
    pub ehr: EhrSource,
}

/// Where a project's EHR fields and radiology reports come from. `emap` (the default, as
/// PIXL queued every study for its EHR extractor): the hospital's EMAP database
/// (`EMAP_DB_*`). `reports-parquet`: the report only, from the extract's
/// `private/RADIOLOGY_REPORTS.parquet`, read by `pixl populate` (for sites without EMAP).
/// `none`: no EHR work for the project.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EhrSource {
    #[default]
    Emap,
    ReportsParquet,
    None,
}

impl EhrSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Emap => "emap",
            Self::ReportsParquet => "reports-parquet",
            Self::None => "none",
        }
    }
}

/// Several studies in the archive can match one cohort row's MRN and accession number
/// (a study split in two, a repeat). `separate` (the default): each becomes a
/// pseudonymous study of its own, with its own row in the image linker. `one`: as PIXL,
/// all of them become one pseudonymous study (one StudyInstanceUID, the series of all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StudiesPerAccession {
    #[default]
    Separate,
    One,
}

fn default_min_instances() -> u32 {
    1
}

/// The keys pixl reads, per section (`""`: the top level), for the unknown-key warnings.
const KNOWN_KEYS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "project",
            "tag_operation_files",
            "image_operation_files",
            "allowed_manufacturers",
            "min_instances_per_series",
            "series_filters",
            "destination",
            "xnat_destination_options",
            "hash_algorithm",
            "studies_per_accession",
            "ehr",
        ],
    ),
    ("project", &["name", "modalities", "azure_kv_alias"]),
    ("tag_operation_files", &["base", "manufacturer_overrides"]),
    ("image_operation_files", &["deid_recipes"]),
    ("destination", &["dicom", "parquet"]),
    ("xnat_destination_options", &["overwrite", "destination"]),
];

/// Warnings about keys pixl does not read (PIXL ignores them too; a typo would silently
/// change nothing) and about defaults that surprise.
fn warnings(value: &serde_yaml_ng::Value) -> Vec<String> {
    let mut warnings = Vec::new();
    for (section, known) in KNOWN_KEYS {
        let map = if section.is_empty() { value.as_mapping() } else { value.get(*section).and_then(|v| v.as_mapping()) };
        for key in map.into_iter().flat_map(|m| m.keys()) {
            let name = key.as_str().unwrap_or("?");
            if !known.contains(&name) {
                let path = if section.is_empty() { name.to_owned() } else { format!("{section}.{name}") };
                warnings.push(format!("unknown key `{path}` is ignored (as PIXL does)"));
            }
        }
    }
    if let Some(entries) = value.get("allowed_manufacturers").and_then(|v| v.as_sequence()) {
        for (index, entry) in entries.iter().enumerate() {
            for key in entry.as_mapping().into_iter().flat_map(|m| m.keys()) {
                let name = key.as_str().unwrap_or("?");
                if !["regex", "exclude_series_numbers"].contains(&name) {
                    warnings.push(format!("unknown key `allowed_manufacturers[{index}].{name}` is ignored (as PIXL does)"));
                }
            }
        }
    }
    let manufacturers = value.get("allowed_manufacturers");
    if manufacturers.is_none_or(|v| v.is_null() || v.as_sequence().is_some_and(|s| s.is_empty())) {
        warnings.push(
            "allowed_manufacturers is absent or empty: NO manufacturer is allowed, so every instance is dropped (as in PIXL); \
                       list `- regex: \".*\"` to allow every manufacturer"
                .to_owned(),
        );
    }
    warnings
}

/// A validated project config with its referenced files resolved to paths that exist.
#[derive(Debug, Clone)]
pub struct LoadedProject {
    pub slug: ProjectSlug,
    /// The YAML file this came from.
    pub path: PathBuf,
    pub config: ProjectConfig,
    pub base_tag_files: Vec<PathBuf>,
    pub manufacturer_override_files: Vec<PathBuf>,
    /// The deid recipes (`image_operation_files.deid_recipes`), resolved.
    pub deid_recipe_files: Vec<PathBuf>,
    /// What the file says that pixl ignores, or that surprises (for `pixl check-env`).
    pub warnings: Vec<String>,
}

impl LoadedProject {
    /// The name under which the project's secrets are stored.
    pub fn secret_prefix(&self) -> &str {
        self.config.project.azure_kv_alias.as_deref().unwrap_or(self.slug.as_str())
    }
}

/// Path of the YAML file for `slug`.
pub fn config_path(configs_dir: &Path, slug: &ProjectSlug) -> PathBuf {
    configs_dir.join(format!("{}.yaml", slug.as_str()))
}

/// Loads and validates `$configs_dir/<slug>.yaml`.
pub fn load_project(configs_dir: &Path, slug: &ProjectSlug) -> Result<LoadedProject, ProjectConfigError> {
    let path = config_path(configs_dir, slug);
    if !path.is_file() {
        return Err(ProjectConfigError::Missing { slug: slug.as_str().to_owned(), path });
    }
    load_project_file(configs_dir, &path)
}

/// Loads and validates one YAML file; its stem must be the project name.
pub fn load_project_file(configs_dir: &Path, path: &Path) -> Result<LoadedProject, ProjectConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ProjectConfigError::Unreadable { path: path.to_owned(), problem: error.to_string() })?;
    let invalid = |field: &str, problem: String| ProjectConfigError::Invalid { path: path.to_owned(), field: field.to_owned(), problem };

    // Syntax first, so that a YAML error is reported as such rather than against a field.
    let value = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text)
        .map_err(|error| ProjectConfigError::Unreadable { path: path.to_owned(), problem: error.to_string() })?;
    let warnings = warnings(&value);
    let deserializer = serde_yaml_ng::Deserializer::from_str(&text);
    let config: ProjectConfig = serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let field = error.path().to_string();
        let problem = error.into_inner().to_string();
        // serde_yaml_ng starts some messages with (part of) the path again.
        let problem = match problem.split_once(": ") {
            Some((head, rest)) if field.starts_with(head) => rest.to_owned(),
            _ => problem,
        };
        if field == "." { ProjectConfigError::Unreadable { path: path.to_owned(), problem } } else { invalid(&field, problem) }
    })?;

    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if config.project.name != stem {
        return Err(invalid("project.name", format!("{:?} must equal the file name without .yaml ({stem:?})", config.project.name)));
    }
    let slug = ProjectSlug::parse(&config.project.name).map_err(|error| invalid("project.name", error.to_string()))?;
    if config.project.modalities.is_empty() {
        return Err(invalid("project.modalities", "must list at least one modality".to_owned()));
    }
    for (index, modality) in config.project.modalities.iter().enumerate() {
        let ok = (1..=16).contains(&modality.len()) && modality.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(invalid(&format!("project.modalities[{index}]"), format!("{modality:?} is not a DICOM modality code")));
        }
    }
    if let Some(alias) = &config.project.azure_kv_alias {
        let ok = !alias.is_empty() && alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(invalid("project.azure_kv_alias", "only letters, digits and '-' are allowed".to_owned()));
        }
    }
    if config.tag_operation_files.base.is_empty() {
        return Err(invalid("tag_operation_files.base", "must list at least one file".to_owned()));
    }
    if let Some(options) = &config.xnat_destination_options {
        if let Some(overwrite) = options.overwrite.as_deref().filter(|o| !["none", "append", "delete"].contains(o)) {
            return Err(invalid("xnat_destination_options.overwrite", format!("{overwrite:?} is not one of none, append, delete")));
        }
        if let Some(destination) = options.destination.as_deref().filter(|d| !["/archive", "/prearchive"].contains(d)) {
            return Err(invalid("xnat_destination_options.destination", format!("{destination:?} is neither /archive nor /prearchive")));
        }
    }
    for (index, entry) in config.allowed_manufacturers.iter().enumerate() {
        if let Err(error) = regex::Regex::new(&entry.regex) {
            return Err(invalid(&format!("allowed_manufacturers[{index}].regex"), error.to_string()));
        }
    }

    let tag_dir = configs_dir.join("tag-operations");
    let resolve = |field: &str, dir: &Path, names: &[String]| -> Result<Vec<PathBuf>, ProjectConfigError> {
        names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let candidate = dir.join(name);
                let is_plain_name = Path::new(name).components().all(|c| matches!(c, std::path::Component::Normal(_)));
                if !is_plain_name {
                    Err(invalid(&format!("{field}[{index}]"), format!("{name:?} must be a file name inside {}", dir.display())))
                } else if candidate.is_file() {
                    Ok(candidate)
                } else {
                    Err(invalid(&format!("{field}[{index}]"), format!("{} does not exist", candidate.display())))
                }
            })
            .collect()
    };
    let base_tag_files = resolve("tag_operation_files.base", &tag_dir, &config.tag_operation_files.base)?;
    let manufacturer_override_files =
        resolve("tag_operation_files.manufacturer_overrides", &tag_dir.join("manufacturer-overrides"), &config.tag_operation_files.manufacturer_overrides)?;
    let deid_recipe_files = resolve("image_operation_files.deid_recipes", &configs_dir.join("image-operations"), &config.image_operation_files.deid_recipes)?;

    Ok(LoadedProject { slug, path: path.to_owned(), config, base_tag_files, manufacturer_override_files, deid_recipe_files, warnings })
}

/// Loads every `*.yaml` project config in `configs_dir`, returning each result, in file
/// name order. Used by `pixl check-env`.
pub fn load_all(configs_dir: &Path) -> Result<Vec<Result<LoadedProject, ProjectConfigError>>, ProjectConfigError> {
    let entries =
        std::fs::read_dir(configs_dir).map_err(|error| ProjectConfigError::Unreadable { path: configs_dir.to_owned(), problem: error.to_string() })?;
    let mut paths: Vec<PathBuf> =
        entries.filter_map(|entry| entry.ok().map(|e| e.path())).filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "yaml")).collect();
    paths.sort();
    Ok(paths.iter().map(|path| load_project_file(configs_dir, path)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(tempfile::TempDir);

    impl Dir {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("tag-operations/manufacturer-overrides")).unwrap();
            std::fs::write(dir.path().join("tag-operations/base.yaml"), "[]\n").unwrap();
            std::fs::write(dir.path().join("tag-operations/manufacturer-overrides/mri.yaml"), "[]\n").unwrap();
            Self(dir)
        }
        fn write(&self, name: &str, yaml: &str) -> Result<LoadedProject, ProjectConfigError> {
            std::fs::write(self.0.path().join(format!("{name}.yaml")), yaml).unwrap();
            load_project(self.0.path(), &ProjectSlug::parse(name).unwrap())
        }
    }

    const GOOD: &str = r#"
project:
  name: "my-project"
  azure_kv_alias: "test"
  modalities: ["DX", "CR"]
tag_operation_files:
  base: ["base.yaml"]
  manufacturer_overrides: ["mri.yaml"]
series_filters: ["localizer", "positioning"]
allowed_manufacturers:
  - regex: "^philips"
    exclude_series_numbers: [3, 4]
destination:
  dicom: "ftps"
  parquet: "directory"
"#;

    #[test]
    fn reads_a_pixl_config() {
        let dir = Dir::new();
        let project = dir.write("my-project", GOOD).unwrap();
        assert_eq!(project.slug.as_str(), "my-project");
        assert_eq!(project.secret_prefix(), "test");
        assert_eq!(project.config.min_instances_per_series, 1);
        assert!(project.warnings.is_empty(), "{:?}", project.warnings);
        assert_eq!(project.config.destination.dicom, DicomDestination::Ftps);
        assert_eq!(project.config.allowed_manufacturers[0].exclude_series_numbers, vec![3, 4]);
        assert!(project.base_tag_files[0].ends_with("tag-operations/base.yaml"));
        assert!(project.manufacturer_override_files[0].ends_with("manufacturer-overrides/mri.yaml"));
    }

    #[test]
    fn without_allowed_manufacturers_none_is_allowed_and_a_warning_says_so() {
        let dir = Dir::new();
        let yaml = GOOD.replace("allowed_manufacturers:\n  - regex: \"^philips\"\n    exclude_series_numbers: [3, 4]\n", "");
        let project = dir.write("my-project", &yaml).unwrap();
        assert!(project.config.allowed_manufacturers.is_empty());
        assert!(project.warnings.iter().any(|w| w.contains("NO manufacturer is allowed")), "{:?}", project.warnings);
    }

    #[test]
    fn pixl_shapes_load_and_unknown_keys_are_warned_about() {
        let dir = Dir::new();
        std::fs::create_dir_all(dir.0.path().join("image-operations")).unwrap();
        std::fs::write(dir.0.path().join("image-operations/us-deid.recipe"), "FORMAT dicom\n").unwrap();
        let yaml = GOOD
            .replace("  manufacturer_overrides: [\"mri.yaml\"]", "  manufacturer_overrides: null")
            .replace("series_filters: [\"localizer\", \"positioning\"]", "series_filters: null")
            .replace("    exclude_series_numbers: [3, 4]", "    exclude_series_numbers: [\"3\", 4]\n    colour: red")
            .replace("  dicom: \"ftps\"\n  parquet: \"directory\"", "  dicom: \"tre\"\n  parquet: \"tre\"")
            + "image_operation_files:\n  deid_recipes: [\"us-deid.recipe\"]\nxnat_destination_options:\n  overwrite: \"append\"\n  destination: \"/prearchive\"\nlegacy_setting: 3\n";
        let project = dir.write("my-project", &yaml).unwrap();
        assert!(project.config.tag_operation_files.manufacturer_overrides.is_empty());
        assert!(project.config.series_filters.is_empty());
        assert_eq!(project.config.allowed_manufacturers[0].exclude_series_numbers, vec![3, 4]);
        assert_eq!((project.config.destination.dicom, project.config.destination.parquet), (DicomDestination::Tre, ParquetDestination::Tre));
        assert!(project.deid_recipe_files[0].ends_with("image-operations/us-deid.recipe"));
        assert_eq!(project.config.xnat_destination_options.as_ref().unwrap().overwrite.as_deref(), Some("append"));
        assert_eq!(
            project.warnings,
            ["unknown key `legacy_setting` is ignored (as PIXL does)", "unknown key `allowed_manufacturers[0].colour` is ignored (as PIXL does)"]
        );
        let image_null = dir.write("my-project", &GOOD.replace("series_filters:", "image_operation_files: null\nseries_filters:")).unwrap();
        assert!(image_null.deid_recipe_files.is_empty());
    }

    /// Each bad config, and the start of the message it must give.
    #[test]
    fn bad_configs_name_file_field_and_problem() {
        let cases: &[(&str, String, &str)] = &[
            ("my-project", GOOD.replace("name: \"my-project\"", "name: \"other\""), "field `project.name`: \"other\" must equal the file name"),
            ("my-project", GOOD.replace("base: [\"base.yaml\"]", "base: [\"nope.yaml\"]"), "field `tag_operation_files.base[0]`:"),
            (
                "my-project",
                GOOD.replace("base: [\"base.yaml\"]", "base: [\"../base.yaml\"]"),
                "field `tag_operation_files.base[0]`: \"../base.yaml\" must be a file name",
            ),
            ("my-project", GOOD.replace("dicom: \"ftps\"", "dicom: \"carrier-pigeon\""), "field `destination.dicom`: unknown variant `carrier-pigeon`"),
            ("my-project", GOOD.replace("parquet: \"directory\"", "parquet: \"xnat\""), "field `destination.parquet`: unknown variant `xnat`"),
            ("my-project", GOOD.replace("^philips", "(unclosed"), "field `allowed_manufacturers[0].regex`:"),
            ("my-project", GOOD.replace("[\"DX\", \"CR\"]", "[]"), "field `project.modalities`: must list at least one"),
            ("my-project", format!("{GOOD}xnat_destination_options:\n  overwrite: always\n"), "field `xnat_destination_options.overwrite`: \"always\""),
            ("my-project", format!("{GOOD}min_instances_per_series: many\n"), "field `min_instances_per_series`: invalid type"),
            ("my-project", "project: [unclosed\n".to_owned(), "cannot be read"),
        ];
        for (name, yaml, expected) in cases {
            let dir = Dir::new();
            let message = dir.write(name, yaml).unwrap_err().to_string();
            let file = format!("{name}.yaml");
            assert!(message.contains(&file), "message does not name the file: {message}");
            assert!(message.contains(expected), "expected {expected:?} in {message:?}");
        }
    }

    #[test]
    fn a_missing_project_names_the_path() {
        let dir = Dir::new();
        let error = load_project(dir.0.path(), &ProjectSlug::parse("ghost").unwrap()).unwrap_err();
        assert!(matches!(error, ProjectConfigError::Missing { .. }));
        assert!(error.to_string().contains("ghost.yaml does not exist"), "{error}");
    }

    #[test]
    fn the_shipped_configs_are_valid() {
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../projects/configs");
        let results = load_all(&configs).unwrap();
        assert!(!results.is_empty());
        for result in results {
            if let Err(error) = result {
                panic!("{error}");
            }
        }
    }
}
