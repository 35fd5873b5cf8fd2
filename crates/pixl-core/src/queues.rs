//! RabbitMQ topology and publishing.
//!
//! Work queues: `imaging-primary` and `imaging-secondary` (priorities 1..5), `anonymise`,
//! `export`. Each is durable and dead-letters into its own `<queue>.dead-letter` queue via
//! one dead-letter exchange. Every publish is persistent and waits for the broker's
//! confirm, so a message the caller was told is sent survives a broker restart.

use lapin::{
    BasicProperties, Channel, Confirmation, Connection, PublisherConfirm, ConnectionProperties, ExchangeKind,
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

/// The work queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkQueue {
    ImagingPrimary,
    ImagingSecondary,
    Anonymise,
    Export,
}

impl WorkQueue {
    pub const ALL: [WorkQueue; 4] = [Self::ImagingPrimary, Self::ImagingSecondary, Self::Anonymise, Self::Export];

    /// The queue's name without any prefix (PIXL's names).
    pub fn base_name(self) -> &'static str {
        match self {
            Self::ImagingPrimary => "imaging-primary",
            Self::ImagingSecondary => "imaging-secondary",
            Self::Anonymise => "anonymise",
            Self::Export => "export",
        }
    }

    pub fn from_base_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.base_name() == name)
    }

    fn max_priority(self) -> Option<u8> {
        match self {
            Self::ImagingPrimary | Self::ImagingSecondary => Some(MAX_PRIORITY),
            Self::Anonymise | Self::Export => None,
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

/// A connection with publisher-confirm channels and a declared topology.
#[derive(Debug)]
pub struct Broker {
    connection: Connection,
    /// Confirm-mode channel for declarations and single publishes.
    channel: Channel,
    /// Confirm-mode channels for [`Broker::publish_batch`].
    publishers: Vec<Channel>,
    topology: Topology,
}

impl Broker {
    /// Connects, enables publisher confirms and declares the whole topology (idempotent).
    pub async fn connect(settings: &RabbitSettings, topology: Topology) -> Result<Self, BrokerError> {
        let connection = Connection::connect(settings.amqp_uri().expose_secret(), ConnectionProperties::default())
            .await
            .map_err(|source| BrokerError::Connect { host: settings.host.clone(), port: settings.port, source })?;
        let channel = confirm_channel(&connection).await?;
        let mut publishers = Vec::with_capacity(PUBLISH_CHANNELS);
        for _ in 0..PUBLISH_CHANNELS {
            publishers.push(confirm_channel(&connection).await?);
        }
        let broker = Self { connection, channel, publishers, topology };
        broker.declare_topology().await?;
        Ok(broker)
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// A new channel for consuming, with at most `prefetch` unacknowledged deliveries.
    pub async fn consumer_channel(&self, prefetch: u16) -> Result<Channel, BrokerError> {
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(|source| BrokerError::Other { operation: "create channel", source })?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(|source| BrokerError::Other { operation: "set prefetch", source })?;
        Ok(channel)
    }

    async fn declare_topology(&self) -> Result<(), BrokerError> {
        let exchange = self.topology.dead_letter_exchange();
        self.channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions { durable: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(|source| BrokerError::Declare { what: format!("exchange {exchange}"), source })?;
        for queue in WorkQueue::ALL {
            let name = self.topology.queue_name(queue);
            let dead_letter_name = self.topology.dead_letter_queue_name(queue);
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
            self.channel
                .queue_declare(name.as_str().into(), durable, arguments)
                .await
                .map_err(|source| BrokerError::Declare { what: format!("queue {name}"), source })?;
            self.channel
                .queue_declare(dead_letter_name.as_str().into(), durable, FieldTable::default())
                .await
                .map_err(|source| BrokerError::Declare { what: format!("queue {dead_letter_name}"), source })?;
            self.channel
                .queue_bind(
                    dead_letter_name.as_str().into(),
                    exchange.as_str().into(),
                    name.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|source| BrokerError::Declare { what: format!("binding of {dead_letter_name}"), source })?;
        }
        Ok(())
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
        if batch.len() < 2 * PUBLISH_CHANNELS {
            return self.publish_on(&self.channel, batch).await;
        }
        let share = batch.len().div_ceil(self.publishers.len());
        let parts = batch.chunks(share).zip(&self.publishers).map(|(part, channel)| self.publish_on(channel, part));
        futures_util::future::try_join_all(parts).await?;
        Ok(())
    }

    async fn publish_on(&self, channel: &Channel, batch: &[Outgoing]) -> Result<(), BrokerError> {
        let mut pending = Vec::with_capacity(batch.len());
        for outgoing in batch {
            let queue = self.topology.queue_name(outgoing.queue);
            let properties = persistent_json().with_priority(outgoing.priority.min(MAX_PRIORITY));
            let confirm = send(channel, &queue, &outgoing.message.encode(), properties).await?;
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
        let dead_letter_name = self.topology.dead_letter_queue_name(queue);
        let mut headers = FieldTable::default();
        headers.insert(FAILURE_REASON_HEADER.into(), AMQPValue::LongString(reason.into()));
        headers.insert("x-pixl-source-queue".into(), AMQPValue::LongString(queue.base_name().into()));
        let confirm = send(&self.channel, &dead_letter_name, body, persistent_json().with_headers(headers)).await?;
        let confirmation =
            confirm.await.map_err(|source| BrokerError::Publish { queue: dead_letter_name.clone(), source })?;
        check_confirmation(dead_letter_name, confirmation)
    }

    /// Ready-message and consumer counts of a queue, by name.
    pub async fn counts(&self, queue_name: &str) -> Result<QueueCounts, BrokerError> {
        let queue = self
            .channel
            .queue_declare(queue_name.into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default())
            .await
            .map_err(|source| BrokerError::Other { operation: "read queue counts", source })?;
        Ok(QueueCounts { messages: queue.message_count(), consumers: queue.consumer_count() })
    }

    /// Deletes every queue and the exchange of this topology. For tests and `pixl stop --purge`.
    pub async fn delete_topology(&self) -> Result<(), BrokerError> {
        for queue in WorkQueue::ALL {
            for name in [self.topology.queue_name(queue), self.topology.dead_letter_queue_name(queue)] {
                self.channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .map_err(|source| BrokerError::Other { operation: "delete queue", source })?;
            }
        }
        self.channel
            .exchange_delete(self.topology.dead_letter_exchange().as_str().into(), Default::default())
            .await
            .map_err(|source| BrokerError::Other { operation: "delete exchange", source })?;
        Ok(())
    }

    pub async fn close(self) {
        // Closing is best effort: the broker cleans up a dropped connection too.
        for channel in self.publishers.iter().chain([&self.channel]) {
            let _ = channel.close(200, "bye".into()).await;
        }
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

async fn confirm_channel(connection: &Connection) -> Result<Channel, BrokerError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|source| BrokerError::Other { operation: "create channel", source })?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|source| BrokerError::Other { operation: "enable publisher confirms", source })?;
    Ok(channel)
}

async fn send(channel: &Channel, queue: &str, body: &[u8], properties: BasicProperties) -> Result<PublisherConfirm, BrokerError> {
    channel
        .basic_publish(
            ShortString::from(""),
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
    }
}
