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
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Imaging => "imaging",
            Self::Anonymise => "anonymise",
            Self::Export => "export",
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
    #[error("outbox row {outbox_id} cannot become a message: {problem}")]
    Corrupt { outbox_id: i64, problem: String },
}

/// Adds one message to the outbox, inside the caller's transaction.
pub async fn enqueue(
    conn: &mut PgConnection,
    study: StudyId,
    kind: MessageKind,
    queue: WorkQueue,
    priority: u8,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO outbox (study_id, kind, queue, priority) VALUES ($1, $2, $3, $4)")
        .bind(study.0)
        .bind(kind.as_str())
        .bind(queue.base_name())
        .bind(i16::from(priority))
        .execute(conn)
        .await?;
    Ok(())
}

/// Messages not yet published.
pub async fn pending(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(pool).await
}

/// Publishes every pending message, `batch_size` at a time, and returns how many were
/// published. Rows are locked with SKIP LOCKED, so several relays can run at once.
pub async fn relay(
    pool: &PgPool,
    broker: &Broker,
    batch_size: i64,
    mut on_published: impl FnMut(u64),
) -> Result<u64, OutboxError> {
    let mut published = 0u64;
    // Keyset pagination: deleted rows stay in the index until vacuum, and restarting from
    // the smallest id each time would scan past all of them again, making a large relay
    // quadratic.
    let mut after_id = 0i64;
    loop {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query(
            "SELECT o.id, o.study_id, o.kind, o.queue, o.priority, s.project_slug, s.pseudo_study_uid
             FROM outbox o JOIN studies s ON s.id = o.study_id
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
            ids.push(outbox_id);
            batch.push(to_outgoing(row).map_err(|problem| OutboxError::Corrupt { outbox_id, problem })?);
        }
        let publish_started = std::time::Instant::now();
        after_id = ids.iter().copied().max().unwrap_or(after_id);
        broker.publish_batch(&batch).await?;
        tracing::trace!(elapsed = ?publish_started.elapsed(), count = batch.len(), "outbox batch published");
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
        tx.commit().await?;
        published += ids.len() as u64;
        on_published(ids.len() as u64);
    }
}

fn to_outgoing(row: &sqlx::postgres::PgRow) -> Result<Outgoing, String> {
    let study_id = StudyId(row.try_get("study_id").map_err(|e| e.to_string())?);
    let kind: String = row.try_get("kind").map_err(|e| e.to_string())?;
    let queue_name: String = row.try_get("queue").map_err(|e| e.to_string())?;
    let priority: i16 = row.try_get("priority").map_err(|e| e.to_string())?;
    let project: String = row.try_get("project_slug").map_err(|e| e.to_string())?;
    let project = ProjectSlug::parse(&project).map_err(|e| e.to_string())?;
    let queue = WorkQueue::from_base_name(&queue_name).ok_or_else(|| format!("unknown queue {queue_name:?}"))?;
    let message = match kind.as_str() {
        "imaging" => QueueMessage::ImagingV1(StudyRef { study_id, project }),
        "anonymise" => QueueMessage::AnonymiseV1(StudyRef { study_id, project }),
        "export" => {
            let uid: Option<String> = row.try_get("pseudo_study_uid").map_err(|e| e.to_string())?;
            let uid = uid.ok_or("export message for a study without a pseudonymous UID")?;
            let pseudo_study_uid = PseudoStudyUid::parse(&uid).map_err(|e| e.to_string())?;
            QueueMessage::ExportV1(ExportRequest { study_id, project, pseudo_study_uid })
        }
        other => return Err(format!("unknown kind {other:?}")),
    };
    Ok(Outgoing { queue, priority: u8::try_from(priority).unwrap_or(0), message })
}
