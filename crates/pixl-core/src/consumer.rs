//! How every pixl consumer takes and settles its messages.
//!
//! - [`claim_study`] decodes a delivery of the expected kind, takes the study's lock (a
//!   transaction-scoped advisory lock, so two deliveries of one study never run at once,
//!   in one process or several replicas) and reads the study row.
//! - [`Settler::settle`] acknowledges what is done; dead-letters what cannot succeed, with
//!   its reason, and marks the study failed with the same reason; sends what hit a passing
//!   problem to a delay queue with its attempt count (the handler never sleeps, so one
//!   project's unreachable destination does not hold up the others), until the attempts
//!   run out.
//! - [`Settler::run`] runs a handler and settles its outcome; a handler that panics is
//!   caught and its message dead-lettered as an internal error, never left unsettled.
//! - [`consume`] is the push-consumer loop, which reconnects by itself when the broker
//!   goes away and lets in-flight work finish (within a grace period) on shutdown.
//!
//! The reason strings are written by pixl code and hold no identifier.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::db::DbFailure;
use crate::ids::StudyId;
use crate::messages::{QueueMessage, StudyRef};
use crate::outbox::MessageKind;
use crate::queues::{ATTEMPT_HEADER, Broker, BrokerError, WorkQueue};
use crate::retry::Backoff;

/// How handling a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Done (or nothing to do): acknowledge.
    Done,
    /// Cannot succeed: dead-letter with the reason, mark the study failed.
    Permanent { study: Option<StudyId>, reason: String },
    /// May succeed later: back after a growing pause, counted as an attempt.
    Transient { study: StudyId, reason: String },
    /// Not now and not the study's fault (another delivery holds it, a full cache): back
    /// after `after`, not counted as an attempt.
    Deferred { study: StudyId, reason: String, after: Duration },
}

impl Handled {
    pub fn permanent(study: StudyId, reason: impl Into<String>) -> Self {
        Self::Permanent { study: Some(study), reason: reason.into() }
    }

    pub fn transient(study: StudyId, reason: impl Into<String>) -> Self {
        Self::Transient { study, reason: reason.into() }
    }

    /// A database error: a broken constraint cannot succeed on retry (and its text is not
    /// passed on: Postgres quotes the values); an unreachable database is an outage, not
    /// the study's fault, so the message waits for it without spending its attempts (a
    /// restart longer than the attempts' pauses would otherwise fail every study in
    /// flight); anything else may succeed on retry.
    pub fn database(study: StudyId, error: &sqlx::Error) -> Self {
        match DbFailure::classify(error) {
            failure @ DbFailure::Constraint { .. } => Self::permanent(study, failure.to_string()),
            failure @ DbFailure::Unavailable(_) => Self::Deferred { study, reason: failure.to_string(), after: DATABASE_OUTAGE_PAUSE },
            failure => Self::transient(study, failure.to_string()),
        }
    }
}

/// How long a message waits while the database is unreachable.
pub const DATABASE_OUTAGE_PAUSE: Duration = Duration::from_secs(2);

/// Retry policy of a consumer.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts at a message before a passing problem counts as permanent.
    pub max_attempts: u32,
    /// The pause before each retry.
    pub backoff: Backoff,
}

/// The study a delivery names, its row, and its lock.
#[derive(Debug)]
pub struct Claimed {
    pub study: StudyRef,
    pub row: PgRow,
    pub lock: StudyLock,
}

/// A study held for one stage: a transaction on a pooled connection, holding a
/// transaction-scoped advisory lock on (stage, study). Statements run on it (`&mut lock`)
/// are part of the transaction; [`StudyLock::commit`] commits them and releases the lock.
/// Dropped uncommitted (an early return, a panic), sqlx rolls the transaction back before
/// the connection is used again (it is returned to the pool with a ROLLBACK, checked with
/// a round trip), which releases the lock; on a crash the connection closes and Postgres
/// rolls back. A pooled connection keeps its prepared statements: a fresh connection per
/// study paid a Parse and Describe for every statement.
#[derive(Debug)]
pub struct StudyLock {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
}

impl StudyLock {
    async fn open(pool: &PgPool) -> Result<Self, sqlx::Error> {
        Ok(Self { tx: pool.begin().await? })
    }

