//! The anon-node service: the storage SCP, the `anonymise` consumer, retention and the
//! HTTP routes in one process.
//!
//! For each `anonymise` message the consumer claims the study (its row, under a lock no
//! other delivery of it can take), de-identifies its cached instances with the project's
//! config and hasher-api pseudonyms into the anon store (fsynced; checked against the
//! study's original identifiers), then in one transaction records the pseudonymous UIDs,
//! moves the study to `anonymised` and queues an `export` message through the outbox.
//! Only then is the delivery acknowledged, and the raw instances released.
//!
//! - Redelivery (a crash before the ack) finds the study `anonymised` and does nothing; a
//!   crash before the commit redoes the work, which writes the same bytes.
//! - A message that cannot succeed (not a pixl message, unknown study, missing project
//!   config, bad scheme, instances failing, an original identifier in the output) goes to
//!   the dead-letter queue with its reason, and the study is marked `failed` with it.
//! - Raw instances gone (evicted or deleted by another project's run): the study goes back
//!   to retrieval, at most [`MAX_REFETCHES`] times.
//! - A passing problem (hasher-api, database, disk) comes back through a delay queue, up
//!   to [`MAX_ATTEMPTS`] times ([`pixl_core::consumer`]).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pixl_core::config::Settings;
use pixl_core::consumer::{ConsumerSpec, Handled, Retry, Settler, claim_study};
use pixl_core::hasher_client::{HasherClient, HasherClientConfig};
use pixl_core::ids::{Mrn, ParticipantId, StudyId, StudyUid};
use pixl_core::outbox::{self, MessageKind};
use pixl_core::queues::{Broker, WorkQueue};
use pixl_core::retry::Backoff;
use pixl_core::state::{self, Changes, StudyState};
use pixl_deid::leak::{IdentifierKind, Originals};
use pixl_deid::{KeyedHashes, Project, RemoteHashes, RunError, StudyInputs};
use sqlx::{PgPool, Row};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::AnonNodeConfig;
use crate::archive::AnonStore;
use crate::raw_cache::RawCache;

/// Attempts at a study before a passing problem counts as permanent.
pub const MAX_ATTEMPTS: u32 = 5;
/// Times a study is sent back to retrieval because its raw instances are gone.
pub const MAX_REFETCHES: i32 = 3;

/// Everything the consumer needs.
#[derive(Debug)]
pub struct Context {
    pub pool: PgPool,
    pub broker: Broker,
    pub hasher: HasherClient,
    pub cache: RawCache,
    pub store: AnonStore,
    pub configs_dir: PathBuf,
    /// How long raw instances stay after de-identification.
    pub raw_retention: Duration,
}

fn permanent(study: StudyId, reason: impl Into<String>) -> Handled {
    Handled::permanent(study, reason)
}

fn transient(study: StudyId, reason: impl Into<String>) -> Handled {
    Handled::transient(study, reason)
}

