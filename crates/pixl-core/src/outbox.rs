//! The transactional outbox: a message is written to Postgres in the same transaction as
//! the state change it announces, then published by [`relay`] and deleted once RabbitMQ
//! has confirmed it. A crash between publish and delete republishes the message, which
//! consumers tolerate because they are idempotent; nothing is ever lost.

use sqlx::{PgConnection, PgPool, Row};

use crate::ids::{ProjectSlug, PseudoStudyUid, StudyId};
use crate::messages::{ExportRequest, QueueMessage, StudyRef};
use crate::queues::{Broker, BrokerError, Outgoing, WorkQueue};

/// What an outbox row will become on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Imaging,
    Anonymise,
    Export,
    Ehr,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Imaging => "imaging",
            Self::Anonymise => "anonymise",
            Self::Export => "export",
            Self::Ehr => "ehr",
        }
    }
}

/// The relay could not publish.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox query failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Adds one message to the outbox, inside the caller's transaction.
pub async fn enqueue(conn: &mut PgConnection, study: StudyId, kind: MessageKind, queue: WorkQueue, priority: u8) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO outbox (study_id, kind, queue, priority) VALUES ($1, $2, $3, $4)")
        .bind(study.0)
        .bind(kind.as_str())
        .bind(queue.base_name())
        .bind(i16::from(priority))
        .execute(&mut *conn)
        .await?;
    if queue == WorkQueue::Ehr {
        // The EHR runs beside the imaging path: `waiting_queue` is the imaging path's.
        return Ok(());
    }
    sqlx::query("UPDATE studies SET waiting_queue = $2 WHERE id = $1").bind(study.0).bind(queue.base_name()).execute(conn).await?;
    Ok(())
}

/// Messages not yet published.
pub async fn pending(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(pool).await
}

/// Publishes every pending message, `batch_size` at a time, and returns how many were
/// published. Rows are locked with SKIP LOCKED, so several relays can run at once. A row
/// that cannot become a message (its study is gone, its project or UID is invalid) is moved
/// to `outbox_rejected` with the reason, its study marked failed, and the rest go on.
pub async fn relay(pool: &PgPool, broker: &Broker, batch_size: i64, mut on_published: impl FnMut(u64)) -> Result<u64, OutboxError> {
    let mut published = 0u64;
    // Keyset pagination: deleted rows stay in the index until vacuum, and restarting from
    // the smallest id each time would scan past all of them again, making a large relay
    // quadratic.
    let mut after_id = 0i64;
    loop {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query(
            "SELECT o.id, o.study_id, o.kind, o.queue, o.priority, s.project_slug, s.pseudo_study_uid
             FROM outbox o LEFT JOIN studies s ON s.id = o.study_id
             WHERE o.id > $2
             ORDER BY o.id
             LIMIT $1
             FOR UPDATE OF o SKIP LOCKED",
        )
        .bind(batch_size)
        .bind(after_id)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(published);
        }
        let mut ids: Vec<i64> = Vec::with_capacity(rows.len());
        let mut batch = Vec::with_capacity(rows.len());
        for row in &rows {
            let outbox_id: i64 = row.try_get("id")?;
            after_id = after_id.max(outbox_id);
            match to_outgoing(row) {
                Ok(outgoing) => {
                    ids.push(outbox_id);
                    batch.push(outgoing);
                }
                Err(problem) => reject(&mut tx, row, outbox_id, &problem).await?,
            }
        }
        if ids.is_empty() {
            tx.commit().await?;
            continue;
        }
        let publish_started = std::time::Instant::now();
        broker.publish_batch(&batch).await?;
        tracing::trace!(elapsed = ?publish_started.elapsed(), count = batch.len(), "outbox batch published");
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
        tx.commit().await?;
        published += ids.len() as u64;
        on_published(ids.len() as u64);
    }
}

/// Moves a row that cannot become a message aside, and fails its study with the reason.
async fn reject(tx: &mut PgConnection, row: &sqlx::postgres::PgRow, outbox_id: i64, problem: &str) -> Result<(), sqlx::Error> {
    let study_id: i64 = row.try_get("study_id")?;
    let queue: String = row.try_get("queue")?;
    let reason = format!("its {} message could not be sent: {problem}", row.try_get::<String, _>("kind")?);
    tracing::error!(outbox_id, study = study_id, %reason, "outbox row moved aside");
    metrics::counter!("pixl_outbox_rejected_total").increment(1);
    sqlx::query(
        "INSERT INTO outbox_rejected (id, study_id, kind, queue, reason) SELECT id, study_id, kind, queue, $2 FROM outbox WHERE id = $1
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(outbox_id)
    .bind(&reason)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM outbox WHERE id = $1").bind(outbox_id).execute(&mut *tx).await?;
    if let Some(queue) = WorkQueue::from_base_name(&queue) {
        crate::state::fail(tx, StudyId(study_id), queue, &reason).await?;
    }
    Ok(())
}

/// Publishes pending rows now and then until `shutdown`: what a failed relay (the broker
/// away) left behind goes out once the broker is back.
pub async fn relay_forever(pool: PgPool, broker: Broker, every: std::time::Duration, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        relay_now(&pool, &broker).await;
    }
}

/// One relay, its failure logged (it is tried again later).
pub async fn relay_now(pool: &PgPool, broker: &Broker) {
    if let Err(error) = relay(pool, broker, 1_000, |_| {}).await {
        match &error {
            OutboxError::Database(database) => tracing::warn!(error = %crate::db::DbFailure::classify(database), "outbox relay failed; it is retried"),
            other => tracing::warn!(error = %other, "outbox relay failed; it is retried"),
        }
    }
}

fn to_outgoing(row: &sqlx::postgres::PgRow) -> Result<Outgoing, String> {
    let study_id = StudyId(row.try_get("study_id").map_err(|e| e.to_string())?);
    let kind: String = row.try_get("kind").map_err(|e| e.to_string())?;
    let queue_name: String = row.try_get("queue").map_err(|e| e.to_string())?;
    let priority: i16 = row.try_get("priority").map_err(|e| e.to_string())?;
    let project: Option<String> = row.try_get("project_slug").map_err(|e| e.to_string())?;
    let project = project.ok_or("its study no longer exists")?;
    let project = ProjectSlug::parse(&project).map_err(|e| format!("the study's project slug is invalid ({e})"))?;
    let queue = WorkQueue::from_base_name(&queue_name).ok_or_else(|| format!("unknown queue {queue_name:?}"))?;
    let message = match kind.as_str() {
        "imaging" => QueueMessage::ImagingV1(StudyRef { study_id, project }),
        "anonymise" => QueueMessage::AnonymiseV1(StudyRef { study_id, project }),
        "ehr" => QueueMessage::EhrV1(StudyRef { study_id, project }),
        "export" => {
            let uid: Option<String> = row.try_get("pseudo_study_uid").map_err(|e| e.to_string())?;
            let uid = uid.ok_or("export message for a study without a pseudonymous UID")?;
            let pseudo_study_uid = PseudoStudyUid::parse(&uid).map_err(|e| format!("the pseudonymous study UID is invalid ({e})"))?;
            QueueMessage::ExportV1(ExportRequest { study_id, project, pseudo_study_uid })
        }
        other => return Err(format!("unknown kind {other:?}")),
    };
    Ok(Outgoing { queue, priority: u8::try_from(priority).unwrap_or(0), message })
}