    /// Commits what was done under the lock, and releases it.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for StudyLock {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for StudyLock {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

/// The pause before a delivery whose study is held by another one comes back.
pub const HELD_PAUSE: Duration = Duration::from_secs(4);

/// Decodes a delivery that must be a `kind` message, locks its study for this stage and
/// reads `columns` of it. `Err` says how to settle: not a pixl message, another kind, or no
/// such study are permanent; a database error is passing; a study another delivery holds
/// is deferred. An `export` message's pseudonymous UID is not returned: the study row is
/// the authority, and consumers read it from there.
pub async fn claim_study(pool: &PgPool, body: &[u8], kind: MessageKind, columns: &'static str) -> Result<Claimed, Handled> {
    let message = QueueMessage::decode(body).map_err(|error| Handled::Permanent { study: None, reason: error.to_string() })?;
    let study = match (kind, message) {
        (MessageKind::Imaging, QueueMessage::ImagingV1(study))
        | (MessageKind::Anonymise, QueueMessage::AnonymiseV1(study))
        | (MessageKind::Ehr, QueueMessage::EhrV1(study)) => study,
        (MessageKind::Export, QueueMessage::ExportV1(request)) => StudyRef { study_id: request.study_id, project: request.project },
        (_, other) => {
            return Err(Handled::Permanent { study: None, reason: format!("not an {} message (study {})", kind.as_str(), other.study_id().0) });
        }
    };
    let id = study.study_id;
    let database = |error: sqlx::Error| Handled::database(id, &error);
    let mut lock = StudyLock::open(pool).await.map_err(database)?;
    // One key per (stage, study): ids stay far below 2^60.
    let key = id.0.saturating_mul(8).saturating_add(kind as i64);
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(key).fetch_one(&mut *lock).await.map_err(database)?;
    if !locked {
        return Err(Handled::Deferred { study: id, reason: "another delivery of this study is being handled".to_owned(), after: HELD_PAUSE });
    }
    // Read after the lock is held (a statement of its own, so a snapshot taken after the
    // lock): the row as the last holder left it.
    // `columns` is a constant of the calling service, never input.
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {columns} FROM studies WHERE id = $1")))
        .bind(id.0)
        .fetch_optional(&mut *lock)
        .await
        .map_err(database)?
        .ok_or_else(|| Handled::Permanent { study: None, reason: format!("no study with id {} in the database", id.0) })?;
    Ok(Claimed { study, row, lock })
}

/// Settles deliveries of one queue.
#[derive(Debug, Clone)]
pub struct Settler {
    pub pool: PgPool,
    pub broker: Broker,
    pub queue: WorkQueue,
    pub retry: Retry,
}

impl Settler {
    /// Runs `work` (the handling of `delivery`) and settles its outcome. A panic in `work`
    /// is caught: the message is dead-lettered as an internal error in this queue's step.
    pub async fn run(&self, delivery: Delivery, work: impl Future<Output = Handled>) {
        let handled = match AssertUnwindSafe(work).catch_unwind().await {
            Ok(handled) => handled,
            Err(_) => {
                let study = QueueMessage::decode(&delivery.data).ok().map(|message| message.study_id());
                tracing::error!(
                    queue = self.queue.base_name(),
                    study = study.map(|s| s.0),
                    "internal error: the handler panicked; the message is dead-lettered"
                );
                metrics::counter!("pixl_handler_panics_total", "queue" => self.queue.base_name()).increment(1);
                Handled::Permanent { study, reason: format!("internal error in {}", self.queue.step()) }
            }
        };
        self.settle(&delivery, handled).await;
    }

    /// Settles `delivery` according to `handled`.
    pub async fn settle(&self, delivery: &Delivery, handled: Handled) {
        let queue = self.queue.base_name();
        let attempt = attempt_of(delivery);
        let handled = match handled {
            Handled::Transient { study, reason } if attempt + 1 >= self.retry.max_attempts => {
                Handled::permanent(study, format!("gave up after {} attempts: {reason}", attempt + 1))
            }
            other => other,
        };
        let (study, reason, next_attempt, pause) = match handled {
            Handled::Done => return ack(delivery).await,
            Handled::Permanent { study, reason } => return self.fail(delivery, study, &reason).await,
            Handled::Transient { study, reason } => (study, reason, attempt + 1, self.retry.backoff.pause(attempt + 1)),
            Handled::Deferred { study, reason, after } => (study, reason, attempt, after),
        };
        let priority = delivery.properties.priority().as_ref().copied();
        match self.broker.delay(self.queue, &delivery.data, priority, next_attempt, pause).await {
            Ok(()) => {
                tracing::warn!(study = study.0, queue, %reason, attempt = next_attempt, pause_s = pause.as_secs_f64(), "the message comes back after a pause");
                metrics::counter!("pixl_messages_delayed_total", "queue" => queue).increment(1);
                if next_attempt > attempt {
                    // For `pixl status`; the header is the authority.
                    let _ = sqlx::query("UPDATE studies SET attempts = $2, updated_at = now() WHERE id = $1")
                        .bind(study.0)
                        .bind(i32::try_from(next_attempt).unwrap_or(i32::MAX))
                        .execute(&self.pool)
                        .await;
                }
                ack(delivery).await;
            }
            Err(error) => requeue(delivery, &error).await,
        }
    }

