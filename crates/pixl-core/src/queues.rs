//! RabbitMQ topology and publishing.
//!
//! Work queues: `imaging-primary` and `imaging-secondary` (priorities 1..5), `anonymise`,
//! `export`. Each is durable and dead-letters into its own `<queue>.dead-letter` queue via
//! one dead-letter exchange. Every publish is persistent and waits for the broker's
//! confirm, so a message the caller was told is sent survives a broker restart.
//!
//! Retries wait in delay queues, not in handlers: `<queue>.delay.<ms>ms` has no consumer and
//! a message TTL of `<ms>`; an expired message is dead-lettered through the default
//! exchange straight back to its work queue. One delay queue per pause (pauses are rounded
//! up to a power of two times 250 ms), so every message in a delay queue expires in the
//! order it arrived and none waits behind a longer one.
//!
//! [`Broker`] reconnects by itself: an operation that finds the connection or one of its
//! channels closed opens a new connection (declaring the topology again) before it runs,
//! so a broker restart costs the operations that were in flight at that moment and nothing
//! after.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind, PublisherConfirm,
    options::{BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable, ShortString},
};
use secrecy::ExposeSecret;

use crate::config::RabbitSettings;
use crate::messages::QueueMessage;

/// Highest priority on the imaging queues, as in PIXL.
pub const MAX_PRIORITY: u8 = 5;

/// Header carrying why a message was dead-lettered by a consumer. Never holds an
/// identifier.
pub const FAILURE_REASON_HEADER: &str = "x-pixl-failure-reason";

/// Header counting the attempts at a message that came back from a delay queue.
pub const ATTEMPT_HEADER: &str = "x-pixl-attempt";

/// The shortest delay queue, in milliseconds; longer ones double it.
const DELAY_UNIT_MS: u64 = 250;
/// Delay queues: 250 ms × 2^0..=14 (up to about 68 minutes).
const DELAY_LEVELS: u32 = 15;

/// The delay queue's TTL for a wanted pause: the pause rounded up to 250 ms × 2^k.
pub fn delay_ttl_ms(pause: Duration) -> u64 {
    let wanted = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
    (0..DELAY_LEVELS).map(|k| DELAY_UNIT_MS << k).find(|ttl| *ttl >= wanted).unwrap_or(DELAY_UNIT_MS << (DELAY_LEVELS - 1))
}

/// The work queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkQueue {
    ImagingPrimary,
    ImagingSecondary,
    Anonymise,
    Export,
    /// ehr-api: the study's EHR fields and report, beside the imaging path.
    Ehr,
}

impl WorkQueue {
    pub const ALL: [WorkQueue; 5] = [Self::ImagingPrimary, Self::ImagingSecondary, Self::Anonymise, Self::Export, Self::Ehr];

    /// The queue's name without any prefix (PIXL's names).
    pub fn base_name(self) -> &'static str {
        match self {
            Self::ImagingPrimary => "imaging-primary",
            Self::ImagingSecondary => "imaging-secondary",
            Self::Anonymise => "anonymise",
            Self::Export => "export",
            Self::Ehr => "ehr",
        }
    }

    /// The pipeline step the queue feeds, for messages ("internal error in export").
    pub fn step(self) -> &'static str {
        match self {
            Self::ImagingPrimary | Self::ImagingSecondary => "retrieval",
            Self::Anonymise => "de-identification",
            Self::Export => "export",
            Self::Ehr => "EHR extraction",
        }
    }

    pub fn from_base_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.base_name() == name)
    }

    fn max_priority(self) -> Option<u8> {
        match self {
            Self::ImagingPrimary | Self::ImagingSecondary => Some(MAX_PRIORITY),
            Self::Anonymise | Self::Export | Self::Ehr => None,
        }
    }
}

/// Queue and exchange names for one deployment (or one test, through the prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    pub fn queue_name(&self, queue: WorkQueue) -> String {
        format!("{}{}", self.prefix, queue.base_name())
    }

    pub fn dead_letter_queue_name(&self, queue: WorkQueue) -> String {
        format!("{}{}.dead-letter", self.prefix, queue.base_name())
    }

    pub fn dead_letter_exchange(&self) -> String {
        format!("{}pixl.dead-letter", self.prefix)
    }

    /// The delay queue of `queue` whose messages wait `ttl_ms` before they come back.
    pub fn delay_queue_name(&self, queue: WorkQueue, ttl_ms: u64) -> String {
        format!("{}{}.delay.{ttl_ms}ms", self.prefix, queue.base_name())
    }
}

