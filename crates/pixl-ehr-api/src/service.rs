//! The `ehr` consumer and the service around it.
//!
//! Per message (it carries the study's database key only): lock the study for this stage
//! and read its raw identifiers (MRN, accession number, study date) from Postgres; a study
//! whose EHR row is stored already (`ehr_state` done, flagged or no_record) is
//! acknowledged with nothing to do, so a redelivery changes nothing. Otherwise read the
//! EHR record from the project's source (EMAP, or the report `pixl populate` kept from the
//! extract), de-identify the report with the patient's probes, run the second check on the
//! result, and store the de-identified row, its flags and the state in the transaction
//! that holds the lock; commit, then acknowledge. A crash before the commit leaves the
//! message unacknowledged and nothing stored: it is redelivered and done once.
//!
//! An unreachable EHR database is a passing problem (retried with a doubling pause up to
//! `EHR_API_MAX_ATTEMPTS`); an unknown project, a malformed message or a query the EHR
//! refuses is permanent: dead-lettered with its reason, `ehr_state` set to `failed` with
//! the same reason. Reasons and log lines name the study by database key only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pixl_core::config::{ConfigError, Env, Settings};
use pixl_core::consumer::{ConsumerSpec, Handled, Retry, Settler, claim_study};
use pixl_core::outbox::MessageKind;
use pixl_core::project_config::{EhrSource, load_project};
use pixl_core::queues::{Broker, WorkQueue};
use pixl_core::retry::Backoff;
use secrecy::SecretString;
use sqlx::{PgPool, Row};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{EmapSettings, EmapSource, Outcome, Source, StudyKeys};

/// ehr-api's configuration, read once at start-up.
#[derive(Debug, Clone)]
pub struct EhrConfig {
    /// `EHR_API_HOST`:`EHR_API_PORT` (default 127.0.0.1:8004): `POST /deidentify`, health,
    /// metrics.
    pub http_bind: SocketAddr,
    /// `EHR_API_TOKEN`: the bearer token of `POST /deidentify`; `None` only with
    /// `EHR_API_ALLOW_NO_TOKEN=true`.
    pub token: Option<SecretString>,
    /// `EHR_API_CONCURRENCY` (default 8): studies handled at once (mostly waiting on the
    /// databases: more than the cores).
    pub concurrency: u16,
    /// `EHR_API_MAX_ATTEMPTS` (default 5): tries per study before a passing problem (the
    /// EHR database away) counts as permanent.
    pub max_attempts: u32,
    /// `EHR_API_RETRY_PAUSE` seconds (default 5): the first pause before a retry, doubling.
    pub retry_pause: Duration,
    /// `EMAP_DB_*`, `EMAP_OBSERVATION_*`.
    pub emap: EmapSettings,
}

impl EhrConfig {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        Ok(Self {
            http_bind: env.socket("EHR_API_HOST", "EHR_API_PORT", "127.0.0.1", 8004)?,
            token: pixl_core::config::api_token(&env, "EHR_API_TOKEN", "EHR_API_ALLOW_NO_TOKEN")?,
            concurrency: env.number("EHR_API_CONCURRENCY", 8, 1, 64)?,
            max_attempts: env.number("EHR_API_MAX_ATTEMPTS", 5, 1, 100)?,
            retry_pause: env.seconds("EHR_API_RETRY_PAUSE", 5.0, 3600.0)?,
            emap: EmapSettings::from_env(&env)?,
        })
    }
}

/// Everything the consumer needs.
#[derive(Debug)]
pub struct Context {
    pub pool: PgPool,
    pub broker: Broker,
    pub emap: EmapSource,
    /// `PROJECT_CONFIGS_DIR`: each project's `ehr` source.
    pub configs_dir: PathBuf,
    pub retry: Retry,
    /// Each project's `ehr` source, with the config file's modification time: read again
    /// when the file changes (loading a config compiles its patterns, costly per study).
    pub sources: std::sync::Mutex<std::collections::HashMap<String, (Option<std::time::SystemTime>, EhrSource)>>,
}

impl Context {
    /// The project's `ehr` source, from its config (cached while the file is unchanged).
    fn source_of(&self, project: &pixl_core::ids::ProjectSlug) -> Result<EhrSource, pixl_core::project_config::ProjectConfigError> {
        let file = pixl_core::project_config::config_path(&self.configs_dir, project);
        let modified = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
        if let Some((at, source)) = self.sources.lock().expect("sources").get(project.as_str())
            && modified.is_some()
            && *at == modified
        {
            return Ok(*source);
        }
        let source = load_project(&self.configs_dir, project)?.config.ehr;
        self.sources.lock().expect("sources").insert(project.as_str().to_owned(), (modified, source));
        Ok(source)
    }
}

const COLUMNS: &str = "mrn, accession_number, study_date, ehr_state::text AS ehr_state";

