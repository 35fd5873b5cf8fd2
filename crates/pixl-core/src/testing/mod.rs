//! Test support for integration tests of every crate: a fresh database and a unique queue
//! prefix per test, on the real Postgres and RabbitMQ of the machine.

use sqlx::{Connection, PgConnection, PgPool};

use crate::config::Settings;
use lapin::options::BasicGetOptions;

use crate::messages::QueueMessage;
use crate::queues::{Broker, Topology, WorkQueue};

/// One test's private slice of the real services.
#[derive(Debug)]
pub struct TestContext {
    /// Settings pointing at this test's database and queue prefix.
    pub settings: Settings,
    pub pool: PgPool,
    pub broker: Broker,
}

impl TestContext {
    /// Creates database `pixl_test_<random>` (migrated) and declares queues under prefix
    /// `test-<random>.`. Connection settings come from the environment, as in production.
    pub async fn new() -> Self {
        Self::with_servers(None, None).await
    }

    /// As [`TestContext::new`], on a private RabbitMQ and/or Postgres (tests that stop
    /// and restart them).
    pub async fn with_servers(rabbit: Option<&private::PrivateRabbit>, postgres: Option<&private::PrivatePostgres>) -> Self {
        crate::telemetry::init_for_tests();
        let suffix: u64 = rand::random();
        let mut settings = Settings::from_env().expect("test settings");
        if let Some(rabbit) = rabbit {
            settings.rabbitmq.host = "127.0.0.1".to_owned();
            settings.rabbitmq.port = rabbit.port;
        }
        if let Some(postgres) = postgres {
            settings.database.host = "127.0.0.1".to_owned();
            settings.database.port = postgres.port;
            settings.database.user = "postgres".to_owned();
        }
        settings.database.name = format!("pixl_test_{suffix:016x}");
        settings.queue_prefix = format!("test-{suffix:016x}.");
        // The test project configs (PIXL fixture projects) live beside the test resources.
        settings.project_configs_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test/configs");
        let pool = crate::db::connect(&settings.database, 8).await.expect("test database");
        let broker = Broker::connect(&settings.rabbitmq, Topology::new(settings.queue_prefix.clone())).await.expect("test broker");
        Self { settings, pool, broker }
    }

    /// Takes every ready message off `queue` (acknowledging them), in queue order.
    pub async fn take_messages(&self, queue: WorkQueue) -> Vec<QueueMessage> {
        let channel = self.broker.open_channel().await.expect("channel");
        let name = self.broker.topology().queue_name(queue);
        let mut messages = Vec::new();
        while let Some(delivery) = channel.basic_get(name.as_str().into(), BasicGetOptions { no_ack: true }).await.expect("basic.get") {
            messages.push(QueueMessage::decode(&delivery.data).expect("a pixl message"));
        }
        let _ = channel.close(200, "done".into()).await;
        messages
    }

    /// Takes every ready message off the dead-letter queue of `queue`: each body with its
    /// `x-pixl-failure-reason` header.
    pub async fn take_dead_letters(&self, queue: WorkQueue) -> Vec<(Vec<u8>, String)> {
        let channel = self.broker.open_channel().await.expect("channel");
        let name = self.broker.topology().dead_letter_queue_name(queue);
        let mut letters = Vec::new();
        while let Some(delivery) = channel.basic_get(name.as_str().into(), BasicGetOptions { no_ack: true }).await.expect("basic.get") {
            let reason = delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(crate::queues::FAILURE_REASON_HEADER).cloned())
                .map(|v| match v {
                    lapin::types::AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            letters.push((delivery.data.clone(), reason));
        }
        let _ = channel.close(200, "done".into()).await;
        letters
    }

    /// Drops this test's queues and database. A test that fails before calling it leaves
    /// them behind; `test/run.sh` removes leftovers at the start of a run.
    pub async fn teardown(self) {
        let _ = self.broker.delete_topology().await;
        self.broker.close().await;
        self.pool.close().await;
        if let Ok(mut admin) = PgConnection::connect_with(&self.settings.database.connect_options_for("postgres")).await {
            let _ =
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.settings.database.name))).execute(&mut admin).await;
            let _ = admin.close().await;
        }
    }
}

pub mod peers;
pub mod private;
pub mod tls;
