//! The `export` consumer: one de-identified study per message, uploaded once.
//!
//! Per message: read the study row (the message has only its key; export-api reads only
//! pseudonymous columns). Already `exported` → nothing to do; not `anonymised` (a stale
//! message for a study being retrieved again, or failed) → acknowledged and logged, the
//! row left as it is. The project's
//! `destination.dicom` is `none` → marked exported with `exported_to = 'none'` on purpose,
//! not left to be retried forever. Otherwise, inside a transaction holding an advisory
//! lock on the study (so two deliveries of the same message, in one process or several,
//! never upload at once; the lock goes with the transaction, also on a crash): fetch the
//! zip from anon-node into the work directory, check it ([`crate::anon_archive::verify`]),
//! upload it, set `exported`/`exported_at`/`exported_to`, commit, and only then
//! acknowledge.
//!
//! A crash after the upload and before the commit uploads again on redelivery: every
//! destination replaces the same name (or the same SOP instances, or XNAT's session), so
//! one copy remains. Passing problems (network, server busy) are requeued with a doubling
//! pause up to `EXPORT_API_MAX_ATTEMPTS`; permanent ones (refused credentials, untrusted
//! certificate, a study anon-node does not have, an archive failing the check) are
//! dead-lettered with the reason and the study marked failed with it
//! ([`pixl_core::consumer::settle`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pixl_core::config::Settings;
use pixl_core::consumer::{ConsumerSpec, Handled, Retry, Settler, claim_study};
use pixl_core::ids::{PseudoPatientId, PseudoStudyUid, StudyId};
use pixl_core::outbox::MessageKind;
use pixl_core::project_config::load_project;
use pixl_core::queues::{Broker, WorkQueue};
use pixl_core::retry::Backoff;
use pixl_core::state::{self, Changes, StudyState};
use sqlx::{PgPool, Row};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ExportConfig;
use crate::anon_archive::{AnonNodeClient, FetchError};
use crate::destination::{Destinations, StudyPackage, UploadError};

/// Everything the consumer and the REST API need.
#[derive(Debug)]
pub struct Context {
    pub pool: PgPool,
    pub broker: Broker,
    pub anon_node: AnonNodeClient,
    pub destinations: Destinations,
    /// `PROJECT_CONFIGS_DIR`.
    pub configs_dir: PathBuf,
    /// `HOST_EXPORT_ROOT_DIR`: the export tree holding each extract's parquet files.
    pub export_root: PathBuf,
    /// Archives being uploaded.
    pub work_dir: PathBuf,
    pub retry: Retry,
}

/// Settles an upload failure: passing or permanent, as the uploader said.
fn upload_failed(id: StudyId, error: &UploadError) -> Handled {
    if error.transient { Handled::transient(id, error.to_string()) } else { Handled::permanent(id, error.to_string()) }
}