/// A broker operation that failed. The messages come from lapin and the broker; neither
/// includes message bodies.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot connect to RabbitMQ at {host}:{port}: {source}")]
    Connect { host: String, port: u16, source: lapin::Error },
    #[error("cannot declare {what}: {source}")]
    Declare { what: String, source: lapin::Error },
    #[error("cannot publish to {queue}: {source}")]
    Publish { queue: String, source: lapin::Error },
    #[error("RabbitMQ refused a message for {queue} (negative confirm)")]
    Nacked { queue: String },
    #[error("RabbitMQ could not route a message to {queue}: the queue does not exist")]
    Unroutable { queue: String },
    #[error("RabbitMQ operation {operation} failed: {source}")]
    Other { operation: &'static str, source: lapin::Error },
    #[error("the connection to RabbitMQ is closed")]
    Closed,
}

/// Message and consumer counts of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCounts {
    pub messages: u32,
    pub consumers: u32,
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub queue: WorkQueue,
    /// 0..=5; only the imaging queues honour it.
    pub priority: u8,
    pub message: QueueMessage,
}

/// Channels publishing one batch side by side. The broker persists and confirms each
/// channel's messages independently, so a few channels in parallel publish faster than one.
const PUBLISH_CHANNELS: usize = 4;

/// One connection with its publisher-confirm channels, the topology declared on it.
#[derive(Debug)]
struct Link {
    connection: Connection,
    /// Confirm-mode channel for declarations and single publishes.
    channel: Channel,
    /// Confirm-mode channels for [`Broker::publish_batch`].
    publishers: Vec<Channel>,
    /// Delay queues declared on this connection.
    delays: Mutex<HashSet<String>>,
}

impl Link {
    fn usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected() && self.publishers.iter().all(|c| c.status().connected())
    }
}

/// A RabbitMQ connection that re-opens itself, with publisher-confirm channels and a
/// declared topology. Clones share the connection.
#[derive(Debug, Clone)]
pub struct Broker {
    inner: Arc<BrokerInner>,
}

#[derive(Debug)]
struct BrokerInner {
    settings: RabbitSettings,
    topology: Topology,
    link: tokio::sync::RwLock<Option<Arc<Link>>>,
    /// When the last failed reconnection was tried: reconnections are at most one a second.
    last_failure: Mutex<Option<Instant>>,
}

