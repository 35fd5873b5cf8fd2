//! Shared helpers: fixture paths, running populate, reading back rows.

use std::path::{Path, PathBuf};

use pixl_cli::populate::{PopulateError, PopulateOptions, PopulateSummary, populate};
use pixl_core::queues::WorkQueue;
use pixl_core::testing::TestContext;
use sqlx::Row;

/// `../shared/fixtures/pixl-inputs/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/pixl-inputs").join(name)
}

/// A test context whose export root is a fresh temporary directory.
pub struct Env {
    pub ctx: TestContext,
    pub export_root: tempfile::TempDir,
}

impl Env {
    pub async fn new() -> Self {
        let mut ctx = TestContext::new().await;
        let export_root = tempfile::tempdir().unwrap();
        ctx.settings.host_export_root_dir = export_root.path().to_owned();
        Self { ctx, export_root }
    }

    pub async fn populate(&self, path: &Path) -> Result<PopulateSummary, PopulateError> {
        let options = PopulateOptions { path: path.to_owned(), queue: WorkQueue::ImagingPrimary, priority: 1, show_progress: false };
        populate(&self.ctx.settings, &options).await
    }

    pub async fn studies(&self) -> Vec<StudyRow> {
        sqlx::query(
            "SELECT s.id, s.project_slug, s.mrn, s.accession_number, s.study_uid, s.series_uids, s.study_date::text AS study_date,
                    s.procedure_occurrence_id, s.participant_id, s.state::text AS state, e.extract_datetime::text AS extract_datetime
             FROM studies s JOIN extracts e ON e.id = s.extract_id ORDER BY s.project_slug, s.procedure_occurrence_id, s.id",
        )
        .fetch_all(&self.ctx.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| StudyRow {
            id: r.get("id"),
            project: r.get("project_slug"),
            mrn: r.get("mrn"),
            accession_number: r.get("accession_number"),
            study_uid: r.get("study_uid"),
            series_uids: r.get("series_uids"),
            study_date: r.get("study_date"),
            procedure_occurrence_id: r.get("procedure_occurrence_id"),
            participant_id: r.get("participant_id"),
            state: r.get("state"),
            extract_datetime: r.get("extract_datetime"),
        })
        .collect()
    }

    pub async fn count(&self, table: &'static str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(&self.ctx.pool).await.unwrap()
    }

    pub async fn teardown(self) {
        self.ctx.teardown().await;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyRow {
    pub id: i64,
    pub project: String,
    pub mrn: String,
    pub accession_number: Option<String>,
    pub study_uid: Option<String>,
    pub series_uids: Vec<String>,
    pub study_date: Option<String>,
    pub procedure_occurrence_id: Option<i64>,
    pub participant_id: Option<String>,
    pub state: String,
    pub extract_datetime: String,
}

/// An OMOP-ES extract of project `check-project` (extracted 2024-05-06 07:08:09) and an
/// export root, for commands that write into an extract's export tree (`--extract`).
pub struct IntoExtract {
    pub extract: PathBuf,
    pub export_root: PathBuf,
    configs: PathBuf,
    secrets: PathBuf,
}

impl IntoExtract {
    pub fn new(dir: &Path, configs: &Path, secrets: &Path) -> Self {
        let extract = dir.join("omop-extract");
        std::fs::create_dir_all(&extract).unwrap();
        std::fs::write(extract.join("extract_summary.json"), r#"{"datetime": "2024-05-06 07:08:09", "settings": {"cdm_source_name": "check-project"}}"#)
            .unwrap();
        Self { extract, export_root: dir.join("exports"), configs: configs.to_owned(), secrets: secrets.to_owned() }
    }

    /// Runs `pixl ARGS... --extract EXTRACT EXTRA...`.
    pub fn run(&self, args: &[&str], extra: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_pixl"))
            .args(args)
            .arg("--extract")
            .arg(&self.extract)
            .args(extra)
            .env("PROJECT_CONFIGS_DIR", &self.configs)
            .env("PIXL_SECRETS_FILE", &self.secrets)
            .env("HOST_EXPORT_ROOT_DIR", &self.export_root)
            .output()
            .unwrap()
    }
}