/// Exports the study an `export` message names.
#[tracing::instrument(skip_all, fields(study))]
pub async fn handle(context: &Context, body: &[u8]) -> Handled {
    // The claim's transaction holds the study's lock while it uploads (so two deliveries of
    // the same message, in one process or several, never upload at once; the lock goes with
    // the transaction, also on a crash) and records the export at the end. It stays open
    // (idle) while the study uploads: a server-side `idle_in_transaction_session_timeout`
    // shorter than an upload would end it, and the study would be uploaded again on retry
    // (harmless, but wasted). Leave that setting off (Postgres's default) for pixl's database.
    let claimed = match claim_study(&context.pool, body, MessageKind::Export, "project_slug, state::text AS state, pseudo_study_uid, pseudo_patient_id").await {
        Ok(claimed) => claimed,
        Err(handled) => return handled,
    };
    let (message, row, mut lock) = (claimed.study, claimed.row, claimed.lock);
    let id = message.study_id;
    tracing::Span::current().record("study", id.0);
    let state = StudyState::parse(row.get("state"));
    if state == Some(StudyState::Exported) {
        tracing::info!(study = id.0, "already exported; nothing to do");
        return Handled::Done;
    }
    if state != Some(StudyState::Anonymised) {
        // A stale message: the study was sent back to retrieval (`pixl retry-failed`) or
        // failed meanwhile. Its row is the authority; failing it here would overwrite that
        // state, and anon-node queues a new export once the study is de-identified again.
        tracing::warn!(study = id.0, state = ?state, "export asked for a study that is not de-identified; nothing to do");
        metrics::counter!("pixl_export_stale_messages_total").increment(1);
        return Handled::Done;
    }
    if row.get::<String, _>("project_slug") != message.project.as_str() {
        return Handled::permanent(id, "the message names another project than the study's");
    }
    let Some(uid) = row.get::<Option<String>, _>("pseudo_study_uid").and_then(|uid| PseudoStudyUid::parse(uid.as_str()).ok()) else {
        return Handled::permanent(id, "no valid pseudonymous study UID is recorded for the study");
    };
    let Some(patient) = row.get::<Option<String>, _>("pseudo_patient_id").and_then(|p| PseudoPatientId::parse(p.as_str()).ok()) else {
        return Handled::permanent(id, "no valid pseudonymous patient id is recorded for the study");
    };
    let project = match load_project(&context.configs_dir, &message.project) {
        Ok(project) => project,
        Err(error) => return Handled::permanent(id, format!("project {}: {error}", message.project)),
    };
    let uploader = match context.destinations.dicom(&project).await {
        Ok(uploader) => uploader,
        Err(error) => return upload_failed(id, &error),
    };
    let Some(uploader) = uploader else {
        // destination.dicom: none. Done on purpose: nothing to upload, ever.
        return match record_export(lock, id, "none").await {
            Ok(()) => {
                tracing::info!(study = id.0, "the project exports no DICOM (destination none); marked done");
                metrics::counter!("pixl_export_studies_total", "destination" => "none").increment(1);
                Handled::Done
            }
            Err(error) => Handled::database(id, &error),
        };
    };

    let started = Instant::now();
    let zip = WorkFile(context.work_dir.join(format!("study-{}.zip", id.0)));
    let bytes = match context.anon_node.fetch(&project.slug, &uid, &zip.0).await {
        Ok(bytes) => bytes,
        Err(error @ (FetchError::NotFound | FetchError::Unauthorized)) => return Handled::permanent(id, error.to_string()),
        Err(error) => return Handled::transient(id, error.to_string()),
    };
    let verify_path = zip.0.clone();
    let expected = uid.clone();
    let instances = match tokio::task::spawn_blocking(move || crate::anon_archive::verify(&verify_path, &expected)).await {
        Ok(Ok(instances)) => instances,
        Ok(Err(problem)) => {
            // Never expected: anon-node writes only de-identified instances. Worth an alert.
            metrics::counter!("pixl_export_archives_refused_total").increment(1);
            tracing::error!(study = id.0, %problem, "an archive failed the de-identification check; nothing was uploaded");
            return Handled::permanent(id, format!("refusing to export the archive anon-node served: {problem}"));
        }
        Err(_) => return Handled::transient(id, "checking the archive failed"),
    };
    let package = StudyPackage { project: project.slug.clone(), pseudo_study_uid: uid, pseudo_patient_id: patient, zip: zip.0.clone(), bytes, instances };
    let kind = uploader.kind();
    let destination = match uploader.upload_study(&package).await {
        Ok(destination) => destination,
        Err(error) => {
            metrics::counter!("pixl_export_upload_failures_total", "destination" => kind, "transient" => error.transient.to_string()).increment(1);
            return upload_failed(id, &error);
        }
    };
    let recorded = async {
        state::transition(&mut lock, id, StudyState::Exported, &Changes { exported_to: Some(kind), ..Default::default() }).await?;
        lock.commit().await
    };
    if let Err(error) = recorded.await {
        return Handled::database(id, &error);
    }
    let seconds = started.elapsed().as_secs_f64();
    metrics::counter!("pixl_export_studies_total", "destination" => kind).increment(1);
    metrics::counter!("pixl_export_bytes_total", "destination" => kind).increment(bytes);
    metrics::histogram!("pixl_export_study_seconds", "destination" => kind).record(seconds);
    tracing::info!(study = id.0, destination = kind, instances, bytes, seconds, "study exported to {destination}");
    Handled::Done
}