impl Broker {
    /// Connects, enables publisher confirms and declares the whole topology (idempotent).
    pub async fn connect(settings: &RabbitSettings, topology: Topology) -> Result<Self, BrokerError> {
        let link = open_link(settings, &topology).await?;
        Ok(Self {
            inner: Arc::new(BrokerInner {
                settings: settings.clone(),
                topology,
                link: tokio::sync::RwLock::new(Some(Arc::new(link))),
                last_failure: Mutex::new(None),
            }),
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Whether the connection is up (for `/heart-beat`).
    pub fn is_connected(&self) -> bool {
        self.inner.link.try_read().map(|link| link.as_ref().is_some_and(|link| link.connection.status().connected())).unwrap_or(true)
    }

    /// The current connection, re-opened first if it (or one of its channels) is closed.
    async fn link(&self) -> Result<Arc<Link>, BrokerError> {
        if let Some(link) = self.inner.link.read().await.as_ref()
            && link.usable()
        {
            return Ok(Arc::clone(link));
        }
        let mut slot = self.inner.link.write().await;
        if let Some(link) = slot.as_ref()
            && link.usable()
        {
            return Ok(Arc::clone(link));
        }
        {
            let last = self.inner.last_failure.lock().expect("broker lock");
            if last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
                return Err(BrokerError::Closed);
            }
        }
        if let Some(old) = slot.take() {
            let _ = old.connection.close(200, "reconnecting".into()).await;
        }
        match open_link(&self.inner.settings, &self.inner.topology).await {
            Ok(link) => {
                tracing::info!(host = %self.inner.settings.host, port = self.inner.settings.port, "connected to RabbitMQ again");
                *self.inner.last_failure.lock().expect("broker lock") = None;
                let link = Arc::new(link);
                *slot = Some(Arc::clone(&link));
                Ok(link)
            }
            Err(error) => {
                *self.inner.last_failure.lock().expect("broker lock") = Some(Instant::now());
                Err(error)
            }
        }
    }

    /// A new channel, for reading or purging queues. The caller closes it.
    pub async fn open_channel(&self) -> Result<Channel, BrokerError> {
        let link = self.link().await?;
        link.connection.create_channel().await.map_err(|source| BrokerError::Other { operation: "create channel", source })
    }

    /// A new channel for consuming, with at most `prefetch` unacknowledged deliveries.
    pub async fn consumer_channel(&self, prefetch: u16) -> Result<Channel, BrokerError> {
        let channel = self.open_channel().await?;
        channel.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(|source| BrokerError::Other { operation: "set prefetch", source })?;
        Ok(channel)
    }

    /// Publishes one message and waits for the broker's confirm.
    pub async fn publish(&self, outgoing: &Outgoing) -> Result<(), BrokerError> {
        self.publish_batch(std::slice::from_ref(outgoing)).await
    }

    /// Publishes every message, pipelined over several channels, then waits for all
    /// confirms. Returns only when the broker has taken responsibility for each one.
    /// Messages for one queue keep their order within a batch only per channel; pixl's
    /// consumers do not depend on order.
    pub async fn publish_batch(&self, batch: &[Outgoing]) -> Result<(), BrokerError> {
        let link = self.link().await?;
        if batch.len() < 2 * PUBLISH_CHANNELS {
            return self.publish_on(&link.channel, batch).await;
        }
        let share = batch.len().div_ceil(link.publishers.len());
        let parts = batch.chunks(share).zip(&link.publishers).map(|(part, channel)| self.publish_on(channel, part));
        futures_util::future::try_join_all(parts).await?;
        Ok(())
    }

    async fn publish_on(&self, channel: &Channel, batch: &[Outgoing]) -> Result<(), BrokerError> {
        let mut pending = Vec::with_capacity(batch.len());
        for outgoing in batch {
            let queue = self.inner.topology.queue_name(outgoing.queue);
            let properties = persistent_json().with_priority(outgoing.priority.min(MAX_PRIORITY));
            let confirm = send(channel, "", &queue, &outgoing.message.encode(), properties).await?;
            pending.push((queue, confirm));
        }
        for (queue, confirm) in pending {
            let confirmation = confirm.await.map_err(|source| BrokerError::Publish { queue: queue.clone(), source })?;
            check_confirmation(queue, confirmation)?;
        }
        Ok(())
    }

    /// Puts `body` on the dead-letter queue of `queue` with the reason in a header, and
    /// waits for the confirm. Consumers call this, then ack the original delivery.
    pub async fn dead_letter(&self, queue: WorkQueue, body: &[u8], reason: &str) -> Result<(), BrokerError> {
        let link = self.link().await?;
        let dead_letter_name = self.inner.topology.dead_letter_queue_name(queue);
        let mut headers = FieldTable::default();
        headers.insert(FAILURE_REASON_HEADER.into(), AMQPValue::LongString(reason.into()));
        headers.insert("x-pixl-source-queue".into(), AMQPValue::LongString(queue.base_name().into()));
        let confirm = send(&link.channel, "", &dead_letter_name, body, persistent_json().with_headers(headers)).await?;
        let confirmation = confirm.await.map_err(|source| BrokerError::Publish { queue: dead_letter_name.clone(), source })?;
        check_confirmation(dead_letter_name, confirmation)
    }

    /// Puts `body` back on `queue` after `pause` (rounded up to a delay queue's TTL), with
    /// `attempt` in its [`ATTEMPT_HEADER`] and the priority it had; waits for the confirm.
    /// Consumers call this, then ack the original delivery: the handler never sleeps.
    pub async fn delay(&self, queue: WorkQueue, body: &[u8], priority: Option<u8>, attempt: u32, pause: Duration) -> Result<(), BrokerError> {
        let link = self.link().await?;
        let ttl = delay_ttl_ms(pause);
        let name = self.inner.topology.delay_queue_name(queue, ttl);
        let declared = link.delays.lock().expect("delay set").contains(&name);
        if !declared {
            let mut arguments = FieldTable::default();
            arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(i64::try_from(ttl).unwrap_or(i64::MAX)));
            // Expired messages go through the default exchange, by queue name, back to work.
            arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
            arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(self.inner.topology.queue_name(queue).as_str().into()));
            arguments.insert("x-queue-version".into(), AMQPValue::ShortShortUInt(2));
            link.channel
                .queue_declare(name.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, arguments)
                .await
                .map_err(|source| BrokerError::Declare { what: format!("queue {name}"), source })?;
            link.delays.lock().expect("delay set").insert(name.clone());
        }
        let mut headers = FieldTable::default();
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempt));
        let mut properties = persistent_json().with_headers(headers);
        if let Some(priority) = priority {
            properties = properties.with_priority(priority.min(MAX_PRIORITY));
        }
        let confirm = send(&link.channel, "", &name, body, properties).await?;
        let confirmation = confirm.await.map_err(|source| BrokerError::Publish { queue: name.clone(), source })?;
        check_confirmation(name, confirmation)
    }

    /// Ready-message and consumer counts of a queue, by name. A queue that does not exist
    /// counts zero.
    pub async fn counts(&self, queue_name: &str) -> Result<QueueCounts, BrokerError> {
        // A passive declare of a missing queue closes its channel: use a throwaway one.
        let link = self.link().await?;
        let channel = link.connection.create_channel().await.map_err(|source| BrokerError::Other { operation: "create channel", source })?;
        let declared = channel.queue_declare(queue_name.into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default()).await;
        let counts = match declared {
            Ok(queue) => QueueCounts { messages: queue.message_count(), consumers: queue.consumer_count() },
            // The channel closed (404) while the connection stayed up: no such queue.
            Err(_) if link.connection.status().connected() && !channel.status().connected() => QueueCounts::default(),
            Err(source) => return Err(BrokerError::Other { operation: "read queue counts", source }),
        };
        let _ = channel.close(200, "done".into()).await;
        Ok(counts)
    }

    /// Messages waiting in `queue`'s delay queues (retries not yet due).
    pub async fn delayed(&self, queue: WorkQueue) -> Result<u32, BrokerError> {
        let mut total = 0;
        for level in 0..DELAY_LEVELS {
            total += self.counts(&self.inner.topology.delay_queue_name(queue, DELAY_UNIT_MS << level)).await?.messages;
        }
        Ok(total)
    }

    /// Deletes every queue (delay queues included) and the exchange of this topology. For
    /// tests and `pixl demo`.
    pub async fn delete_topology(&self) -> Result<(), BrokerError> {
        let link = self.link().await?;
        for queue in WorkQueue::ALL {
            let delays = (0..DELAY_LEVELS).map(|level| self.inner.topology.delay_queue_name(queue, DELAY_UNIT_MS << level));
            for name in [self.inner.topology.queue_name(queue), self.inner.topology.dead_letter_queue_name(queue)].into_iter().chain(delays) {
                // Deleting a queue that does not exist succeeds in RabbitMQ.
                link.channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .map_err(|source| BrokerError::Other { operation: "delete queue", source })?;
            }
        }
        link.channel
            .exchange_delete(self.inner.topology.dead_letter_exchange().as_str().into(), Default::default())
            .await
            .map_err(|source| BrokerError::Other { operation: "delete exchange", source })?;
        Ok(())
    }

    pub async fn close(self) {
        // Closing is best effort: the broker cleans up a dropped connection too.
        if let Some(link) = self.inner.link.write().await.take() {
            for channel in link.publishers.iter().chain([&link.channel]) {
                let _ = channel.close(200, "bye".into()).await;
            }
            let _ = link.connection.close(200, "bye".into()).await;
        }
    }
}

