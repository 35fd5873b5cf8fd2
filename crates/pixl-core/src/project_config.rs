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
}

/// Where the parquet files (OMOP public tables, linker) of a project go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParquetDestination {
    None,
    Ftps,
    Directory,
}

/// The `project:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSection {
    /// Must equal the file stem: it is the slug the cohort refers to.
    pub name: String,
    /// DICOM modalities (0008,0060) whose series are kept.
    pub modalities: Vec<String>,
    /// Name of the project's secrets in the secret store; defaults to the slug.
    #[serde(default)]
    pub azure_kv_alias: Option<String>,
}

/// The `tag_operation_files:` section: file names, resolved against the tag-operations
/// directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagOperationFiles {
    /// Merged in order; a later file wins for the same tag.
    pub base: Vec<String>,
    /// Files of `{manufacturer: <regex>, tags: [...]}` entries.
    #[serde(default)]
    pub manufacturer_overrides: Vec<String>,
}

/// One entry of `allowed_manufacturers:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedManufacturer {
    /// Searched (case-insensitive) in the instance's Manufacturer.
    pub regex: String,
    /// Series numbers of this manufacturer to drop (often screen captures or dose reports).
    #[serde(default)]
    pub exclude_series_numbers: Vec<i64>,
}

/// The `destination:` section.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub dicom: DicomDestination,
    pub parquet: ParquetDestination,
}

/// A project config as written in YAML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    pub project: ProjectSection,
    pub tag_operation_files: TagOperationFiles,
    /// Optional image (pixel) operation files, resolved against `image-operations/`.
    #[serde(default)]
    pub image_operation_files: Vec<String>,
    /// Manufacturers whose instances are kept; PIXL's default keeps every manufacturer.
    #[serde(default = "default_allowed_manufacturers")]
    pub allowed_manufacturers: Vec<AllowedManufacturer>,
    /// Series with fewer instances than this are dropped.
    #[serde(default = "default_min_instances")]
    pub min_instances_per_series: u32,
    /// Series whose SeriesDescription contains one of these (case-insensitive) are dropped.
    #[serde(default)]
    pub series_filters: Vec<String>,
    pub destination: Destination,
    /// Overrides the deployment's `HASHER_ALGORITHM` for this project (pixl extension):
    /// `pixl-blake2b` keeps the pseudonyms of a project migrated from PIXL.
    #[serde(default)]
    pub hash_algorithm: Option<crate::hashing::HashAlgorithm>,
}

fn default_allowed_manufacturers() -> Vec<AllowedManufacturer> {
    vec![AllowedManufacturer { regex: ".*".to_owned(), exclude_series_numbers: Vec::new() }]
}

fn default_min_instances() -> u32 {
    2
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
    pub image_operation_files: Vec<PathBuf>,
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
    serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text)
        .map_err(|error| ProjectConfigError::Unreadable { path: path.to_owned(), problem: error.to_string() })?;
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
    if config.min_instances_per_series == 0 {
        return Err(invalid("min_instances_per_series", "must be at least 1".to_owned()));
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
    let image_operation_files = resolve("image_operation_files", &configs_dir.join("image-operations"), &config.image_operation_files)?;

    Ok(LoadedProject { slug, path: path.to_owned(), config, base_tag_files, manufacturer_override_files, image_operation_files })
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
        assert_eq!(project.config.min_instances_per_series, 2);
        assert_eq!(project.config.destination.dicom, DicomDestination::Ftps);
        assert_eq!(project.config.allowed_manufacturers[0].exclude_series_numbers, vec![3, 4]);
        assert!(project.base_tag_files[0].ends_with("tag-operations/base.yaml"));
        assert!(project.manufacturer_override_files[0].ends_with("manufacturer-overrides/mri.yaml"));
    }

    #[test]
    fn defaults_keep_every_manufacturer() {
        let dir = Dir::new();
        let yaml = GOOD.replace("allowed_manufacturers:\n  - regex: \"^philips\"\n    exclude_series_numbers: [3, 4]\n", "");
        let project = dir.write("my-project", &yaml).unwrap();
        assert_eq!(project.config.allowed_manufacturers.len(), 1);
        assert_eq!(project.config.allowed_manufacturers[0].regex, ".*");
    }

    /// Each bad config, and the start of the message it must give.
    #[test]
    fn bad_configs_name_file_field_and_problem() {
        let cases: &[(&str, String, &str)] = &[
            ("my-project", GOOD.replace("name: \"my-project\"", "name: \"other\""), "field `project.name`: \"other\" must equal the file name"),
            (
                "my-project",
                GOOD.replace("  modalities: [\"DX\", \"CR\"]\n", "  modalities: [\"DX\", \"CR\"]\n  colour: red\n"),
                "field `project.colour`: unknown field `colour`",
            ),
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
            ("my-project", format!("{GOOD}min_instances_per_series: 0\n"), "field `min_instances_per_series`: must be at least 1"),
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