/// De-identifies the study an `anonymise` message names.
#[tracing::instrument(skip_all, fields(study))]
pub async fn handle(context: &Context, body: &[u8]) -> Handled {
    let claimed = match claim_study(
        &context.pool,
        body,
        MessageKind::Anonymise,
        "project_slug, mrn, accession_number, COALESCE(resolved_study_uid, study_uid) AS study_uid, series_uids, participant_id, merged_study_uids, state::text AS state, raw_refetches",
    )
    .await
    {
        Ok(claimed) => claimed,
        Err(handled) => return handled,
    };
    let (message, row, mut lock) = (claimed.study, claimed.row, claimed.lock);
    let id = message.study_id;
    tracing::Span::current().record("study", id.0);
    let state = StudyState::parse(row.get("state"));
    if state.is_some_and(|s| s.is_past(WorkQueue::Anonymise)) {
        tracing::info!(study = id.0, "already de-identified; nothing to do");
        return Handled::Done;
    }
    if state != Some(StudyState::Retrieved) {
        // A stale message: the study failed or went back to retrieval meanwhile; a fresh
        // `anonymise` comes when it is retrieved again.
        tracing::warn!(study = id.0, state = ?state, "de-identification asked for a study that is not retrieved; nothing to do");
        return Handled::Done;
    }
    if row.get::<String, _>("project_slug") != message.project.as_str() {
        return permanent(id, "the message names another project than the study's");
    }
    let Some(study_uid) = row.get::<Option<String>, _>("study_uid").and_then(|uid| StudyUid::parse(&uid).ok()) else {
        return permanent(id, "no valid StudyInstanceUID is recorded for the study (the retrieval resolves it)");
    };
    let series: BTreeSet<String> = row.get::<Vec<String>, _>("series_uids").into_iter().collect();
    let Ok(mrn) = Mrn::parse(row.get("mrn")) else {
        return permanent(id, "the study's MRN is not valid");
    };
    let mut originals = Originals::default();
    originals.add(IdentifierKind::PatientId, mrn.expose());
    originals.add(IdentifierKind::StudyInstanceUid, study_uid.expose());
    if let Some(accession) = row.get::<Option<String>, _>("accession_number") {
        originals.add(IdentifierKind::AccessionNumber, &accession);
    }

    let project = match Project::load(&context.configs_dir, &message.project) {
        Ok(project) => Arc::new(project),
        Err(error) => return permanent(id, format!("project {}: {error}", message.project)),
    };
    // `studies_per_accession: one`: the other studies found for the MRN and accession
    // number are de-identified into this one.
    let Ok(merged) = row.get::<Vec<String>, _>("merged_study_uids").iter().map(|u| StudyUid::parse(u)).collect::<Result<Vec<_>, _>>() else {
        return permanent(id, "a merged StudyInstanceUID of the study is not valid");
    };
    let mut files = Vec::new();
    for uid in std::iter::once(&study_uid).chain(&merged) {
        originals.add(IdentifierKind::StudyInstanceUid, uid.expose());
        match context.cache.instances(uid) {
            Ok(found) if found.is_empty() => return send_back_to_retrieval(context, lock, id, row.get("raw_refetches")).await,
            Ok(found) => files.extend(found),
            Err(error) => return transient(id, format!("cannot read the raw cache: {}", error.kind())),
        }
    }
    let hashes = RemoteHashes { client: &context.hasher, project: message.project.clone() };
    let output = context.store.project_dir(&message.project);
    // The cohort's participant_id, where given, is the patient's pseudonym (as in PIXL).
    let participant_id = match row.get::<Option<String>, _>("participant_id").map(|p| ParticipantId::parse(&p)).transpose() {
        Ok(participant) => participant.map(|p| p.expose().to_owned()),
        Err(_) => return permanent(id, "the study's participant_id is not valid"),
    };
    let merge_into = (!merged.is_empty()).then(|| study_uid.expose().to_owned());
    let inputs = StudyInputs { series, originals, participant_id: participant_id.clone(), merge_into };
    let summary = match pixl_deid::deidentify_files(project, files, inputs, &hashes, output.clone()).await {
        Ok(summary) => summary,
        Err(RunError::Hash(failure)) if !failure.transient => return permanent(id, failure.to_string()),
        Err(error) => return transient(id, error.to_string()),
    };
    tracing::info!(
        study = id.0,
        written = summary.written,
        dropped = summary.dropped.values().sum::<u64>(),
        failed = summary.failed.values().sum::<u64>(),
        "study de-identified"
    );
    if !summary.failed.is_empty() {
        // Nothing of a study that failed stays in the anon store.
        for study in &summary.studies {
            let _ = std::fs::remove_dir_all(output.join(study));
        }
        return permanent(id, format!("instances could not be de-identified: {}", summary.brief()));
    }
    if summary.written == 0 {
        return permanent(id, format!("nothing left to export: {}", summary.brief()));
    }
    let [pseudo_study_uid] = summary.studies.iter().collect::<Vec<_>>()[..] else {
        return permanent(id, format!("the instances map to {} pseudonymous studies, not one", summary.studies.len()));
    };
    let pseudo_patient_id = match participant_id {
        Some(participant) => participant,
        None => match hashes.hash_all(&[mrn.expose().to_owned()]).await {
            Ok(mut hashes) if hashes.len() == 1 => hashes.remove(0),
            Ok(_) => return transient(id, "hasher-api answered with the wrong number of hashes"),
            Err(failure) if failure.transient => return transient(id, failure.to_string()),
            Err(failure) => return permanent(id, failure.to_string()),
        },
    };
    let changes = Changes {
        pseudo_study_uid: Some(pseudo_study_uid),
        pseudo_patient_id: Some(&pseudo_patient_id),
        deid_summary: Some(&summary.brief()),
        ..Default::default()
    };
    let recorded = async {
        if state::transition(&mut lock, id, StudyState::Anonymised, &changes).await? {
            outbox::enqueue(&mut lock, id, MessageKind::Export, WorkQueue::Export, 0).await?;
        }
        lock.commit().await
    };
    if let Err(error) = recorded.await {
        return Handled::database(id, &error);
    }
    metrics::counter!("pixl_anon_node_studies_total", "outcome" => "anonymised").increment(1);
    metrics::counter!("pixl_anon_node_instances_deidentified_total").increment(summary.written);
    for uid in std::iter::once(&study_uid).chain(&merged) {
        release_raw(context, uid).await;
    }
    outbox::relay_now(&context.pool, &context.broker).await;
    Handled::Done
}

