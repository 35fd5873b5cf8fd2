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
use pixl_core::consumer::{Handled, Retry, Settler, claim_study};
use pixl_core::ids::{AccessionNumber, Mrn, SeriesUid, StudyId, StudyUid};
use pixl_core::outbox::{self, MessageKind};
use pixl_core::project_config::StudiesPerAccession;
use pixl_core::queues::{Broker, WorkQueue};
use pixl_core::retry::Backoff;
use pixl_core::state::{self, Changes, StudyState};
use sqlx::Row;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::ImagingConfig;
use crate::api::Buckets;
use crate::rate::TokenBucket;
use crate::scu::{Archive, Scu, StudyQuery};

/// How long a study waits when anon-node's raw cache is full (not counted as an attempt).
pub const CACHE_FULL_PAUSE: Duration = Duration::from_secs(8);

/// Everything the consumers need.
#[derive(Debug)]
pub struct Context {
    pub http: reqwest::Client,
    pub pool: sqlx::PgPool,
    pub broker: Broker,
    pub scu: Scu,
    pub config: ImagingConfig,
    pub retry: Retry,
    /// Project configs, for `studies_per_accession`.
    pub configs_dir: std::path::PathBuf,
}

fn archive_for(config: &ImagingConfig, queue: WorkQueue) -> Option<&Archive> {
    match queue {
        WorkQueue::ImagingSecondary => config.secondary.as_ref(),
        _ => Some(&config.primary),
    }
}

type Lock = pixl_core::consumer::StudyLock;