/// Connects, opens the confirm channels and declares the topology.
async fn open_link(settings: &RabbitSettings, topology: &Topology) -> Result<Link, BrokerError> {
    let connection = Connection::connect(settings.amqp_uri().expose_secret(), ConnectionProperties::default())
        .await
        .map_err(|source| BrokerError::Connect { host: settings.host.clone(), port: settings.port, source })?;
    let channel = confirm_channel(&connection).await?;
    let mut publishers = Vec::with_capacity(PUBLISH_CHANNELS);
    for _ in 0..PUBLISH_CHANNELS {
        publishers.push(confirm_channel(&connection).await?);
    }
    declare_topology(&channel, topology).await?;
    Ok(Link { connection, channel, publishers, delays: Mutex::new(HashSet::new()) })
}

async fn declare_topology(channel: &Channel, topology: &Topology) -> Result<(), BrokerError> {
    let exchange = topology.dead_letter_exchange();
    channel
        .exchange_declare(exchange.as_str().into(), ExchangeKind::Direct, ExchangeDeclareOptions { durable: true, ..Default::default() }, FieldTable::default())
        .await
        .map_err(|source| BrokerError::Declare { what: format!("exchange {exchange}"), source })?;
    for queue in WorkQueue::ALL {
        let name = topology.queue_name(queue);
        let dead_letter_name = topology.dead_letter_queue_name(queue);
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };

        let mut arguments = FieldTable::default();
        arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(exchange.as_str().into()));
        // Routing the dead letter by its own queue's name keeps one DLQ per queue.
        arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(name.as_str().into()));
        // Classic queue storage v2: several times cheaper per persistent message than v1.
        arguments.insert("x-queue-version".into(), AMQPValue::ShortShortUInt(2));
        if let Some(max) = queue.max_priority() {
            arguments.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(max));
        }
        channel
            .queue_declare(name.as_str().into(), durable, arguments)
            .await
            .map_err(|source| BrokerError::Declare { what: format!("queue {name}"), source })?;
        channel
            .queue_declare(dead_letter_name.as_str().into(), durable, FieldTable::default())
            .await
            .map_err(|source| BrokerError::Declare { what: format!("queue {dead_letter_name}"), source })?;
        channel
            .queue_bind(dead_letter_name.as_str().into(), exchange.as_str().into(), name.as_str().into(), QueueBindOptions::default(), FieldTable::default())
            .await
            .map_err(|source| BrokerError::Declare { what: format!("binding of {dead_letter_name}"), source })?;
    }
    Ok(())
}