/// Handles one `ehr` message.
#[tracing::instrument(skip_all, fields(study))]
pub async fn handle(context: &Context, body: &[u8]) -> Handled {
    let claimed = match claim_study(&context.pool, body, MessageKind::Ehr, COLUMNS).await {
        Ok(claimed) => claimed,
        Err(handled) => return handled,
    };
    let id = claimed.study.study_id;
    tracing::Span::current().record("study", id.0);
    let mut lock = claimed.lock;
    let database = |error: sqlx::Error| Handled::database(id, &error);
    let state: Option<String> = match claimed.row.try_get("ehr_state") {
        Ok(state) => state,
        Err(error) => return database(error),
    };
    if matches!(state.as_deref(), Some("done" | "flagged" | "no_record")) {
        tracing::debug!("the study's EHR row is stored already; nothing to do");
        return Handled::Done;
    }
    let source = match context.source_of(&claimed.study.project) {
        Ok(source) => source,
        Err(error) => return Handled::permanent(id, format!("project config: {error}")),
    };
    let study = match StudyKeys::from_row(&claimed.row) {
        Ok(study) => study,
        Err(error) => return database(error),
    };
    let record = match source {
        EhrSource::None => {
            tracing::info!("the project says `ehr: none`; nothing to do");
            return Handled::Done;
        }
        EhrSource::Emap => Source::Emap(&context.emap).record(&study).await,
        EhrSource::ReportsParquet => {
            let kept: Option<String> =
                match sqlx::query_scalar("SELECT report_text FROM ehr_source_reports WHERE study_id = $1").bind(id.0).fetch_optional(&mut *lock).await {
                    Ok(kept) => kept,
                    Err(error) => return database(error),
                };
            Source::KeptReport(kept.as_deref()).record(&study).await
        }
    };
    let record = match record {
        Ok(record) => record,
        Err(error) if error.is_transient() => return Handled::transient(id, error.to_string()),
        Err(error) => return Handled::permanent(id, error.to_string()),
    };
    // The engine and the check: about a millisecond of CPU for a report, done in place (a
    // hand-off to the blocking pool cost more than it saved).
    let anon = crate::deidentify(&record, &study);
    let outcome = match crate::store(&mut lock, id.0, anon.as_ref()).await {
        Ok(outcome) => outcome,
        Err(error) => return database(error),
    };
    if let Err(error) = lock.commit().await {
        return database(error);
    }
    let (label, flags) = match outcome {
        Outcome::Done => ("done", 0),
        Outcome::Flagged(n) => ("flagged", n),
        Outcome::NoRecord => ("no_record", 0),
    };
    let spans: u64 = anon.as_ref().map_or(0, |a| a.spans.values().sum());
    tracing::info!(outcome = label, spans_removed = spans, flags, "EHR record de-identified and checked");
    metrics::counter!("pixl_ehr_studies_total", "outcome" => label).increment(1);
    Handled::Done
}

/// Why ehr-api could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    #[error(transparent)]
    Database(#[from] pixl_core::db::DbError),
    #[error(transparent)]
    Broker(#[from] pixl_core::queues::BrokerError),
    #[error(transparent)]
    Ehr(#[from] crate::EhrError),
    #[error("{0} stopped: {1}")]
    Task(&'static str, String),
}

/// Builds the context: the pixl database, the broker, the EHR database (reached on first
/// use).
pub async fn connect(config: &EhrConfig, settings: &Settings) -> Result<Context, RunFailure> {
    // Each study holds a connection for its lock; settling needs more.
    let pool = pixl_core::db::connect(&settings.database, u32::from(config.concurrency) * 2 + 2).await?;
    let broker = Broker::connect(&settings.rabbitmq, pixl_core::queues::Topology::new(settings.queue_prefix.clone())).await?;
    Ok(Context {
        pool,
        broker,
        emap: EmapSource::connect_lazy(&config.emap)?,
        configs_dir: settings.project_configs_dir.clone(),
        retry: Retry { max_attempts: config.max_attempts, backoff: Backoff::new(config.retry_pause, Duration::from_secs(300)) },
        sources: Default::default(),
    })
}

/// Consumes `ehr` until `shutdown`, `concurrency` studies at a time.
pub async fn consume(context: Arc<Context>, concurrency: u16, grace: Duration, shutdown: CancellationToken) -> Result<(), pixl_core::consumer::ConsumeError> {
    let settler = Settler { pool: context.pool.clone(), broker: context.broker.clone(), queue: WorkQueue::Ehr, retry: context.retry };
    let spec = ConsumerSpec { tag: "pixl-ehr-api", concurrency, grace };
    pixl_core::consumer::consume(settler, spec, shutdown, move |body| {
        let context = Arc::clone(&context);
        async move { handle(&context, &body).await }
    })
    .await
}

/// Runs ehr-api (consumer and HTTP API) on `http` until `shutdown`.
pub async fn run(config: EhrConfig, settings: &Settings, http: TcpListener, shutdown: CancellationToken) -> Result<(), RunFailure> {
    let context = Arc::new(connect(&config, settings).await?);
    let health = pixl_core::http::Health::default();
    health.watch_broker(&context.broker);
    health.watch_database(&context.pool, shutdown.clone());
    let router = crate::api::router(config.token.clone(), health);
    let web = tokio::spawn(pixl_core::http::serve(http, router, shutdown.clone()));
    let consumed = consume(context, config.concurrency, settings.shutdown_grace, shutdown.clone()).await;
    // Whatever ended the consumer ends the service.
    shutdown.cancel();
    let served = web.await;
    consumed.map_err(|e| RunFailure::Task("ehr consumer", e.to_string()))?;
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(RunFailure::Task("HTTP server", error.to_string())),
        Err(error) => Err(RunFailure::Task("HTTP server", error.to_string())),
    }
}