/// Marks a study exported to `to` and commits the claim.
async fn record_export(mut lock: pixl_core::consumer::StudyLock, id: StudyId, to: &str) -> Result<(), sqlx::Error> {
    state::transition(&mut lock, id, StudyState::Exported, &Changes { exported_to: Some(to), ..Default::default() }).await?;
    lock.commit().await
}

/// A file of the work directory, removed when dropped (whatever way the upload ended).
struct WorkFile(PathBuf);

impl Drop for WorkFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Empties the work directory (archives left by a crash), creating it if needed.
fn prepare_work_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

/// Why export-api could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    #[error("EXPORT_API_WORK_DIR {path}: {source}")]
    WorkDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Database(#[from] pixl_core::db::DbError),
    #[error(transparent)]
    Broker(#[from] pixl_core::queues::BrokerError),
    #[error("secret store: {0}")]
    Secrets(String),
    #[error("destinations: {0}")]
    Destinations(String),
    #[error("{0} stopped: {1}")]
    Task(&'static str, String),
}

/// Builds the context: database, broker, secret store, destinations, work directory.
pub async fn connect(config: &ExportConfig, settings: &Settings) -> Result<Context, RunFailure> {
    prepare_work_dir(&config.work_dir).map_err(|source| RunFailure::WorkDir { path: config.work_dir.clone(), source })?;
    // Each upload holds a connection for its lock; the REST API and settling need more.
    let pool = pixl_core::db::connect(&settings.database, u32::from(config.concurrency) * 2 + 4).await?;
    let broker = Broker::connect(&settings.rabbitmq, pixl_core::queues::Topology::new(settings.queue_prefix.clone())).await?;
    let secrets = config.secrets.open().map_err(|e| RunFailure::Secrets(e.to_string()))?;
    let destinations = Destinations::new(config.destinations.clone(), secrets).map_err(|e| RunFailure::Destinations(e.to_string()))?;
    let http = pixl_core::http_client::builder(None)
        .map_err(|e| RunFailure::Destinations(e.to_string()))?
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(300))
        .build()
        .map_err(|e| RunFailure::Destinations(e.to_string()))?;
    Ok(Context {
        pool,
        broker,
        anon_node: AnonNodeClient::new(http, &config.anon_node_url, config.anon_node_token.clone()),
        destinations,
        configs_dir: settings.project_configs_dir.clone(),
        export_root: settings.host_export_root_dir.clone(),
        work_dir: config.work_dir.clone(),
        retry: Retry { max_attempts: config.max_attempts, backoff: Backoff::new(config.retry_pause, Duration::from_secs(300)) },
    })
}

/// Consumes `export` until `shutdown`, `concurrency` studies at a time.
pub async fn consume(context: Arc<Context>, concurrency: u16, grace: Duration, shutdown: CancellationToken) -> Result<(), pixl_core::consumer::ConsumeError> {
    let settler = Settler { pool: context.pool.clone(), broker: context.broker.clone(), queue: WorkQueue::Export, retry: context.retry };
    let spec = ConsumerSpec { tag: "pixl-export-api", concurrency, grace };
    pixl_core::consumer::consume(settler, spec, shutdown, move |body| {
        let context = Arc::clone(&context);
        async move { handle(&context, &body).await }
    })
    .await
}

/// Runs export-api (consumer and REST) on `http` until `shutdown`.
pub async fn run(config: ExportConfig, settings: &Settings, http: TcpListener, shutdown: CancellationToken) -> Result<(), RunFailure> {
    let context = Arc::new(connect(&config, settings).await?);
    let health = pixl_core::http::Health::default();
    health.watch_broker(&context.broker);
    health.watch_database(&context.pool, shutdown.clone());
    let web = tokio::spawn(pixl_core::http::serve(http, crate::api::routes(Arc::clone(&context), health), shutdown.clone()));
    let consumed = consume(context, config.concurrency, settings.shutdown_grace, shutdown.clone()).await;
    // Whatever ended the consumer ends the service.
    shutdown.cancel();
    let served = web.await;
    consumed.map_err(|e| RunFailure::Task("export consumer", e.to_string()))?;
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(RunFailure::Task("HTTP server", error.to_string())),
        Err(error) => Err(RunFailure::Task("HTTP server", error.to_string())),
    }
}