/// The raw instances of a de-identified study go (at once, or after the retention), unless
/// another study row (another project) still needs the same original study.
async fn release_raw(context: &Context, study_uid: &StudyUid) {
    let waiting: Result<bool, sqlx::Error> = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM studies WHERE COALESCE(resolved_study_uid, study_uid) = $1 AND state IN ('queued', 'retrieving', 'retrieved'))",
    )
    .bind(study_uid.expose())
    .fetch_one(&context.pool)
    .await;
    if !matches!(waiting, Ok(false)) {
        // Still needed, or unknown: kept; retention or eviction takes it later.
        let _ = context.cache.release(study_uid, Duration::from_secs(3600));
        return;
    }
    let (cache, uid, retention) = (context.cache.clone(), study_uid.clone(), context.raw_retention);
    match tokio::task::spawn_blocking(move || cache.release(&uid, retention)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(error = %error.kind(), "cannot release raw instances; retention will remove them"),
        Err(_) => tracing::error!("cannot release raw instances; retention will remove them"),
    }
}

/// The study's raw instances are gone: back to `queued` with a fresh `imaging` message.
async fn send_back_to_retrieval(context: &Context, mut lock: pixl_core::consumer::StudyLock, id: StudyId, refetches: i32) -> Handled {
    if refetches >= MAX_REFETCHES {
        return permanent(id, format!("no instance of the study is in the raw cache (after {refetches} retrievals)"));
    }
    let sent = async {
        if state::transition(&mut lock, id, StudyState::Queued, &Changes::default()).await? {
            sqlx::query("UPDATE studies SET raw_refetches = raw_refetches + 1 WHERE id = $1").bind(id.0).execute(&mut *lock).await?;
            outbox::enqueue(&mut lock, id, MessageKind::Imaging, WorkQueue::ImagingPrimary, 0).await?;
        }
        lock.commit().await
    };
    match sent.await {
        Ok(()) => {
            tracing::warn!(study = id.0, "no instance of the study is in the raw cache; it is retrieved again");
            metrics::counter!("pixl_anon_node_refetches_total").increment(1);
            outbox::relay_now(&context.pool, &context.broker).await;
            Handled::Done
        }
        Err(error) => Handled::database(id, &error),
    }
}

/// Applies the retentions every `every` until `shutdown`: raw instances of de-identified
/// studies, and de-identified files of studies exported longer than `anon_retention` ago.
pub async fn sweep_forever(context: Arc<Context>, anon_retention: Duration, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (cache, retention) = (context.cache.clone(), context.raw_retention);
        let _ = tokio::task::spawn_blocking(move || cache.sweep(retention)).await;
        if let Err(error) = sweep_anon_store(&context, anon_retention).await {
            tracing::warn!(%error, "cannot apply the anon store's retention; tried again later");
        }
    }
}

/// Deletes the de-identified files of studies exported more than `retention` ago.
async fn sweep_anon_store(context: &Context, retention: Duration) -> Result<(), String> {
    let rows = sqlx::query(
        "SELECT id, project_slug, pseudo_study_uid FROM studies
         WHERE state = 'exported' AND anon_purged_at IS NULL AND exported_at <= now() - make_interval(secs => $1)
         ORDER BY exported_at LIMIT 1000",
    )
    .bind(retention.as_secs_f64())
    .fetch_all(&context.pool)
    .await
    .map_err(|e| pixl_core::db::DbFailure::classify(&e).to_string())?;
    for row in rows {
        let (Ok(project), Some(Ok(uid))) = (
            pixl_core::ids::ProjectSlug::parse(row.get("project_slug")),
            row.get::<Option<String>, _>("pseudo_study_uid").map(|u| pixl_core::ids::PseudoStudyUid::parse(&u)),
        ) else {
            continue;
        };
        let dir = context.store.project_dir(&project).join(uid.as_str());
        match tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await {
            Ok(Ok(())) => tracing::info!(study = row.get::<i64, _>("id"), "deleted the de-identified files of an exported study (retention passed)"),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => {}
            Ok(Err(error)) => return Err(format!("cannot delete an exported study: {}", error.kind())),
            Err(_) => return Err("cannot delete an exported study".to_owned()),
        }
        sqlx::query("UPDATE studies SET anon_purged_at = now() WHERE id = $1")
            .bind(row.get::<i64, _>("id"))
            .execute(&context.pool)
            .await
            .map_err(|e| pixl_core::db::DbFailure::classify(&e).to_string())?;
    }
    Ok(())
}

