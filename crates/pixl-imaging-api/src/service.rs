//! The retrieval of one study, and the consumers of the two imaging queues.
//!
//! Per message: look the study up in Postgres (the message holds only its key); already
//! `retrieved` or later → nothing to do (a re-populate or a redelivery never retrieves
//! twice). Otherwise C-FIND in the queue's archive, by StudyInstanceUID when known, else
//! by PatientID + AccessionNumber; series-level when the cohort names series. Not in the
//! VNA → re-queued on `imaging-secondary` when a PACS is configured, else failed "not
//! found". Each match is C-MOVEd to anon-node; when every sub-operation completed, one
//! transaction sets `retrieved` (further matches become studies of their own) and queues
//! `anonymise` for each through the outbox. Only then is the message acknowledged.
//!
//! Messages are pulled (`basic.get`) one token at a time, at most
//! `PIXL_MAX_MESSAGES_IN_FLIGHT` at once; at rate 0, or outside the PACS window for the
//! secondary queue, nothing is taken and nothing polls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::BasicGetOptions;
use pixl_core::config::Settings;
use pixl_core::consumer::{Handled, Retry, load_study, settle};
use pixl_core::ids::StudyId;
use pixl_core::outbox::{self, MessageKind};
use pixl_core::queues::{Broker, WorkQueue};
use sqlx::{PgPool, Row};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::ImagingConfig;
use crate::api::Buckets;
use crate::rate::TokenBucket;
use crate::scu::{Archive, Scu, StudyQuery};

/// Everything the consumers need.
#[derive(Debug)]
pub struct Context {
    pub http: reqwest::Client,
    pub pool: PgPool,
    pub broker: Broker,
    pub scu: Scu,
    pub config: ImagingConfig,
    pub retry: Retry,
}

fn archive_for(config: &ImagingConfig, queue: WorkQueue) -> Option<&Archive> {
    match queue {
        WorkQueue::ImagingSecondary => config.secondary.as_ref(),
        _ => Some(&config.primary),
    }
}

/// Retrieves the study an `imaging` message names.
pub async fn handle(context: &Context, queue: WorkQueue, body: &[u8]) -> Handled {
    let (message, row) =
        match load_study(&context.pool, body, MessageKind::Imaging, "mrn, accession_number, study_uid, series_uids, state::text AS state").await {
            Ok(loaded) => loaded,
            Err(handled) => return handled,
        };
    let id = message.study_id;
    let state: String = row.get("state");
    if matches!(state.as_str(), "retrieved" | "anonymised" | "exported") {
        tracing::info!(study = id.0, state, "already retrieved; nothing to do");
        return Handled::Done;
    }
    let Some(archive) = archive_for(&context.config, queue) else {
        return Handled::permanent(id, "no PACS is configured for imaging-secondary");
    };
    if let Err(error) = sqlx::query("UPDATE studies SET state = 'retrieving', updated_at = now() WHERE id = $1").bind(id.0).execute(&context.pool).await {
        return Handled::transient(id, format!("database: {error}"));
    }
    let known_uid: Option<String> = row.get("study_uid");
    let series: Vec<String> = row.get("series_uids");
    let query = StudyQuery { study_uid: known_uid.clone(), patient_id: row.get("mrn"), accession_number: row.get("accession_number") };

    let started = Instant::now();
    let uids = match context.scu.find_studies(archive, &query).await {
        Ok(uids) => uids,
        Err(error) => return Handled::transient(id, error.to_string()),
    };
    if uids.is_empty() {
        if queue != WorkQueue::ImagingSecondary && context.config.secondary.is_some() {
            return match reroute(&context.pool, id).await {
                Ok(()) => {
                    tracing::info!(study = id.0, "not in the VNA; queued for the PACS");
                    metrics::counter!("pixl_imaging_rerouted_total").increment(1);
                    Handled::Done
                }
                Err(error) => Handled::transient(id, format!("database: {error}")),
            };
        }
        let searched = if context.config.secondary.is_some() { "the VNA or the PACS" } else { "the VNA" };
        return Handled::permanent(id, format!("not found in {searched}"));
    }
    let mut instances = 0u64;
    for uid in &uids {
        let mut selected = if series.is_empty() {
            Vec::new()
        } else {
            match context.scu.find_series(archive, uid, &series).await {
                Ok(found) if found.is_empty() => return Handled::permanent(id, format!("none of the cohort's {} series is in the study", series.len())),
                Ok(found) => found,
                Err(error) => return Handled::transient(id, error.to_string()),
            }
        };
        match missing_series(context, archive, uid, &selected).await {
            Ok(Missing::Nothing) => {
                tracing::info!(study = id.0, "already in the raw cache; nothing to move");
                continue;
            }
            Ok(Missing::Series(missing)) => selected = missing,
            Ok(Missing::Everything) => {}
            Err(problem) => tracing::warn!(study = id.0, %problem, "cannot tell what anon-node holds; moving everything"),
        }
        match context.scu.move_study(archive, uid, &selected, &context.config.move_destination).await {
            Ok(counts) => instances += u64::from(counts.completed),
            Err(error) => return Handled::transient(id, error.to_string()),
        }
    }
    metrics::histogram!("pixl_imaging_retrieval_seconds", "archive" => archive.name).record(started.elapsed().as_secs_f64());
    metrics::counter!("pixl_imaging_instances_moved_total", "archive" => archive.name).increment(instances);
    match record(&context.pool, id, known_uid.is_none(), &uids).await {
        Ok(()) => {
            tracing::info!(study = id.0, archive = archive.name, studies = uids.len(), instances, "study retrieved");
            metrics::counter!("pixl_imaging_studies_retrieved_total", "archive" => archive.name).increment(1);
            Handled::Done
        }
        Err(error) => Handled::transient(id, format!("database: {error}")),
    }
}