/// Retrieves the study an `imaging` message names.
#[tracing::instrument(skip_all, fields(study))]
pub async fn handle(context: &Context, queue: WorkQueue, body: &[u8]) -> Handled {
    let claimed = match claim_study(&context.pool, body, MessageKind::Imaging, "mrn, accession_number, study_uid, series_uids, state::text AS state").await {
        Ok(claimed) => claimed,
        Err(handled) => return handled,
    };
    let (message, row, lock) = (claimed.study, claimed.row, claimed.lock);
    let id = message.study_id;
    tracing::Span::current().record("study", id.0);
    let state = StudyState::parse(row.get("state"));
    match state {
        Some(StudyState::Queued | StudyState::Retrieving) => {}
        Some(state) if state.is_past(queue) => {
            tracing::info!(study = id.0, ?state, "already retrieved; nothing to do");
            return Handled::Done;
        }
        other => {
            // Failed meanwhile (purged, given up): `pixl retry-failed` queues it afresh.
            tracing::warn!(study = id.0, state = ?other, "retrieval asked for a study that is not queued; nothing to do");
            return Handled::Done;
        }
    }
    let Some(archive) = archive_for(&context.config, queue) else {
        return Handled::permanent(id, "no PACS is configured for imaging-secondary");
    };
    let Ok(patient_id) = Mrn::parse(row.get("mrn")) else { return Handled::permanent(id, "the study's MRN is not valid") };
    let parse_optional = |column: &str| row.get::<Option<String>, _>(column);
    let Ok(accession_number) = parse_optional("accession_number").map(|a| AccessionNumber::parse(&a)).transpose() else {
        return Handled::permanent(id, "the study's accession number is not valid");
    };
    let Ok(known_uid) = parse_optional("study_uid").map(|u| StudyUid::parse(&u)).transpose() else {
        return Handled::permanent(id, "the study's StudyInstanceUID is not valid");
    };
    let Ok(series) = row.get::<Vec<String>, _>("series_uids").iter().map(|s| SeriesUid::parse(s)).collect::<Result<Vec<_>, _>>() else {
        return Handled::permanent(id, "a series UID of the study is not valid");
    };
    let query = StudyQuery { study_uid: known_uid.clone(), patient_id, accession_number };
    let mark_retrieving = async {
        let mut conn = context.pool.acquire().await?;
        state::transition(&mut conn, id, StudyState::Retrieving, &Changes::default()).await
    };
    if let Err(error) = mark_retrieving.await {
        return Handled::database(id, &error);
    }

    let started = Instant::now();
    let uids = match context.scu.find_studies(archive, &query).await {
        Ok(uids) => uids,
        Err(error) => return Handled::transient(id, error.to_string()),
    };
    if uids.is_empty() {
        if queue != WorkQueue::ImagingSecondary && context.config.secondary.is_some() {
            return match reroute(lock, id).await {
                Ok(()) => {
                    tracing::info!(study = id.0, "not in the VNA; queued for the PACS");
                    metrics::counter!("pixl_imaging_rerouted_total").increment(1);
                    relay(context).await;
                    Handled::Done
                }
                Err(error) => Handled::database(id, &error),
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
            Ok(Missing::CacheFull) => return cache_full(id),
            Ok(Missing::Series(missing)) => selected = missing,
            Ok(Missing::Everything) => {}
            Err(problem) => tracing::warn!(study = id.0, %problem, "cannot tell what anon-node holds; moving everything"),
        }
        match context.scu.move_study(archive, uid, &selected, &context.config.move_destination).await {
            Ok(counts) => instances += u64::from(counts.completed),
            Err(error) => {
                // Refused sub-operations while anon-node is full are backpressure, not a failure.
                if matches!(missing_series(context, archive, uid, &selected).await, Ok(Missing::CacheFull)) {
                    return cache_full(id);
                }
                return Handled::transient(id, error.to_string());
            }
        }
    }
    metrics::histogram!("pixl_imaging_retrieval_seconds", "archive" => archive.name.clone()).record(started.elapsed().as_secs_f64());
    metrics::counter!("pixl_imaging_instances_moved_total", "archive" => archive.name.clone()).increment(instances);
    // Several matches: separate studies, or (the project says so, as PIXL) one.
    let merge = uids.len() > 1
        && match pixl_core::project_config::load_project(&context.configs_dir, &message.project) {
            Ok(project) => project.config.studies_per_accession == StudiesPerAccession::One,
            Err(error) => return Handled::permanent(id, format!("project {}: {error}", message.project)),
        };
    match record(lock, id, known_uid.is_none(), merge, &uids).await {
        Ok(()) => {
            tracing::info!(study = id.0, archive = %archive.name, studies = uids.len(), instances, "study retrieved");
            metrics::counter!("pixl_imaging_studies_retrieved_total", "archive" => archive.name.clone()).increment(1);
            relay(context).await;
            Handled::Done
        }
        Err(error) => Handled::database(id, &error),
    }
}

fn cache_full(id: StudyId) -> Handled {
    metrics::counter!("pixl_imaging_backpressure_total").increment(1);
    Handled::Deferred { study: id, reason: "anon-node's raw cache is full; waiting for it to de-identify what it holds".to_owned(), after: CACHE_FULL_PAUSE }
}

/// What of a study must still be moved.
#[derive(Debug, PartialEq, Eq)]
enum Missing {
    Nothing,
    Everything,
    Series(Vec<SeriesUid>),
    /// The raw cache takes no new study now.
    CacheFull,
}

/// Compares what anon-node caches of study `uid` with what the archive holds (series and
/// instance counts), within `selected` series (empty: all).
async fn missing_series(context: &Context, archive: &Archive, uid: &StudyUid, selected: &[SeriesUid]) -> Result<Missing, String> {
    let Some(base) = &context.config.anon_node_url else { return Ok(Missing::Everything) };
    #[derive(serde::Deserialize)]
    struct Cached {
        series: std::collections::BTreeMap<String, u32>,
        #[serde(default = "accepting_by_default")]
        accepting: bool,
    }
    fn accepting_by_default() -> bool {
        true
    }
    let url = format!("{}/raw-cache/series", base.trim_end_matches('/'));
    let mut request = context.http.post(&url).json(&serde_json::json!({ "study_uid": uid.expose() }));
    if let Some(token) = &context.config.anon_node_token {
        use secrecy::ExposeSecret;
        request = request.bearer_auth(token.expose_secret());
    }
    let response = request.send().await.map_err(|e| e.without_url().to_string())?;
    if !response.status().is_success() {
        return Err(format!("anon-node answered {}", response.status()));
    }
    let cached = response.json::<Cached>().await.map_err(|_| "anon-node's answer cannot be read".to_owned())?;
    if cached.series.is_empty() {
        return Ok(if cached.accepting { Missing::Everything } else { Missing::CacheFull });
    }
    let in_archive = context.scu.find_series_counts(archive, uid).await.map_err(|e| e.to_string())?;
    let in_scope: Vec<&(SeriesUid, Option<u32>)> = in_archive.iter().filter(|(s, _)| selected.is_empty() || selected.contains(s)).collect();
    let missing: Vec<SeriesUid> = in_scope
        .iter()
        .filter(|(series, count)| count.is_none_or(|count| cached.series.get(series.expose()).copied().unwrap_or(0) < count))
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
async fn reroute(mut lock: Lock, id: StudyId) -> Result<(), sqlx::Error> {
    if state::transition(&mut lock, id, StudyState::Queued, &Changes::default()).await? {
        outbox::enqueue(&mut lock, id, MessageKind::Imaging, WorkQueue::ImagingSecondary, 0).await?;
    }
    lock.commit().await
}

/// Marks the study retrieved (recording the UID found, apart from the cohort's) and queues
/// its de-identification; with several matches (found by accession number), the others
/// become studies of their own, or with `merge` are recorded to be de-identified into this
/// one.
async fn record(mut lock: Lock, id: StudyId, uid_was_unknown: bool, merge: bool, uids: &[StudyUid]) -> Result<(), sqlx::Error> {
    let changes = Changes { resolved_study_uid: Some(uids[0].expose()), ..Default::default() };
    if state::transition(&mut lock, id, StudyState::Retrieved, &changes).await? {
        outbox::enqueue(&mut lock, id, MessageKind::Anonymise, WorkQueue::Anonymise, 0).await?;
        // Always written: a retrieval again (the raw instances were evicted) replaces what
        // an earlier one recorded.
        let merged: Vec<String> = if merge { uids[1..].iter().map(|u| u.expose().to_owned()).collect() } else { Vec::new() };
        sqlx::query("UPDATE studies SET merged_study_uids = $2 WHERE id = $1").bind(id.0).bind(merged).execute(&mut *lock).await?;
        if !merge && uid_was_unknown {
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
                .bind(uid.expose())
                .fetch_optional(&mut *lock)
                .await?;
                if let Some(extra) = extra {
                    outbox::enqueue(&mut lock, StudyId(extra), MessageKind::Anonymise, WorkQueue::Anonymise, 0).await?;
                }
            }
        }
    }
    lock.commit().await
}

async fn relay(context: &Context) {
    outbox::relay_now(&context.pool, &context.broker).await;
}

/// Pulls messages off `queue` until `shutdown` (one per token of `bucket`, at most
/// `in_flight` at once) and handles each; reconnects by itself when the broker goes away.
/// In-flight studies get the grace period to finish.
pub async fn consume(context: Arc<Context>, queue: WorkQueue, bucket: Arc<TokenBucket>, in_flight: usize, grace: Duration, shutdown: CancellationToken) {
    let settler = Settler { pool: context.pool.clone(), broker: context.broker.clone(), queue, retry: context.retry };
    let name = context.broker.topology().queue_name(queue);
    let slots = Arc::new(Semaphore::new(in_flight));
    let idle = Duration::from_millis(500);
    let mut pauses = Backoff::new(Duration::from_millis(500), Duration::from_secs(30)).iter();
    let mut tasks = tokio::task::JoinSet::new();
    let mut channel = None;
    loop {
        while tasks.try_join_next().is_some() {}
        if queue == WorkQueue::ImagingSecondary && !context.config.secondary_window.is_open_now() {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(30)) => continue,
            }
        }
        let open = match channel.take() {
            Some(open) => Ok(open),
            None => context.broker.consumer_channel(in_flight as u16).await,
        };
        let current = match open {
            Ok(current) => current,
            Err(error) => {
                let pause = pauses.next().unwrap_or_default();
                tracing::warn!(queue = queue.base_name(), %error, retry_in_s = pause.as_secs_f64(), "cannot take messages; RabbitMQ is unreachable");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = bucket.acquire() => {}
        }
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        match current.basic_get(name.as_str().into(), BasicGetOptions { no_ack: false }).await {
            Ok(Some(message)) => {
                if pauses.attempts() > 0 {
                    tracing::info!(queue = queue.base_name(), "taking messages again after losing RabbitMQ");
                    pauses.reset();
                }
                // Queue lag: messages still waiting behind this one.
                metrics::gauge!("pixl_imaging_queue_waiting", "queue" => queue.base_name()).set(f64::from(message.message_count));
                let (context, settler) = (Arc::clone(&context), settler.clone());
                tasks.spawn(async move {
                    let delivery = message.delivery;
                    let body = delivery.data.clone();
                    settler.run(delivery, handle(&context, queue, &body)).await;
                    drop(slot);
                });
                channel = Some(current);
            }
            Ok(None) => {
                metrics::gauge!("pixl_imaging_queue_waiting", "queue" => queue.base_name()).set(0.0);
                drop(slot);
                channel = Some(current);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(idle) => {}
                }
            }
            Err(_) => {
                // The channel (or the connection) is gone: a new one next time round.
                drop(slot);
                let pause = pauses.next().unwrap_or_default();
                tracing::warn!(
                    queue = queue.base_name(),
                    retry_in_s = pause.as_secs_f64(),
                    "lost the connection to RabbitMQ; taking messages again when it is back"
                );
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    pixl_core::consumer::drain(&mut tasks, grace, queue).await;
    if let Some(channel) = channel {
        let _ = channel.close(200, "shutting down".into()).await;
    }
}

/// Why imaging-api could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    #[error(transparent)]
    Database(#[from] pixl_core::db::DbError),
    #[error(transparent)]
    Broker(#[from] pixl_core::queues::BrokerError),
    #[error("HTTP client: {0}")]
    Http(String),
    #[error("{0} stopped: {1}")]
    Task(&'static str, String),
}

/// Runs imaging-api on `http` until `shutdown`.
pub async fn run(config: ImagingConfig, settings: &Settings, http: TcpListener, shutdown: CancellationToken) -> Result<(), RunFailure> {
    let in_flight = usize::from(settings.max_messages_in_flight.max(1));
    // Each retrieval holds a connection for its lock and needs another.
    let pool = pixl_core::db::connect(&settings.database, in_flight as u32 * 4 + 4).await?;
    let broker = Broker::connect(&settings.rabbitmq, pixl_core::queues::Topology::new(settings.queue_prefix.clone())).await?;
    let buckets = Buckets { primary: Arc::new(TokenBucket::new(config.rate)), secondary: Arc::new(TokenBucket::new(config.rate)) };
    let scu = Scu { calling_ae_title: config.calling_ae_title.clone(), query_timeout: config.query_timeout, transfer_timeout: config.transfer_timeout };
    let retry = Retry { max_attempts: config.max_attempts, backoff: Backoff::new(config.retry_pause, Duration::from_secs(300)) };
    let has_secondary = config.secondary.is_some();
    let http_client = pixl_core::http_client::builder(None)
        .map_err(|e| RunFailure::Http(e.to_string()))?
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| RunFailure::Http(e.to_string()))?;
    let health = pixl_core::http::Health::default();
    health.watch_broker(&broker);
    health.watch_database(&pool, shutdown.clone());
    let context = Arc::new(Context {
        http: http_client,
        pool: pool.clone(),
        broker: broker.clone(),
        scu,
        config,
        retry,
        configs_dir: settings.project_configs_dir.clone(),
    });
    relay(&context).await;
    let relayer = tokio::spawn(outbox::relay_forever(pool, broker, Duration::from_secs(10), shutdown.clone()));
    let web = tokio::spawn(pixl_core::http::serve(http, crate::api::routes(buckets.clone(), health), shutdown.clone()));
    let grace = settings.shutdown_grace;
    let primary = tokio::spawn(consume(Arc::clone(&context), WorkQueue::ImagingPrimary, buckets.primary.clone(), in_flight, grace, shutdown.clone()));
    let secondary = has_secondary
        .then(|| tokio::spawn(consume(Arc::clone(&context), WorkQueue::ImagingSecondary, buckets.secondary.clone(), in_flight, grace, shutdown.clone())));
    let primary_result = primary.await;
    shutdown.cancel();
    if let Some(secondary) = secondary {
        secondary.await.map_err(|e| RunFailure::Task("imaging-secondary consumer", e.to_string()))?;
    }
    let _ = relayer.await;
    web.await.map_err(|e| RunFailure::Task("HTTP server", e.to_string()))?.map_err(|e| RunFailure::Task("HTTP server", e.to_string()))?;
    primary_result.map_err(|e| RunFailure::Task("imaging-primary consumer", e.to_string()))
}
