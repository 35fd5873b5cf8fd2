//! How a pixl consumer settles a delivery, shared by every service: acknowledge what is
//! done; dead-letter what cannot succeed, with its reason, and mark the study failed with
//! the same reason; requeue what hit a passing problem after a backoff, until the study's
//! attempts run out. The reason strings are written by pixl code and hold no identifier.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions};
use lapin::types::FieldTable;
use sqlx::PgPool;
use sqlx::postgres::PgRow;
use tokio_util::sync::CancellationToken;

use crate::ids::StudyId;
use crate::messages::{QueueMessage, StudyRef};
use crate::outbox::MessageKind;
use crate::queues::{Broker, BrokerError, WorkQueue};

/// How handling a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Done (or nothing to do): acknowledge.
    Done,
    /// Cannot succeed: dead-letter with the reason, mark the study failed.
    Permanent { study: Option<StudyId>, reason: String },
    /// May succeed later: requeue after a backoff.
    Transient { study: StudyId, reason: String },
}

impl Handled {
    pub fn permanent(study: StudyId, reason: impl Into<String>) -> Self {
        Self::Permanent { study: Some(study), reason: reason.into() }
    }

    pub fn transient(study: StudyId, reason: impl Into<String>) -> Self {
        Self::Transient { study, reason: reason.into() }
    }
}

/// Retry policy of a consumer.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts at a study before a passing problem counts as permanent.
    pub max_attempts: i32,
    /// Pause before the first requeue; doubles with each attempt.
    pub first_pause: Duration,
    pub max_pause: Duration,
}

impl Retry {
    fn pause(&self, attempt: i32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).clamp(0, 16) as u32);
        self.first_pause.saturating_mul(factor).min(self.max_pause)
    }
}

/// Decodes a delivery that must be a `kind` message and reads `columns` of the study it
/// names. `Err` says how to settle: not a pixl message, another kind, or no such study
/// are permanent; a database error is passing. An `export` message's pseudonymous UID is
/// not returned: the study row is the authority, and consumers read it from there.
pub async fn load_study(pool: &PgPool, body: &[u8], kind: MessageKind, columns: &'static str) -> Result<(StudyRef, PgRow), Handled> {
    let message = QueueMessage::decode(body).map_err(|error| Handled::Permanent { study: None, reason: error.to_string() })?;
    let study = match (kind, message) {
        (MessageKind::Imaging, QueueMessage::ImagingV1(study)) | (MessageKind::Anonymise, QueueMessage::AnonymiseV1(study)) => study,
        (MessageKind::Export, QueueMessage::ExportV1(request)) => StudyRef { study_id: request.study_id, project: request.project },
        (_, other) => {
            return Err(Handled::Permanent { study: None, reason: format!("not an {} message (study {})", kind.as_str(), other.study_id().0) });
        }
    };
    // `columns` is a constant of the calling service, never input.
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {columns} FROM studies WHERE id = $1")))
        .bind(study.study_id.0)
        .fetch_optional(pool)
        .await
        .map_err(|error| Handled::transient(study.study_id, format!("database: {error}")))?
        .ok_or_else(|| Handled::Permanent { study: None, reason: format!("no study with id {} in the database", study.study_id.0) })?;
    Ok((study, row))
}

/// Marks the study failed with `reason`, remembering the queue it failed on (so that
/// `pixl retry-failed` can resume there). A study that got past that queue's stage
/// meanwhile (a duplicate delivery failing after the original succeeded) is left alone:
/// before `anonymised` for the imaging and anonymise queues, before `exported` for export.
pub async fn mark_failed(pool: &PgPool, queue: WorkQueue, id: StudyId, reason: &str) -> Result<(), sqlx::Error> {
    let finished: &[&str] = match queue {
        WorkQueue::Export => &["exported"],
        _ => &["anonymised", "exported"],
    };
    sqlx::query(
        "UPDATE studies SET state = 'failed', failure_reason = $2, failed_queue = $3, updated_at = now()
         WHERE id = $1 AND NOT (state::text = ANY($4))",
    )
    .bind(id.0)
    .bind(reason)
    .bind(queue.base_name())
    .bind(finished)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Counts an attempt at the study; the new count.
async fn count_attempt(pool: &PgPool, id: StudyId) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("UPDATE studies SET attempts = attempts + 1, updated_at = now() WHERE id = $1 RETURNING attempts").bind(id.0).fetch_one(pool).await
}