/// What of a study must still be moved.
#[derive(Debug, PartialEq, Eq)]
enum Missing {
    Nothing,
    Everything,
    Series(Vec<String>),
}

/// Compares what anon-node caches of study `uid` with what the archive holds (series and
/// instance counts), within `selected` series (empty: all).
async fn missing_series(context: &Context, archive: &Archive, uid: &str, selected: &[String]) -> Result<Missing, String> {
    let Some(base) = &context.config.anon_node_url else { return Ok(Missing::Everything) };
    #[derive(serde::Deserialize)]
    struct Cached {
        series: std::collections::BTreeMap<String, u32>,
    }
    let url = format!("{}/raw-cache/series", base.trim_end_matches('/'));
    let response = context.http.post(&url).json(&serde_json::json!({ "study_uid": uid })).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("anon-node answered {}", response.status()));
    }
    let cached = response.json::<Cached>().await.map_err(|e| e.to_string())?.series;
    if cached.is_empty() {
        return Ok(Missing::Everything);
    }
    let in_archive = context.scu.find_series_counts(archive, uid).await.map_err(|e| e.to_string())?;
    let in_scope: Vec<&(String, Option<u32>)> = in_archive.iter().filter(|(s, _)| selected.is_empty() || selected.contains(s)).collect();
    let missing: Vec<String> = in_scope
        .iter()
        .filter(|(series, count)| count.is_none_or(|count| cached.get(series).copied().unwrap_or(0) < count))
        .map(|(series, _)| series.clone())
        .collect();
    Ok(if missing.is_empty() {
        Missing::Nothing
    } else if missing.len() == in_scope.len() && selected.is_empty() {
        Missing::Everything
    } else {
        Missing::Series(missing)
    })
}

/// Back to `queued`, with a message for the PACS queue.
async fn reroute(pool: &PgPool, id: StudyId) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE studies SET state = 'queued', updated_at = now() WHERE id = $1").bind(id.0).execute(&mut *tx).await?;
    outbox::enqueue(&mut tx, id, MessageKind::Imaging, WorkQueue::ImagingSecondary, 0).await?;
    tx.commit().await
}

/// Marks the study retrieved (recording the UID found, apart from the cohort's) and queues
/// its de-identification; with several matches (found by accession number), the others
/// become studies of their own.
async fn record(pool: &PgPool, id: StudyId, uid_was_unknown: bool, uids: &[String]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE studies SET state = 'retrieved', resolved_study_uid = $2, attempts = 0, failure_reason = NULL, updated_at = now()
         WHERE id = $1 AND state NOT IN ('retrieved', 'anonymised', 'exported')",
    )
    .bind(id.0)
    .bind(&uids[0])
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 1 {
        outbox::enqueue(&mut tx, id, MessageKind::Anonymise, WorkQueue::Anonymise, 0).await?;
        if uid_was_unknown {
            for uid in &uids[1..] {
                let extra: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO studies (extract_id, project_slug, mrn, accession_number, study_uid, series_uids, study_date,
                                          procedure_occurrence_id, participant_id, state)
                     SELECT extract_id, project_slug, mrn, accession_number, $2, series_uids, study_date, procedure_occurrence_id,
                            participant_id, 'retrieved'
                     FROM studies WHERE id = $1
                     ON CONFLICT DO NOTHING RETURNING id",
                )
                .bind(id.0)
                .bind(uid)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(extra) = extra {
                    outbox::enqueue(&mut tx, StudyId(extra), MessageKind::Anonymise, WorkQueue::Anonymise, 0).await?;
                }
            }
        }
    }
    tx.commit().await
}

