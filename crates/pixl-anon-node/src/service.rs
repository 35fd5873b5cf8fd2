//! The anon-node service: the storage SCP, the `anonymise` consumer and the HTTP routes in
//! one process.
//!
//! For each `anonymise` message the consumer looks the study up in Postgres (the message
//! holds only its key), de-identifies the study's cached instances with the project's
//! config and hasher-api pseudonyms, writes them to the anon store, then in one
//! transaction records the pseudonymous UIDs, sets the state to `anonymised` and queues an
//! `export` message through the outbox. Only then is the delivery acknowledged.
//!
//! - Redelivery (a crash before the ack) finds the study `anonymised` and does nothing;
//!   a crash before the commit redoes the work, which writes the same bytes.
//! - A message that cannot succeed (not a pixl message, unknown study, missing project
//!   config, bad scheme, nothing cached, instances failing) goes to the dead-letter queue
//!   with its reason, and the study is marked `failed` with the same reason.
//! - A passing problem (hasher-api, database, disk) is retried: the delivery is requeued
//!   after a growing pause, up to [`MAX_ATTEMPTS`] times, then dead-lettered
//!   ([`pixl_core::consumer::settle`]).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pixl_core::config::Settings;
use pixl_core::consumer::{Handled, Retry, load_study, settle};
use pixl_core::hasher_client::{HasherClient, HasherClientConfig};
use pixl_core::ids::StudyId;
use pixl_core::outbox::{self, MessageKind};
use pixl_core::queues::{Broker, WorkQueue};
use sqlx::{PgPool, Row};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::AnonNodeConfig;
use crate::archive::AnonStore;
use crate::pipeline::{self, KeyedHashes, Project, RemoteHashes, RunError};
use crate::raw_cache::RawCache;

/// Attempts at a study before a passing problem counts as permanent.
pub const MAX_ATTEMPTS: i32 = 5;

/// Everything the consumer needs.
#[derive(Debug)]
pub struct Context {
    pub pool: PgPool,
    pub broker: Broker,
    pub hasher: HasherClient,
    pub cache: RawCache,
    pub store: AnonStore,
    pub configs_dir: PathBuf,
    /// Requeue policy for passing problems.
    pub retry: Retry,
}

fn permanent(study: StudyId, reason: impl Into<String>) -> Handled {
    Handled::permanent(study, reason)
}

fn transient(study: StudyId, reason: impl Into<String>) -> Handled {
    Handled::transient(study, reason)
}

/// De-identifies the study an `anonymise` message names.
pub async fn handle(context: &Context, body: &[u8]) -> Handled {
    let (message, row) = match load_study(
        &context.pool,
        body,
        MessageKind::Anonymise,
        "project_slug, mrn, COALESCE(resolved_study_uid, study_uid) AS study_uid, series_uids, state::text AS state",
    )
    .await
    {
        Ok(loaded) => loaded,
        Err(handled) => return handled,
    };
    let id = message.study_id;
    let state: String = row.get("state");
    if state == "anonymised" || state == "exported" {
        tracing::info!(study = id.0, state, "already de-identified; nothing to do");
        return Handled::Done;
    }
    let slug: String = row.get("project_slug");
    if slug != message.project.as_str() {
        return permanent(id, "the message names another project than the study's");
    }
    let Some(study_uid) = row.get::<Option<String>, _>("study_uid") else {
        return permanent(id, "no StudyInstanceUID is recorded for the study (the retrieval resolves it)");
    };
    let series: BTreeSet<String> = row.get::<Vec<String>, _>("series_uids").into_iter().collect();
    let mrn: String = row.get("mrn");

    let project = match Project::load(&context.configs_dir, &message.project) {
        Ok(project) => Arc::new(project),
        Err(error) => return permanent(id, format!("project {}: {error}", message.project)),
    };
    let _pin = context.cache.pin(&study_uid);
    let files = match context.cache.instances(&study_uid) {
        Ok(files) if files.is_empty() => return permanent(id, "no instance of the study is in the raw cache"),
        Ok(files) => files,
        Err(error) => return transient(id, format!("cannot read the raw cache: {error}")),
    };
    let hashes = RemoteHashes { client: &context.hasher, project: message.project.clone() };
    let output = context.store.project_dir(&message.project);
    let summary = match pipeline::deidentify_files(project, files, series, &hashes, output).await {
        Ok(summary) => summary,
        Err(RunError::Hash(failure)) if !failure.transient => return permanent(id, failure.to_string()),
        Err(error) => return transient(id, error.to_string()),
    };
    tracing::info!(study = id.0, written = summary.written, dropped = summary.dropped.values().sum::<u64>(), failed = summary.failed.values().sum::<u64>(), "study de-identified");
    if !summary.failed.is_empty() {
        return permanent(id, format!("instances could not be de-identified: {}", summary.brief()));
    }
    if summary.written == 0 {
        return permanent(id, format!("nothing left to export: {}", summary.brief()));
    }
    let [pseudo_study_uid] = summary.studies.iter().collect::<Vec<_>>()[..] else {
        return permanent(id, format!("the instances map to {} pseudonymous studies, not one", summary.studies.len()));
    };
    let pseudo_patient_id = match hashes.hash_all(std::slice::from_ref(&mrn)).await {
        Ok(mut hashes) if hashes.len() == 1 => hashes.remove(0),
        Ok(_) => return transient(id, "hasher-api answered with the wrong number of hashes"),
        Err(failure) if failure.transient => return transient(id, failure.to_string()),
        Err(failure) => return permanent(id, failure.to_string()),
    };
    match record(&context.pool, id, pseudo_study_uid, &pseudo_patient_id, &summary.brief()).await {
        Ok(()) => {
            metrics::counter!("pixl_anon_node_studies_total", "outcome" => "anonymised").increment(1);
            metrics::counter!("pixl_anon_node_instances_deidentified_total").increment(summary.written);
            Handled::Done
        }
        Err(error) => transient(id, format!("database: {error}")),
    }
}

