//! The key ring: per project, the keys from [`KeySource`], assembled once and kept. A
//! missing project salt is created and stored once, even when many first requests arrive
//! together (one `OnceCell` per project).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use pixl_core::hashing::{HashError, ProjectKeys};
use pixl_core::ids::ProjectSlug;
use pixl_core::project_config::{ProjectConfigError, load_project};
use pixl_secrets::pseudonym_keys::KeySource;
use tokio::sync::OnceCell;

use crate::HasherConfig;

/// Why a project's keys are not available.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("unknown project {0:?}: no project config")]
    UnknownProject(String),
    #[error("project config of {slug:?} is invalid")]
    BadProject { slug: String, source: ProjectConfigError },
    #[error(transparent)]
    Keys(#[from] pixl_secrets::pseudonym_keys::KeyError),
    #[error("{0}")]
    Hash(#[from] HashError),
}

/// Keys of every project seen so far.
#[derive(Debug)]
pub struct KeyRing {
    source: KeySource,
    project_configs_dir: PathBuf,
    projects: std::sync::Mutex<HashMap<ProjectSlug, Arc<OnceCell<Arc<ProjectKeys>>>>>,
}

impl KeyRing {
    pub fn new(source: KeySource, config: &HasherConfig) -> Self {
        Self { source, project_configs_dir: config.project_configs_dir.clone(), projects: std::sync::Mutex::new(HashMap::new()) }
    }

    /// The keys of `project`, loading (and if needed creating) them on first use. A
    /// failure is not remembered: the next call tries again.
    pub async fn project(&self, project: &ProjectSlug) -> Result<Arc<ProjectKeys>, KeyError> {
        let cell = self.projects.lock().expect("key ring lock").entry(project.clone()).or_default().clone();
        cell.get_or_try_init(|| self.load(project)).await.cloned()
    }

    async fn load(&self, project: &ProjectSlug) -> Result<Arc<ProjectKeys>, KeyError> {
        let loaded = load_project(&self.project_configs_dir, project).map_err(|source| match source {
            ProjectConfigError::Missing { .. } => KeyError::UnknownProject(project.as_str().to_owned()),
            source => KeyError::BadProject { slug: project.as_str().to_owned(), source },
        })?;
        Ok(Arc::new(self.source.project_keys(&loaded).await?))
    }
}
