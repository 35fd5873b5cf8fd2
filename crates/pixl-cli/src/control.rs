//! Pipeline control: `pixl start|stop|update` (imaging-api's token buckets, PIXL's
//! `/token-bucket-refresh-rate`), `pixl status` (from Postgres and RabbitMQ) and
//! `pixl retry-failed`. Output holds counts, states and failure reasons, which pixl
//! writes without identifiers.

use std::collections::BTreeMap;
use std::fmt;

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueuePurgeOptions};
use pixl_core::config::Settings;
use pixl_core::ids::StudyId;
use pixl_core::messages::QueueMessage;
use pixl_core::outbox::{self, MessageKind};
use pixl_core::queues::{Broker, Topology, WorkQueue};
use pixl_core::state::{Changes, StudyState};
use sqlx::{PgPool, Row};

/// imaging-api's address: `IMAGING_API_URL`, else PIXL's `PIXL_IMAGING_API_HOST` and
/// `PIXL_IMAGING_API_PORT`, else `http://127.0.0.1:8001`.
pub fn imaging_api_url() -> String {
    pixl_core::pixl_env::cli_service_url(
        |name| std::env::var(name).ok(),
        "IMAGING_API_URL",
        "PIXL_IMAGING_API_HOST",
        "PIXL_IMAGING_API_PORT",
        "http://127.0.0.1:8001",
    )
}

/// Sets the rate of `queues` at imaging-api (0 pauses).
pub async fn set_rate(base_url: &str, queues: &[WorkQueue], rate: f64) -> anyhow::Result<()> {
    let client = pixl_core::http_client::builder(None)?.timeout(std::time::Duration::from_secs(10)).build()?;
    for queue in queues {
        let url = format!("{}/token-bucket-refresh-rate", base_url.trim_end_matches('/'));
        let response = client
            .post(&url)
            .json(&serde_json::json!({ "rate": rate, "queue": queue.base_name() }))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("imaging-api at {base_url} is not reachable ({e}); is it running?"))?;
        if !response.status().is_success() {
            anyhow::bail!("imaging-api refused the rate for {}: {} {}", queue.base_name(), response.status(), response.text().await.unwrap_or_default());
        }
    }
    Ok(())
}

/// Empties `queues` and marks the studies whose messages were dropped as failed ("purged"),
/// so that they are visible and `pixl retry-failed` can queue them again. Returns how many
/// messages were purged.
pub async fn purge(settings: &Settings, queues: &[WorkQueue]) -> anyhow::Result<u64> {
    let pool = pixl_core::db::connect(&settings.database, 2).await?;
    let broker = Broker::connect(&settings.rabbitmq, Topology::new(settings.queue_prefix.clone())).await?;
    let channel = broker.open_channel().await?;
    let mut purged = 0u64;
    let mut conn = pool.acquire().await?;
    for queue in queues {
        let name = broker.topology().queue_name(*queue);
        purged += u64::from(channel.queue_purge(name.as_str().into(), QueuePurgeOptions::default()).await?);
        // Only the studies whose next message was on this queue lost it.
        pixl_core::state::fail_waiting(&mut conn, *queue, "purged by pixl stop --purge").await?;
    }
    drop(conn);
    let _ = channel.close(200, "done".into()).await;
    broker.close().await;
    Ok(purged)
}

/// What `pixl status` shows.
#[derive(Debug)]
pub struct Status {
    /// project → state → studies.
    pub studies: BTreeMap<String, BTreeMap<String, i64>>,
    /// project → (reason, studies), most frequent first.
    pub failures: BTreeMap<String, Vec<(String, i64)>>,
    /// queue → (ready messages, dead letters).
    pub queues: Vec<(String, u32, u32)>,
    /// queue → messages waiting in its delay queues (retries not yet due).
    pub delayed: Vec<(String, u32)>,
    /// Outbox rows moved aside because they could not become messages.
    pub rejected_outbox_rows: i64,
    /// project → EHR state (`pending` for studies ehr-api has not handled yet) → studies.
    pub ehr: BTreeMap<String, BTreeMap<String, i64>>,
    /// anon-node's stores (`ANON_NODE_URL`/stores), or why they could not be read.
    pub stores: Result<StoreUse, String>,
}

/// Disk use of anon-node's raw cache and anon store.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct StoreUse {
    pub raw_cache: RawCacheUse,
    pub anon_store: AnonStoreUse,
}

#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct RawCacheUse {
    pub bytes: u64,
    pub max_bytes: u64,
    pub studies: u64,
    pub in_progress: u64,
    pub accepting: bool,
}

#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct AnonStoreUse {
    pub bytes: u64,
    pub studies: u64,
}

