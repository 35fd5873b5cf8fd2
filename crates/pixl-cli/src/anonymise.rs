//! `pixl anonymise --project SLUG INPUT_DIR OUTPUT_DIR`: the de-identification engine over
//! a folder of DICOM files (recursively), offline, with the project's config and the local
//! keys. Users check a profile with it before a real run. It runs the same pipeline as the
//! anon-node service ([`pixl_deid`]), so both write the same bytes.
//!
//! Output goes to `OUTPUT_DIR/<study uid>/<series uid>/<sop instance uid>.dcm` (all
//! pseudonymous).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pixl_core::ids::ProjectSlug;
use pixl_deid::{Project, ProjectError, RunError};
use pixl_secrets::pseudonym_keys::{KeyError, KeySource};

pub use pixl_deid::Summary as AnonymiseSummary;

/// Why the run could not start or stopped. Per-file problems are counted in the summary.
#[derive(Debug, thiserror::Error)]
pub enum AnonymiseError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error("cannot read {path}: {problem}")]
    Read { path: PathBuf, problem: String },
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Runs the engine over `input` into `output`.
pub async fn anonymise(configs_dir: &Path, keys: &KeySource, project: &ProjectSlug, input: &Path, output: &Path) -> Result<AnonymiseSummary, AnonymiseError> {
    let project = Arc::new(Project::load(configs_dir, project)?);
    let project_keys = keys.project_keys(&project.loaded).await?;
    let files = pixl_deid::files_under(input).map_err(|e| AnonymiseError::Read { path: input.to_owned(), problem: e.to_string() })?;
    Ok(pixl_deid::deidentify_files(project, files, Default::default(), &project_keys, output.to_owned()).await?)
}
