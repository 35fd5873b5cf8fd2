//! The consumer, the state machine and the outbox against the real RabbitMQ and Postgres:
//! a panicking handler dead-letters its message and the next one is processed; passing
//! problems come back through delay queues without holding up other messages, and give
//! up after their attempts; a held study is deferred, not counted; states never move
//! backwards; a broken constraint is permanent; a bad outbox row is moved aside; a broker
//! restart is survived by publishing and consuming alike.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pixl_core::consumer::{ConsumerSpec, Handled, Retry, Settler, claim_study};
use pixl_core::ids::{ProjectSlug, StudyId};
use pixl_core::messages::{QueueMessage, StudyRef};
use pixl_core::outbox::{self, MessageKind};
use pixl_core::queues::{Outgoing, WorkQueue};
use pixl_core::retry::Backoff;
use pixl_core::state::{self, Changes, StudyState};
use pixl_core::testing::TestContext;
use pixl_core::testing::private::PrivateRabbit;
use tokio_util::sync::CancellationToken;

const PROJECT: &str = "consumer-test";

async fn insert_study(ctx: &TestContext, state: &str, pseudo_uid: Option<&str>) -> StudyId {
    let extract: i64 = sqlx::query_scalar(
        "INSERT INTO extracts (project_slug, extract_datetime) VALUES ($1, '2024-01-01T00:00:00Z')
         ON CONFLICT ON CONSTRAINT extracts_identity DO UPDATE SET project_slug = EXCLUDED.project_slug RETURNING id",
    )
    .bind(PROJECT)
    .fetch_one(&ctx.pool)
    .await
    .unwrap();
    let accession = format!("ACC{}", rand::random::<u32>());
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO studies (extract_id, project_slug, mrn, accession_number, state, pseudo_study_uid) VALUES ($1, $2, '40012345', $3, $4::study_state, $5) RETURNING id",
    )
    .bind(extract)
    .bind(PROJECT)
    .bind(accession)
    .bind(state)
    .bind(pseudo_uid)
    .fetch_one(&ctx.pool)
    .await
    .unwrap();
    StudyId(id)
}

async fn publish(ctx: &TestContext, queue: WorkQueue, study: StudyId) {
    let message = QueueMessage::AnonymiseV1(StudyRef { study_id: study, project: ProjectSlug::parse(PROJECT).unwrap() });
    ctx.broker.publish(&Outgoing { queue, priority: 0, message }).await.unwrap();
}

async fn study_state(ctx: &TestContext, id: StudyId) -> (String, Option<String>, i32) {
    sqlx::query_as("SELECT state::text, failure_reason, attempts FROM studies WHERE id = $1").bind(id.0).fetch_one(&ctx.pool).await.unwrap()
}

fn settler(ctx: &TestContext, max_attempts: u32) -> Settler {
    Settler {
        pool: ctx.pool.clone(),
        broker: ctx.broker.clone(),
        queue: WorkQueue::Anonymise,
        retry: Retry { max_attempts, backoff: Backoff::new(Duration::from_millis(250), Duration::from_secs(1)) },
    }
}

fn spec() -> ConsumerSpec {
    ConsumerSpec { tag: "consumer-test", concurrency: 4, grace: Duration::from_secs(5) }
}

async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn study_of(body: &[u8]) -> StudyId {
    QueueMessage::decode(body).unwrap().study_id()
}

#[tokio::test]
async fn a_panicking_handler_dead_letters_its_message_and_the_next_is_processed() {
    let ctx = TestContext::new().await;
    let (bad, good) = (insert_study(&ctx, "retrieved", None).await, insert_study(&ctx, "retrieved", None).await);
    publish(&ctx, WorkQueue::Anonymise, bad).await;
    publish(&ctx, WorkQueue::Anonymise, good).await;
    let done = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let seen = Arc::clone(&done);
    let consumer = tokio::spawn(pixl_core::consumer::consume(settler(&ctx, 3), spec(), shutdown.clone(), move |body| {
        let seen = Arc::clone(&seen);
        async move {
            let study = study_of(&body);
            // Inside a blocking task, as the de-identification runs: its panic reaches here
            // through the JoinHandle.
            tokio::task::spawn_blocking(move || assert!(study != bad, "a bug in the handler")).await.expect("the blocking task finished");
            seen.lock().unwrap().push(study);
            Handled::Done
        }
    }));
    let letters = wait_for("the dead letter", async || Some(ctx.take_dead_letters(WorkQueue::Anonymise).await).filter(|l| !l.is_empty())).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(study_of(&letters[0].0), bad);
    assert_eq!(letters[0].1, "internal error in de-identification");
    wait_for("the next message", async || done.lock().unwrap().contains(&good).then_some(())).await;
    assert_eq!(study_state(&ctx, bad).await, ("failed".to_owned(), Some("internal error in de-identification".to_owned()), 0));
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    ctx.teardown().await;
}