/// The consumer's retry policy.
pub fn retry() -> Retry {
    Retry { max_attempts: MAX_ATTEMPTS, backoff: Backoff::new(Duration::from_secs(2), Duration::from_secs(60)) }
}

/// Consumes `anonymise` until `shutdown`, `concurrency` studies at a time; in-flight
/// studies get `grace` to finish.
pub async fn consume(
    context: Arc<Context>,
    retry: Retry,
    concurrency: u16,
    grace: Duration,
    shutdown: CancellationToken,
) -> Result<(), pixl_core::consumer::ConsumeError> {
    let settler = Settler { pool: context.pool.clone(), broker: context.broker.clone(), queue: WorkQueue::Anonymise, retry };
    let spec = ConsumerSpec { tag: "pixl-anon-node", concurrency, grace };
    pixl_core::consumer::consume(settler, spec, shutdown, move |body| {
        let context = Arc::clone(&context);
        async move { handle(&context, &body).await }
    })
    .await
}

/// Why the node stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    #[error("raw cache {path}: {source}")]
    Cache { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Database(#[from] pixl_core::db::DbError),
    #[error(transparent)]
    Broker(#[from] pixl_core::queues::BrokerError),
    #[error("hasher client: {0}")]
    Hasher(String),
    #[error("{0} stopped: {1}")]
    Task(&'static str, String),
}

/// Runs the whole node on the given listeners until `shutdown` (`dicom` is not used when
/// the SCP is off).
pub async fn run(
    config: AnonNodeConfig,
    settings: &Settings,
    hasher: HasherClientConfig,
    dicom: Option<TcpListener>,
    http: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunFailure> {
    let cache =
        RawCache::open(&config.raw_cache_dir, config.raw_cache_max_bytes).map_err(|source| RunFailure::Cache { path: config.raw_cache_dir.clone(), source })?;
    std::fs::create_dir_all(&config.anon_store_dir).map_err(|source| RunFailure::Cache { path: config.anon_store_dir.clone(), source })?;
    let store = AnonStore::new(&config.anon_store_dir);
    // Each de-identification holds one connection for its lock and needs another.
    let pool = pixl_core::db::connect(&settings.database, u32::from(config.concurrency) * 2 + 4).await?;
    let broker = Broker::connect(&settings.rabbitmq, pixl_core::queues::Topology::new(settings.queue_prefix.clone())).await?;
    let health = pixl_core::http::Health::default();
    health.watch_broker(&broker);
    health.watch_database(&pool, shutdown.clone());
    let context = Arc::new(Context {
        pool: pool.clone(),
        broker: broker.clone(),
        hasher: HasherClient::new(hasher).map_err(|e| RunFailure::Hasher(e.to_string()))?,
        cache: cache.clone(),
        store: store.clone(),
        configs_dir: settings.project_configs_dir.clone(),
        raw_retention: config.raw_retention,
    });
    let mut tasks = tokio::task::JoinSet::new();
    if config.scp
        && let Some(dicom) = dicom
    {
        let scp_config = crate::scp::ScpConfig { ae_title: config.ae_title.clone(), allowed_callers: config.allowed_callers.clone() };
        let (cache, shutdown) = (cache.clone(), shutdown.clone());
        tasks.spawn(async move { crate::scp::serve(dicom, scp_config, cache, shutdown).await.map_err(|e| ("storage SCP", e.to_string())) });
    }
    let routes = crate::archive::routes(store, cache, config.api_token.clone(), health);
    let web_shutdown = shutdown.clone();
    tasks.spawn(async move { pixl_core::http::serve(http, routes, web_shutdown).await.map_err(|e| ("HTTP server", e.to_string())) });
    tasks.spawn(outbox_relay(pool, broker, shutdown.clone()));
    tasks.spawn({
        let (context, shutdown) = (Arc::clone(&context), shutdown.clone());
        async move {
            sweep_forever(context, config.anon_retention, config.sweep_every, shutdown).await;
            Ok(())
        }
    });
    let consumed = consume(context, retry(), config.concurrency, settings.shutdown_grace, shutdown.clone()).await;
    // Whatever ended the consumer ends the node.
    shutdown.cancel();
    let mut failure = consumed.err().map(|e| RunFailure::Task("anonymise consumer", e.to_string()));
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Err((what, problem))) = joined {
            failure.get_or_insert(RunFailure::Task(what, problem));
        }
    }
    failure.map_or(Ok(()), Err)
}

async fn outbox_relay(pool: PgPool, broker: Broker, shutdown: CancellationToken) -> Result<(), (&'static str, String)> {
    outbox::relay_forever(pool, broker, Duration::from_secs(10), shutdown).await;
    Ok(())
}