async fn relay(context: &Context) {
    if let Err(error) = outbox::relay(&context.pool, &context.broker, 1_000, |_| {}).await {
        tracing::warn!(%error, "outbox relay failed; it is retried");
    }
}

/// Pulls messages off `queue` until `shutdown`; in-flight studies finish first.
pub async fn consume(context: Arc<Context>, queue: WorkQueue, bucket: Arc<TokenBucket>, in_flight: usize, shutdown: CancellationToken) -> anyhow::Result<()> {
    let channel = context.broker.consumer_channel(in_flight as u16).await?;
    let name = context.broker.topology().queue_name(queue);
    let slots = Arc::new(Semaphore::new(in_flight));
    let idle = Duration::from_millis(500);
    loop {
        if queue == WorkQueue::ImagingSecondary && !context.config.secondary_window.is_open_now() {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(30)) => continue,
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = bucket.acquire() => {}
        }
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        match channel.basic_get(name.as_str().into(), BasicGetOptions { no_ack: false }).await {
            Ok(Some(message)) => {
                // Queue lag: messages still waiting behind this one.
                metrics::gauge!("pixl_imaging_queue_waiting", "queue" => queue.base_name()).set(f64::from(message.message_count));
                let context = Arc::clone(&context);
                tokio::spawn(async move {
                    let delivery = message.delivery;
                    let handled = handle(&context, queue, &delivery.data).await;
                    let done = handled == Handled::Done;
                    settle(&context.pool, &context.broker, queue, context.retry, &delivery, handled).await;
                    if done {
                        relay(&context).await;
                    }
                    drop(slot);
                });
            }
            Ok(None) => {
                metrics::gauge!("pixl_imaging_queue_waiting", "queue" => queue.base_name()).set(0.0);
                drop(slot);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(idle) => {}
                }
            }
            Err(error) => {
                drop(slot);
                tracing::warn!(%error, queue = queue.base_name(), "cannot take a message");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let _ = slots.acquire_many(in_flight as u32).await;
    let _ = channel.close(200, "shutting down".into()).await;
    Ok(())
}

/// Runs imaging-api on `http` until `shutdown`.
pub async fn run(config: ImagingConfig, settings: &Settings, http: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let in_flight = usize::from(settings.max_messages_in_flight.max(1));
    let pool = pixl_core::db::connect(&settings.database, in_flight as u32 + 2).await?;
    let broker = Broker::connect(&settings.rabbitmq, pixl_core::queues::Topology::new(settings.queue_prefix.clone())).await?;
    let buckets = Buckets { primary: Arc::new(TokenBucket::new(config.rate)), secondary: Arc::new(TokenBucket::new(config.rate)) };
    let scu = Scu { calling_ae_title: config.calling_ae_title.clone(), query_timeout: config.query_timeout, transfer_timeout: config.transfer_timeout };
    let retry = Retry { max_attempts: config.max_attempts, first_pause: config.retry_pause, max_pause: Duration::from_secs(300) };
    let has_secondary = config.secondary.is_some();
    let http_client = pixl_core::http_client::builder(None)?.timeout(Duration::from_secs(30)).build()?;
    let context = Arc::new(Context { http: http_client, pool, broker, scu, config, retry });
    relay(&context).await;
    let web = tokio::spawn(pixl_core::http::serve(http, crate::api::routes(buckets.clone()), shutdown.clone()));
    let primary = tokio::spawn(consume(Arc::clone(&context), WorkQueue::ImagingPrimary, buckets.primary.clone(), in_flight, shutdown.clone()));
    let secondary = has_secondary.then(|| tokio::spawn(consume(Arc::clone(&context), WorkQueue::ImagingSecondary, buckets.secondary.clone(), in_flight, shutdown.clone())));
    let primary_result = primary.await?;
    shutdown.cancel();
    if let Some(secondary) = secondary {
        secondary.await??;
    }
    web.await??;
    primary_result
}