#[tokio::test]
async fn passing_problems_wait_in_delay_queues_and_give_up_after_their_attempts() {
    let ctx = TestContext::new().await;
    let (failing, healthy, held) =
        (insert_study(&ctx, "retrieved", None).await, insert_study(&ctx, "retrieved", None).await, insert_study(&ctx, "retrieved", None).await);
    let calls: Arc<Mutex<BTreeMap<i64, Vec<Instant>>>> = Arc::default();
    let shutdown = CancellationToken::new();
    let seen = Arc::clone(&calls);
    let consumer = tokio::spawn(pixl_core::consumer::consume(settler(&ctx, 3), spec(), shutdown.clone(), move |body| {
        let seen = Arc::clone(&seen);
        async move {
            let study = study_of(&body);
            let calls = {
                let mut seen = seen.lock().unwrap();
                let entry = seen.entry(study.0).or_default();
                entry.push(Instant::now());
                entry.len()
            };
            if study == failing {
                Handled::transient(study, "destination unreachable")
            } else if study == held && calls <= 3 {
                // Held by another delivery: deferred, never counted as an attempt.
                Handled::Deferred { study, reason: "held".to_owned(), after: Duration::from_millis(200) }
            } else {
                Handled::Done
            }
        }
    }));
    publish(&ctx, WorkQueue::Anonymise, failing).await;
    publish(&ctx, WorkQueue::Anonymise, held).await;
    // The healthy study, published after the failing one, is done while the failing one
    // waits for its retry: nothing sleeps in a handler.
    publish(&ctx, WorkQueue::Anonymise, healthy).await;
    wait_for("the healthy study", async || calls.lock().unwrap().contains_key(&healthy.0).then_some(())).await;
    assert!(calls.lock().unwrap()[&failing.0].len() < 3, "the failing study had not given up yet");

    let letters = wait_for("the dead letter", async || Some(ctx.take_dead_letters(WorkQueue::Anonymise).await).filter(|l| !l.is_empty())).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].1, "gave up after 3 attempts: destination unreachable");
    let attempts = calls.lock().unwrap()[&failing.0].clone();
    assert_eq!(attempts.len(), 3);
    // Doubling pauses from 250 ms: 250 then 500 (delay queues round up, never down).
    assert!(attempts[1] - attempts[0] >= Duration::from_millis(250), "{:?}", attempts[1] - attempts[0]);
    assert!(attempts[2] - attempts[1] >= Duration::from_millis(500), "{:?}", attempts[2] - attempts[1]);
    assert_eq!(study_state(&ctx, failing).await.0, "failed");
    // Deferred four times over, the held study still ends done (deferrals are not attempts).
    wait_for("the held study", async || (calls.lock().unwrap().get(&held.0).map_or(0, Vec::len) == 4).then_some(())).await;
    assert_eq!(study_state(&ctx, held).await.0, "retrieved");
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    ctx.teardown().await;
}

#[tokio::test]
async fn a_study_is_claimed_by_one_delivery_at_a_time() {
    let ctx = TestContext::new().await;
    let study = insert_study(&ctx, "retrieved", None).await;
    let body = QueueMessage::AnonymiseV1(StudyRef { study_id: study, project: ProjectSlug::parse(PROJECT).unwrap() }).encode();
    let first = claim_study(&ctx.pool, &body, MessageKind::Anonymise, "state::text AS state").await.unwrap();
    let second = claim_study(&ctx.pool, &body, MessageKind::Anonymise, "state::text AS state").await.unwrap_err();
    assert!(matches!(second, Handled::Deferred { .. }), "{second:?}");
    // Another stage of the same study is not held up.
    let export = QueueMessage::ExportV1(pixl_core::messages::ExportRequest {
        study_id: study,
        project: ProjectSlug::parse(PROJECT).unwrap(),
        pseudo_study_uid: pixl_core::ids::PseudoStudyUid::parse("2.25.1").unwrap(),
    });
    claim_study(&ctx.pool, &export.encode(), MessageKind::Export, "state::text AS state").await.unwrap();
    // The lock goes with its transaction, also when the holder is dropped (an early return
    // or a panic): sqlx rolls the transaction back as its connection goes back to the pool,
    // a moment later.
    drop(first);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match claim_study(&ctx.pool, &body, MessageKind::Anonymise, "state::text AS state").await {
            Ok(_) => break,
            Err(Handled::Deferred { .. }) if std::time::Instant::now() < deadline => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            Err(other) => panic!("the dropped holder's lock was not released: {other:?}"),
        }
    }
    ctx.teardown().await;
}