async fn requeue(delivery: &Delivery) {
    let _ = delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
}

/// Settles `delivery` from `queue` according to `handled`.
pub async fn settle(pool: &PgPool, broker: &Broker, queue: WorkQueue, retry: Retry, delivery: &Delivery, handled: Handled) {
    let handled = match handled {
        Handled::Transient { study, reason } => match count_attempt(pool, study).await {
            Ok(attempts) if attempts >= retry.max_attempts => Handled::permanent(study, format!("gave up after {attempts} attempts: {reason}")),
            attempts => {
                let pause = retry.pause(attempts.unwrap_or(1));
                tracing::warn!(study = study.0, %reason, pause_s = pause.as_secs_f64(), "passing problem; the study will be retried");
                tokio::time::sleep(pause).await;
                requeue(delivery).await;
                return;
            }
        },
        other => other,
    };
    if let Handled::Permanent { study, reason } = &handled {
        tracing::warn!(study = study.map(|s| s.0), queue = queue.base_name(), %reason, "study failed; message dead-lettered");
        metrics::counter!("pixl_studies_failed_total", "queue" => queue.base_name()).increment(1);
        if let Some(study) = study
            && let Err(error) = mark_failed(pool, queue, *study, reason).await
        {
            tracing::error!(%error, "cannot record the failure; the message is requeued");
            tokio::time::sleep(retry.first_pause).await;
            requeue(delivery).await;
            return;
        }
        if let Err(error) = broker.dead_letter(queue, &delivery.data, reason).await {
            tracing::error!(%error, "cannot dead-letter; the message is requeued");
            tokio::time::sleep(retry.first_pause).await;
            requeue(delivery).await;
            return;
        }
    }
    if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
        tracing::warn!(%error, "cannot acknowledge; the broker will redeliver");
    }
}

/// A consumer stopped for a reason other than shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("{queue} consumer: {source}")]
    Amqp { queue: &'static str, source: lapin::Error },
    #[error("the broker closed the {0} consumer")]
    Closed(&'static str),
}

/// Pushes deliveries of `queue` to `process` until `shutdown`, at most `concurrency` at a
/// time (the channel's prefetch: the broker sends no more unacknowledged deliveries than
/// that). `process` settles its delivery. In-flight deliveries finish before this returns;
/// the ones the broker sent but `process` never got are redelivered after the channel
/// closes.
pub async fn consume<F, Fut>(broker: &Broker, queue: WorkQueue, tag: &str, concurrency: u16, shutdown: CancellationToken, process: F) -> Result<(), ConsumeError>
where
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let channel = broker.consumer_channel(concurrency).await?;
    let name = broker.topology().queue_name(queue);
    let amqp = |source| ConsumeError::Amqp { queue: queue.base_name(), source };
    // Manual acknowledgement (no_ack false): a delivery stays the broker's until settled.
    let mut consumer = channel.basic_consume(name.as_str().into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default()).await.map_err(amqp)?;
    let mut tasks = tokio::task::JoinSet::new();
    let ended = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            delivery = consumer.next() => match delivery {
                None => break Err(ConsumeError::Closed(queue.base_name())),
                Some(Err(error)) => break Err(amqp(error)),
                Some(Ok(delivery)) => {
                    tasks.spawn(process(delivery));
                }
            },
        }
    };
    while tasks.join_next().await.is_some() {}
    let _ = channel.close(200, "shutting down".into()).await;
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let retry = Retry { max_attempts: 5, first_pause: Duration::from_secs(2), max_pause: Duration::from_secs(60) };
        let pauses: Vec<u64> = (1..=7).map(|a| retry.pause(a).as_secs()).collect();
        assert_eq!(pauses, [2, 4, 8, 16, 32, 60, 60]);
    }
}