/// Records the result and queues the export, in one transaction.
async fn record(pool: &PgPool, id: StudyId, pseudo_study_uid: &str, pseudo_patient_id: &str, deid_summary: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE studies SET state = 'anonymised', pseudo_study_uid = $2, pseudo_patient_id = $3, failure_reason = NULL,
                deid_summary = $4, attempts = 0, updated_at = now()
         WHERE id = $1 AND state NOT IN ('anonymised', 'exported')",
    )
    .bind(id.0)
    .bind(pseudo_study_uid)
    .bind(pseudo_patient_id)
    .bind(deid_summary)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 1 {
        outbox::enqueue(&mut tx, id, MessageKind::Export, WorkQueue::Export, 0).await?;
    }
    tx.commit().await
}

/// Publishes pending outbox rows (the `export` messages just recorded).
async fn relay(context: &Context) {
    if let Err(error) = outbox::relay(&context.pool, &context.broker, 1_000, |_| {}).await {
        tracing::warn!(%error, "outbox relay failed; it is retried");
    }
}

/// Consumes `anonymise` until `shutdown`, `concurrency` studies at a time; in-flight
/// studies finish before it returns. Pending outbox rows (left by a failed relay) are
/// published every ten seconds besides.
pub async fn consume(context: Arc<Context>, concurrency: u16, shutdown: CancellationToken) -> anyhow::Result<()> {
    let relayer = {
        let context = Arc::clone(&context);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => relay(&context).await,
                }
            }
        })
    };
    let consumed = pixl_core::consumer::consume(&context.broker, WorkQueue::Anonymise, "pixl-anon-node", concurrency, shutdown.clone(), |delivery| {
        let context = Arc::clone(&context);
        async move {
            let handled = handle(&context, &delivery.data).await;
            let done = handled == Handled::Done;
            settle(&context.pool, &context.broker, WorkQueue::Anonymise, context.retry, &delivery, handled).await;
            if done {
                relay(&context).await;
            }
        }
    })
    .await;
    shutdown.cancel();
    let _ = relayer.await;
    Ok(consumed?)
}

/// Runs the whole node on the given listeners until `shutdown`.
pub async fn run(
    config: AnonNodeConfig,
    settings: &Settings,
    hasher: HasherClientConfig,
    dicom: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let cache = RawCache::open(&config.raw_cache_dir, config.raw_cache_max_bytes)?;
    std::fs::create_dir_all(&config.anon_store_dir)?;
    let store = AnonStore::new(&config.anon_store_dir);
    let pool = pixl_core::db::connect(&settings.database, u32::from(config.concurrency) + 2).await?;
    let broker = Broker::connect(&settings.rabbitmq, pixl_core::queues::Topology::new(settings.queue_prefix.clone())).await?;
    let context = Arc::new(Context {
        pool,
        broker,
        hasher: HasherClient::new(hasher)?,
        cache: cache.clone(),
        store: store.clone(),
        configs_dir: settings.project_configs_dir.clone(),
        retry: Retry { max_attempts: MAX_ATTEMPTS, first_pause: Duration::from_secs(2), max_pause: Duration::from_secs(60) },
    });
    let scp_config = crate::scp::ScpConfig { ae_title: config.ae_title, allowed_callers: config.allowed_callers };
    let scp = tokio::spawn(crate::scp::serve(dicom, scp_config, cache, shutdown.clone()));
    let web = tokio::spawn(pixl_core::http::serve(http, crate::archive::routes(store, context.cache.clone()), shutdown.clone()));
    let consumed = consume(Arc::clone(&context), config.concurrency, shutdown.clone()).await;
    // Whatever ended the consumer ends the node.
    shutdown.cancel();
    scp.await??;
    web.await??;
    consumed
}