#[tokio::test]
async fn states_never_move_backwards_and_broken_constraints_are_permanent() {
    let ctx = TestContext::new().await;
    let mut conn = ctx.pool.acquire().await.unwrap();
    let study = insert_study(&ctx, "anonymised", Some("2.25.77")).await;
    // A redelivered imaging message cannot roll de-identification back.
    assert!(!state::transition(&mut conn, study, StudyState::Retrieving, &Changes::default()).await.unwrap());
    assert!(!state::fail(&mut conn, study, WorkQueue::ImagingPrimary, "late failure").await.unwrap());
    assert_eq!(study_state(&ctx, study).await.0, "anonymised");
    assert!(state::transition(&mut conn, study, StudyState::Exported, &Changes { exported_to: Some("none"), ..Default::default() }).await.unwrap());
    assert!(!state::fail(&mut conn, study, WorkQueue::Export, "late failure").await.unwrap());
    assert_eq!(study_state(&ctx, study).await.0, "exported");

    // A second study claiming the same pseudonymous UID breaks a unique index: permanent,
    // and the reason names the constraint, not the value.
    let other = insert_study(&ctx, "retrieved", None).await;
    let error =
        state::transition(&mut conn, other, StudyState::Anonymised, &Changes { pseudo_study_uid: Some("2.25.77"), ..Default::default() }).await.unwrap_err();
    let handled = Handled::database(other, &error);
    let Handled::Permanent { reason, .. } = handled else { panic!("{handled:?}") };
    assert!(reason.contains("studies_pseudo_study_uid"), "{reason}");
    assert!(!reason.contains("2.25.77"), "{reason}");
    drop(conn);
    ctx.teardown().await;
}

#[tokio::test]
async fn one_bad_outbox_row_is_moved_aside_and_the_rest_is_published() {
    let ctx = TestContext::new().await;
    let good = insert_study(&ctx, "queued", None).await;
    let orphan = StudyId(good.0 + 1_000_000);
    let bad_export = insert_study(&ctx, "anonymised", None).await;
    let mut tx = ctx.pool.begin().await.unwrap();
    outbox::enqueue(&mut tx, good, MessageKind::Imaging, WorkQueue::ImagingPrimary, 1).await.unwrap();
    // A message for a study that no longer exists, and an export without a pseudonymous UID.
    sqlx::query("INSERT INTO outbox (study_id, kind, queue) VALUES ($1, 'imaging', 'imaging-primary')").bind(orphan.0).execute(&mut *tx).await.unwrap();
    outbox::enqueue(&mut tx, bad_export, MessageKind::Export, WorkQueue::Export, 0).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(outbox::relay(&ctx.pool, &ctx.broker, 100, |_| {}).await.unwrap(), 1);
    let published: Vec<StudyId> = ctx.take_messages(WorkQueue::ImagingPrimary).await.iter().map(QueueMessage::study_id).collect();
    assert_eq!(published, [good]);
    assert_eq!(outbox::pending(&ctx.pool).await.unwrap(), 0);
    let rejected: Vec<(i64, String)> = sqlx::query_as("SELECT study_id, reason FROM outbox_rejected ORDER BY study_id").fetch_all(&ctx.pool).await.unwrap();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(rejected.iter().any(|(id, reason)| *id == orphan.0 && reason.contains("no longer exists")), "{rejected:?}");
    assert!(rejected.iter().any(|(id, reason)| *id == bad_export.0 && reason.contains("without a pseudonymous UID")), "{rejected:?}");
    let (state, reason, _) = study_state(&ctx, bad_export).await;
    assert_eq!(state, "failed");
    assert!(reason.unwrap().contains("its export message could not be sent"));
    ctx.teardown().await;
}

#[tokio::test]
async fn publishing_and_consuming_survive_a_broker_restart() {
    let rabbit = tokio::task::spawn_blocking(PrivateRabbit::start).await.unwrap();
    let ctx = TestContext::with_servers(Some(&rabbit), None).await;
    let (before, after) = (insert_study(&ctx, "retrieved", None).await, insert_study(&ctx, "retrieved", None).await);
    let done = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let seen = Arc::clone(&done);
    let consumer = tokio::spawn(pixl_core::consumer::consume(settler(&ctx, 3), spec(), shutdown.clone(), move |body| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock().unwrap().push(study_of(&body));
            Handled::Done
        }
    }));
    publish(&ctx, WorkQueue::Anonymise, before).await;
    wait_for("the first message", async || done.lock().unwrap().contains(&before).then_some(())).await;

    let rabbit = std::sync::Arc::new(rabbit);
    let blocking = |rabbit: &std::sync::Arc<PrivateRabbit>, stop: bool| {
        let rabbit = std::sync::Arc::clone(rabbit);
        tokio::task::spawn_blocking(move || if stop { rabbit.stop_app() } else { rabbit.start_app() })
    };
    blocking(&rabbit, true).await.unwrap();
    wait_for("the broker to be seen down", async || (!ctx.broker.is_connected()).then_some(())).await;
    blocking(&rabbit, false).await.unwrap();
    // The same broker handle publishes again once the node is back (it reconnects).
    wait_for("a publish after the restart", async || {
        let message = QueueMessage::AnonymiseV1(StudyRef { study_id: after, project: ProjectSlug::parse(PROJECT).unwrap() });
        ctx.broker.publish(&Outgoing { queue: WorkQueue::Anonymise, priority: 0, message }).await.ok()
    })
    .await;
    assert!(ctx.broker.is_connected());
    // And the consumer, which lost its channel, consumes it.
    wait_for("the message after the restart", async || done.lock().unwrap().contains(&after).then_some(())).await;
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    ctx.teardown().await;
    drop(rabbit);
}