async fn confirm_channel(connection: &Connection) -> Result<Channel, BrokerError> {
    let channel = connection.create_channel().await.map_err(|source| BrokerError::Other { operation: "create channel", source })?;
    channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(|source| BrokerError::Other { operation: "enable publisher confirms", source })?;
    Ok(channel)
}

async fn send(channel: &Channel, exchange: &str, queue: &str, body: &[u8], properties: BasicProperties) -> Result<PublisherConfirm, BrokerError> {
    channel
        .basic_publish(
            ShortString::from(exchange),
            queue.into(),
            // Mandatory: a message for a queue that does not exist comes back instead of
            // vanishing.
            BasicPublishOptions { mandatory: true, ..Default::default() },
            body,
            properties,
        )
        .await
        .map_err(|source| BrokerError::Publish { queue: queue.to_owned(), source })
}

fn persistent_json() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        // 2 = persistent: written to disk by a durable queue.
        .with_delivery_mode(2)
}

fn check_confirmation(queue: String, confirmation: Confirmation) -> Result<(), BrokerError> {
    match confirmation {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) => Err(BrokerError::Unroutable { queue }),
        Confirmation::Nack(_) => Err(BrokerError::Nacked { queue }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_pixl_with_prefix() {
        let topology = Topology::new("t1.");
        assert_eq!(topology.queue_name(WorkQueue::ImagingPrimary), "t1.imaging-primary");
        assert_eq!(topology.dead_letter_queue_name(WorkQueue::Export), "t1.export.dead-letter");
        assert_eq!(Topology::new("").queue_name(WorkQueue::Anonymise), "anonymise");
        assert_eq!(WorkQueue::from_base_name("imaging-secondary"), Some(WorkQueue::ImagingSecondary));
        assert_eq!(WorkQueue::from_base_name("imaging"), None);
        assert_eq!(topology.delay_queue_name(WorkQueue::Export, 4000), "t1.export.delay.4000ms");
    }

    #[test]
    fn pauses_round_up_to_a_delay_queue() {
        let ttl = |ms| delay_ttl_ms(Duration::from_millis(ms));
        assert_eq!([ttl(0), ttl(200), ttl(250), ttl(251), ttl(2000), ttl(5000)], [250, 250, 250, 500, 2000, 8000]);
        assert_eq!(ttl(u64::MAX), 250 << 14);
    }
}