    async fn fail(&self, delivery: &Delivery, study: Option<StudyId>, reason: &str) {
        let queue = self.queue.base_name();
        tracing::warn!(study = study.map(|s| s.0), queue, %reason, "study failed; message dead-lettered");
        metrics::counter!("pixl_studies_failed_total", "queue" => queue).increment(1);
        if let Some(study) = study {
            let marked = async {
                let mut conn = self.pool.acquire().await?;
                crate::state::fail(&mut conn, study, self.queue, reason).await
            };
            if let Err(error) = marked.await {
                tracing::error!(error = %DbFailure::classify(&error), "cannot record the failure; the message is requeued");
                return requeue(delivery, &BrokerError::Closed).await;
            }
        }
        match self.broker.dead_letter(self.queue, &delivery.data, reason).await {
            Ok(()) => ack(delivery).await,
            Err(error) => requeue(delivery, &error).await,
        }
    }
}

/// The attempt count a delivery carries (0 for a first delivery).
pub fn attempt_of(delivery: &Delivery) -> u32 {
    let Some(headers) = delivery.properties.headers() else { return 0 };
    match headers.inner().get(ATTEMPT_HEADER) {
        Some(AMQPValue::LongUInt(n)) => *n,
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::ShortUInt(n)) => u32::from(*n),
        _ => 0,
    }
}

async fn ack(delivery: &Delivery) {
    if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
        // The channel is gone (broker restart): the broker redelivers, and handlers are
        // idempotent.
        tracing::debug!(%error, "cannot acknowledge; the broker will redeliver");
    }
}

/// Returns a delivery to its queue after a failure to settle it (the broker or the
/// database is away). The short pause keeps a broker that refuses one operation from
/// spinning the message.
async fn requeue(delivery: &Delivery, error: &BrokerError) {
    tracing::error!(%error, "cannot settle the message; it is returned to its queue");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
}

/// A consumer's shape.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Consumer tag, naming the service.
    pub tag: &'static str,
    /// Deliveries handled at once (the channel's prefetch).
    pub concurrency: u16,
    /// How long in-flight work may go on after shutdown is asked for; what is still
    /// running then is abandoned and its message redelivered.
    pub grace: Duration,
}

/// The default grace period: within docker compose's default stop timeout (10 s).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(8);

/// A consumer stopped for a reason other than shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Pushes deliveries of `settler.queue` to `handler` until `shutdown`, at most
/// `spec.concurrency` at a time, and settles each outcome. When the broker goes away the
/// loop logs it, waits (doubling pauses up to 30 s) and consumes again on a new
/// connection; deliveries in flight at that moment finish, fail to acknowledge and are
/// redelivered. On shutdown in-flight deliveries get `spec.grace` to finish.
pub async fn consume<F, Fut>(settler: Settler, spec: ConsumerSpec, shutdown: CancellationToken, handler: F) -> Result<(), ConsumeError>
where
    F: Fn(Arc<[u8]>) -> Fut,
    Fut: Future<Output = Handled> + Send + 'static,
{
    let queue = settler.queue;
    let name = settler.broker.topology().queue_name(queue);
    let mut pauses = Backoff::new(Duration::from_millis(500), Duration::from_secs(30)).iter();
    let mut tasks = tokio::task::JoinSet::new();
    'connect: while !shutdown.is_cancelled() {
        let started = async {
            let channel = settler.broker.consumer_channel(spec.concurrency).await?;
            // Manual acknowledgement (no_ack false): a delivery stays the broker's until settled.
            let consumer = channel
                .basic_consume(name.as_str().into(), spec.tag.into(), BasicConsumeOptions::default(), FieldTable::default())
                .await
                .map_err(|source| BrokerError::Other { operation: "consume", source })?;
            Ok::<_, BrokerError>((channel, consumer))
        };
        let (channel, mut consumer) = match started.await {
            Ok(started) => started,
            Err(error) => {
                let pause = pauses.next().unwrap_or_default();
                tracing::warn!(queue = queue.base_name(), %error, retry_in_s = pause.as_secs_f64(), "cannot consume; RabbitMQ is unreachable");
                tokio::select! {
                    () = shutdown.cancelled() => break 'connect,
                    () = tokio::time::sleep(pause) => continue 'connect,
                }
            }
        };
        if pauses.attempts() > 0 {
            tracing::info!(queue = queue.base_name(), "consuming again after losing RabbitMQ");
        }
        pauses.reset();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    drain(&mut tasks, spec.grace, queue).await;
                    let _ = channel.close(200, "shutting down".into()).await;
                    return Ok(());
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                delivery = consumer.next() => match delivery {
                    Some(Ok(delivery)) => {
                        let work = handler(Arc::from(delivery.data.as_slice()));
                        let settler = settler.clone();
                        tasks.spawn(async move { settler.run(delivery, work).await });
                    }
                    None | Some(Err(_)) => {
                        tracing::warn!(queue = queue.base_name(), "lost the connection to RabbitMQ; consuming again when it is back");
                        continue 'connect;
                    }
                },
            }
        }
    }
    drain(&mut tasks, spec.grace, queue).await;
    Ok(())
}

/// Lets in-flight deliveries finish for up to `grace`, then abandons the rest (their
/// messages are redelivered when the channel closes).
pub async fn drain(tasks: &mut tokio::task::JoinSet<()>, grace: Duration, queue: WorkQueue) {
    let finished = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tracing::warn!(queue = queue.base_name(), abandoned = tasks.len(), "in-flight messages did not finish in time; they go back to the queue");
        tasks.shutdown().await;
    }
}
