//! The key ring: per project, the hashing key, the project salt and the algorithm, read
//! from the secret store once and kept. A missing project salt is created (16 random hex
//! characters) and stored, once, even when many first requests arrive together.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use pixl_core::hashing::{HashAlgorithm, HashError, ProjectKeys, new_project_salt};
use pixl_core::ids::ProjectSlug;
use pixl_core::project_config::{ProjectConfigError, load_project};
use pixl_core::secrets::{SecretError, SecretStore};
use secrecy::{ExposeSecret, SecretString};
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
    Store(#[from] SecretError),
    #[error("the hashing key (secret {0:?}) is missing from the secret store (local mode: create it with `pixl secrets init`)")]
    MissingKey(String),
    #[error("{0}")]
    Hash(#[from] HashError),
}

/// Keys of every project seen so far.
#[derive(Debug)]
pub struct KeyRing {
    store: Arc<dyn SecretStore>,
    default_algorithm: HashAlgorithm,
    key_secret_name: String,
    local_salt: SecretString,
    project_configs_dir: PathBuf,
    projects: std::sync::Mutex<HashMap<ProjectSlug, Arc<OnceCell<Arc<ProjectKeys>>>>>,
}

impl KeyRing {
    pub fn new(store: Arc<dyn SecretStore>, config: &HasherConfig) -> Self {
        Self {
            store,
            default_algorithm: config.algorithm,
            key_secret_name: config.key_secret_name.clone(),
            local_salt: config.local_salt.clone(),
            project_configs_dir: config.project_configs_dir.clone(),
            projects: std::sync::Mutex::new(HashMap::new()),
        }
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
        let algorithm = loaded.config.hash_algorithm.unwrap_or(self.default_algorithm);
        let key = self.store.get(&self.key_secret_name).await?.ok_or_else(|| KeyError::MissingKey(self.key_secret_name.clone()))?;
        let salt_name = loaded.secret_prefix().to_owned();
        let salt = match self.store.get(&salt_name).await? {
            Some(salt) => salt,
            None => {
                let salt = SecretString::from(new_project_salt());
                self.store.set(&salt_name, &salt).await?;
                tracing::info!(project = %project, "created the project salt");
                salt
            }
        };
        Ok(Arc::new(ProjectKeys::new(
            key.expose_secret().as_bytes().to_vec(),
            salt.expose_secret().to_owned(),
            self.local_salt.expose_secret().to_owned(),
            algorithm,
        )?))
    }
}