/// anon-node's address: `ANON_NODE_URL` (default `http://127.0.0.1:8002`).
pub fn anon_node_url() -> String {
    pixl_core::pixl_env::process_lookup("ANON_NODE_URL").unwrap_or_else(|| "http://127.0.0.1:8002".to_owned())
}

/// anon-node's `/stores`.
async fn stores(url: &str) -> Result<StoreUse, String> {
    let client =
        pixl_core::http_client::builder(None).map_err(|e| e.to_string())?.timeout(std::time::Duration::from_secs(5)).build().map_err(|e| e.to_string())?;
    let response = client
        .get(format!("{}/stores", url.trim_end_matches('/')))
        .send()
        .await
        .map_err(|e| format!("anon-node at {url} is not reachable ({})", e.without_url()))?;
    if !response.status().is_success() {
        return Err(format!("anon-node at {url} answered {}", response.status()));
    }
    response.json().await.map_err(|_| format!("anon-node at {url} answered something else than its store sizes"))
}

/// The pipeline's state; `anon_node_url` is where anon-node answers `/stores` (disk use).
pub async fn status(settings: &Settings, anon_node_url: &str) -> anyhow::Result<Status> {
    let pool = pixl_core::db::connect(&settings.database, 2).await?;
    let broker = Broker::connect(&settings.rabbitmq, Topology::new(settings.queue_prefix.clone())).await?;
    let mut status = Status {
        studies: BTreeMap::new(),
        failures: BTreeMap::new(),
        queues: Vec::new(),
        delayed: Vec::new(),
        rejected_outbox_rows: sqlx::query_scalar("SELECT count(*) FROM outbox_rejected").fetch_one(&pool).await?,
        ehr: BTreeMap::new(),
        stores: stores(anon_node_url).await,
    };
    for row in sqlx::query(
        "SELECT project_slug, COALESCE(ehr_state::text, 'pending') AS state, count(*) AS n FROM studies
         WHERE ehr_wanted OR ehr_state IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await?
    {
        status.ehr.entry(row.get("project_slug")).or_default().insert(row.get("state"), row.get("n"));
    }
    for row in sqlx::query("SELECT project_slug, ehr_failure_reason, count(*) AS n FROM studies WHERE ehr_state = 'failed' GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2")
        .fetch_all(&pool)
        .await?
    {
        let reasons = status.failures.entry(row.get("project_slug")).or_default();
        if reasons.len() < 8 {
            reasons.push((format!("EHR: {}", row.get::<Option<String>, _>("ehr_failure_reason").unwrap_or_default()), row.get("n")));
        }
    }
    for row in sqlx::query("SELECT project_slug, state::text AS state, count(*) AS n FROM studies GROUP BY 1, 2 ORDER BY 1, 2").fetch_all(&pool).await? {
        status.studies.entry(row.get("project_slug")).or_default().insert(row.get("state"), row.get("n"));
    }
    for row in sqlx::query("SELECT project_slug, failure_reason, count(*) AS n FROM studies WHERE state = 'failed' GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2")
        .fetch_all(&pool)
        .await?
    {
        let reasons = status.failures.entry(row.get("project_slug")).or_default();
        if reasons.len() < 5 {
            reasons.push((row.get::<Option<String>, _>("failure_reason").unwrap_or_default(), row.get("n")));
        }
    }
    for queue in WorkQueue::ALL {
        let ready = broker.counts(&broker.topology().queue_name(queue)).await?.messages;
        let dead = broker.counts(&broker.topology().dead_letter_queue_name(queue)).await?.messages;
        status.queues.push((queue.base_name().to_owned(), ready, dead));
        status.delayed.push((queue.base_name().to_owned(), broker.delayed(queue).await?));
    }
    broker.close().await;
    pool.close().await;
    Ok(status)
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const STATES: [&str; 6] = ["queued", "retrieving", "retrieved", "anonymised", "exported", "failed"];
        if self.studies.is_empty() {
            writeln!(f, "no studies yet (pixl populate queues a cohort)")?;
        } else {
            write!(f, "{:<32}", "project")?;
            for state in STATES {
                write!(f, " {state:>10}")?;
            }
            writeln!(f)?;
            for (project, states) in &self.studies {
                write!(f, "{project:<32}")?;
                for state in STATES {
                    write!(f, " {:>10}", states.get(state).copied().unwrap_or(0))?;
                }
                writeln!(f)?;
            }
        }
        writeln!(f, "\n{:<20} {:>8} {:>12} {:>14}", "queue", "waiting", "dead-letter", "retry pending")?;
        for ((queue, ready, dead), (_, delayed)) in self.queues.iter().zip(&self.delayed) {
            writeln!(f, "{queue:<20} {ready:>8} {dead:>12} {delayed:>14}")?;
        }
        if !self.ehr.is_empty() {
            const EHR_STATES: [&str; 5] = ["pending", "done", "flagged", "no_record", "failed"];
            write!(f, "\n{:<32}", "EHR (ehr-api)")?;
            for state in EHR_STATES {
                write!(f, " {state:>10}")?;
            }
            writeln!(f)?;
            for (project, states) in &self.ehr {
                write!(f, "{project:<32}")?;
                for state in EHR_STATES {
                    write!(f, " {:>10}", states.get(state).copied().unwrap_or(0))?;
                }
                writeln!(f)?;
            }
            if self.ehr.values().any(|s| s.get("flagged").is_some_and(|n| *n > 0)) {
                writeln!(f, "flagged reports wait for review: pixl reports list")?;
            }
        }
        if self.rejected_outbox_rows > 0 {
            writeln!(f, "\n{} outbox row(s) could not become messages (table outbox_rejected; their studies failed)", self.rejected_outbox_rows)?;
        }
        match &self.stores {
            Ok(stores) => {
                let raw = &stores.raw_cache;
                let bound = if raw.max_bytes == 0 { "unbounded".to_owned() } else { format!("of {}", megabytes(raw.max_bytes)) };
                writeln!(
                    f,
                    "\nraw cache:   {} {bound}, {} studies ({} waiting for de-identification){}",
                    megabytes(raw.bytes),
                    raw.studies,
                    raw.in_progress,
                    if raw.accepting { "" } else { "; FULL: retrieval waits" }
                )?;
                writeln!(f, "anon store:  {}, {} studies", megabytes(stores.anon_store.bytes), stores.anon_store.studies)?;
            }
            Err(problem) => writeln!(f, "\nstores: {problem}")?,
        }
        if !self.failures.is_empty() {
            writeln!(f, "\nfailures (most frequent reasons):")?;
            for (project, reasons) in &self.failures {
                for (reason, count) in reasons {
                    writeln!(f, "  {project}: {count} × {reason}")?;
                }
            }
        }
        Ok(())
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

/// Queues failed studies (of `project`, or all) again, and removes their dead letters.
/// A study that failed at export resumes there (its de-identified copy waits in
/// anon-node's store); any other starts again from retrieval, which skips what anon-node
/// still caches. Returns how many studies were queued.
pub async fn retry_failed(settings: &Settings, project: Option<&str>) -> anyhow::Result<u64> {
    let pool = pixl_core::db::connect(&settings.database, 2).await?;
    let broker = Broker::connect(&settings.rabbitmq, Topology::new(settings.queue_prefix.clone())).await?;
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT id, (failed_queue = 'export' AND pseudo_study_uid IS NOT NULL) AS at_export FROM studies
         WHERE state = 'failed' AND ($1::text IS NULL OR project_slug = $1) ORDER BY id FOR UPDATE",
    )
    .bind(project)
    .fetch_all(&mut *tx)
    .await?;
    let mut ids = Vec::with_capacity(rows.len());
    for row in &rows {
        let id = StudyId(row.get("id"));
        let (to, kind, queue, priority) = if row.get::<bool, _>("at_export") {
            (StudyState::Anonymised, MessageKind::Export, WorkQueue::Export, 0)
        } else {
            (StudyState::Queued, MessageKind::Imaging, WorkQueue::ImagingPrimary, 1)
        };
        if pixl_core::state::transition(&mut tx, id, to, &Changes::default()).await? {
            sqlx::query("UPDATE studies SET raw_refetches = 0 WHERE id = $1").bind(id.0).execute(&mut *tx).await?;
            outbox::enqueue(&mut tx, id, kind, queue, priority).await?;
            ids.push(id.0);
        }
    }
    // Studies whose EHR failed are queued for ehr-api again.
    let ehr_rows: Vec<i64> = sqlx::query_scalar(
        "UPDATE studies SET ehr_state = NULL, ehr_failure_reason = NULL
         WHERE ehr_state = 'failed' AND ($1::text IS NULL OR project_slug = $1) RETURNING id",
    )
    .bind(project)
    .fetch_all(&mut *tx)
    .await?;
    for id in &ehr_rows {
        outbox::enqueue(&mut tx, StudyId(*id), MessageKind::Ehr, WorkQueue::Ehr, 0).await?;
    }
    tx.commit().await?;
    outbox::relay(&pool, &broker, 1_000, |_| {}).await?;
    let ehr_retried: std::collections::BTreeSet<i64> = ehr_rows.iter().copied().collect();

    // Their dead letters are settled now: take them off; leave every other one.
    let retried: std::collections::BTreeSet<i64> = ids.iter().copied().collect();
    let channel = broker.open_channel().await?;
    for queue in WorkQueue::ALL {
        let name = broker.topology().dead_letter_queue_name(queue);
        let mut keep = Vec::new();
        while let Some(message) = channel.basic_get(name.as_str().into(), BasicGetOptions { no_ack: false }).await? {
            let delivery = message.delivery;
            let retried = if queue == WorkQueue::Ehr { &ehr_retried } else { &retried };
            let ours = QueueMessage::decode(&delivery.data).is_ok_and(|m| retried.contains(&m.study_id().0));
            if ours {
                delivery.acker.ack(BasicAckOptions::default()).await?;
            } else {
                keep.push(delivery);
            }
        }
        for delivery in keep {
            delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await?;
        }
    }
    let _ = channel.close(200, "done".into()).await;
    broker.close().await;
    pool.close().await;
    Ok((ids.len() + ehr_retried.len()) as u64)
}

/// PIXL's `pixl status --queues`: each queue's retrieval rate at imaging-api, or why it is
/// unknown.
pub async fn rates(base_url: &str, queues: &[WorkQueue]) -> String {
    let mut out = String::from("\n");
    let client = match pixl_core::http_client::builder(None).map(|b| b.timeout(std::time::Duration::from_secs(5)).build()) {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => return format!("\nrates unknown: {error}\n"),
        Err(error) => return format!("\nrates unknown: {error}\n"),
    };
    for queue in queues {
        let url = format!("{}/token-bucket-refresh-rate", base_url.trim_end_matches('/'));
        let rate = match client.get(&url).query(&[("queue", queue.base_name())]).send().await {
            Ok(response) if response.status().is_success() => match response.json::<serde_json::Value>().await {
                Ok(body) => {
                    body.get("rate").and_then(|r| r.as_f64()).map(|r| format!("{r} studies/s")).unwrap_or_else(|| "unknown (unexpected answer)".to_owned())
                }
                Err(_) => "unknown (unexpected answer)".to_owned(),
            },
            Ok(response) => format!("unknown (imaging-api answered {})", response.status()),
            Err(error) => format!("unknown (imaging-api at {base_url} is not reachable: {})", error.without_url()),
        };
        out.push_str(&format!("[{:^18}] refresh rate = {rate}\n", queue.base_name()));
    }
    out
}

/// `pixl populate --num-retries`: how many rounds, the pause before each, how often to
/// look whether the cohort's studies are still in progress.
#[derive(Debug, Clone)]
pub struct RetryRounds {
    pub rounds: u32,
    pub pause: std::time::Duration,
    pub poll: std::time::Duration,
}

/// PIXL's retry rounds, for `projects`: wait until none of their studies is in progress,
/// pause, then queue the failed ones again. Stops early once nothing has failed, or when
/// a round exported nothing new (trying again would fail the same way). `say` gets one
/// line per round.
pub async fn retry_rounds(
    settings: &Settings,
    projects: &[pixl_core::ids::ProjectSlug],
    rounds: &RetryRounds,
    mut say: impl FnMut(String),
) -> anyhow::Result<()> {
    let pool = pixl_core::db::connect(&settings.database, 1).await?;
    let slugs: Vec<String> = projects.iter().map(|p| p.as_str().to_owned()).collect();
    let count = |states: &'static [&'static str]| {
        let pool = pool.clone();
        let slugs = slugs.clone();
        async move {
            let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM studies WHERE project_slug = ANY($1) AND state::text = ANY($2)")
                .bind(&slugs)
                .bind(&states)
                .fetch_one(&pool)
                .await
        }
    };
    let mut exported_before: Option<i64> = None;
    for round in 1..=rounds.rounds {
        while count(&["queued", "retrieving", "retrieved", "anonymised"]).await? > 0 {
            tokio::time::sleep(rounds.poll).await;
        }
        if count(&["failed"]).await? == 0 {
            say("retries: no study of the cohort's projects has failed".to_owned());
            break;
        }
        tokio::time::sleep(rounds.pause).await;
        let exported = count(&["exported"]).await?;
        if exported_before == Some(exported) {
            say(format!("retries: round {round} exported nothing new; stopping (pixl status shows why studies failed)"));
            break;
        }
        exported_before = Some(exported);
        let mut queued = 0;
        for project in &slugs {
            queued += retry_failed(settings, Some(project)).await?;
        }
        say(format!("retries: round {round} of {}: queued {queued} failed studies again", rounds.rounds));
    }
    pool.close().await;
    Ok(())
}

/// The studies table, for tests and the demo summary.
pub async fn counts_by_state(pool: &PgPool) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    Ok(sqlx::query("SELECT state::text AS state, count(*) AS n FROM studies GROUP BY 1")
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|r| (r.get("state"), r.get("n")))
        .collect())
}
