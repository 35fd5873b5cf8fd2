//! The ehr-api binary at trace level, killed with SIGKILL in the middle of a run and
//! started again: every study's EHR row ends stored, none is stored twice, no message is
//! left or dead-lettered; and its logs hold no identifier of any patient and no report
//! text.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use pixl_cli::demo_ehr as synthetic;
use pixl_core::config::DatabaseSettings;
use pixl_core::ids::StudyId;
use pixl_core::outbox::{self, MessageKind};
use pixl_core::queues::WorkQueue;
use pixl_core::testing::TestContext;

const PROJECT: &str = "test-extract-uclh-omop-cdm";
const STUDIES: usize = 400;

fn spawn(env: &[(String, String)], log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(pixl_testkit::bin_path("pixl-ehr-api"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

async fn handled(ctx: &TestContext) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM studies WHERE ehr_state IS NOT NULL").fetch_one(&ctx.pool).await.unwrap()
}

async fn wait_until(ctx: &TestContext, at_least: i64, log: &std::path::Path) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let n = handled(ctx).await;
        if n >= at_least {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {at_least} handled: {}",
            std::fs::read_to_string(log).unwrap_or_default().lines().rev().take(20).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_ehr_api_loses_nothing_duplicates_nothing_and_logs_no_identifier_at_trace_level() {
    let ctx = TestContext::new().await;
    let dir = tempfile::tempdir().unwrap();
    let emap = DatabaseSettings { name: format!("{}_emap", ctx.settings.database.name), ..ctx.settings.database.clone() };
    let date = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
    let keys: Vec<(String, String, NaiveDate)> = (0..STUDIES).map(|i| (format!("M{i:07}R"), format!("XRV{i:07}"), date)).collect();
    let patients = synthetic::patients(&keys, 5);
    synthetic::create_database(&emap, &patients).await.unwrap();
    let extract: i64 = sqlx::query_scalar("INSERT INTO extracts (project_slug, extract_datetime) VALUES ($1, now()) RETURNING id")
        .bind(PROJECT)
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO studies (extract_id, project_slug, mrn, accession_number, study_date, ehr_wanted)
         SELECT $1, $2, k.mrn, k.accession, $5, true FROM unnest($3::text[], $4::text[]) AS k (mrn, accession) RETURNING id",
    )
    .bind(extract)
    .bind(PROJECT)
    .bind(keys.iter().map(|k| k.0.clone()).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.1.clone()).collect::<Vec<_>>())
    .bind(date)
    .fetch_all(&ctx.pool)
    .await
    .unwrap();
    let mut tx = ctx.pool.begin().await.unwrap();
    for id in &ids {
        outbox::enqueue(&mut tx, StudyId(*id), MessageKind::Ehr, WorkQueue::Ehr, 0).await.unwrap();
    }
    tx.commit().await.unwrap();
    outbox::relay(&ctx.pool, &ctx.broker, 1_000, |_| {}).await.unwrap();

    let settings = &ctx.settings;
    let env: Vec<(String, String)> = [
        ("PIXL_DB_HOST", settings.database.host.clone()),
        ("PIXL_DB_PORT", settings.database.port.to_string()),
        ("PIXL_DB_USER", settings.database.user.clone()),
        ("PIXL_DB_NAME", settings.database.name.clone()),
        ("PIXL_QUEUE_PREFIX", settings.queue_prefix.clone()),
        ("PROJECT_CONFIGS_DIR", settings.project_configs_dir.display().to_string()),
        ("EHR_API_PORT", pixl_core::testing::peers::free_port().to_string()),
        ("EHR_API_TOKEN", "system-test-ehr-token".to_owned()),
        ("EHR_API_CONCURRENCY", "4".to_owned()),
        ("EMAP_DB_HOST", emap.host.clone()),
        ("EMAP_DB_PORT", emap.port.to_string()),
        ("EMAP_DB_USER", emap.user.clone()),
        ("EMAP_DB_NAME", emap.name.clone()),
        ("PIXL_LOG_FORMAT", "text".to_owned()),
        ("RUST_LOG", "trace".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let log = dir.path().join("ehr-api.log");

    let mut first = spawn(&env, &log);
    let before_kill = wait_until(&ctx, 40, &log).await;
    first.kill().unwrap();
    first.wait().unwrap();
    let after_kill = handled(&ctx).await;
    assert!(after_kill < STUDIES as i64, "killed mid-run: {before_kill}..{after_kill} of {STUDIES} handled");

    let mut second = spawn(&env, &log);
    wait_until(&ctx, STUDIES as i64, &log).await;
    // The queue drains: the last acknowledgements arrive after the last commit.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctx.broker.counts(&ctx.broker.topology().queue_name(WorkQueue::Ehr)).await.unwrap().messages > 0 {
        assert!(Instant::now() < deadline, "messages left on the ehr queue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.kill().unwrap();
    second.wait().unwrap();

    // Nothing lost: every study stored, one row each; nothing dead-lettered.
    let states: BTreeMap<String, i64> =
        sqlx::query_as("SELECT ehr_state::text, count(*) FROM studies GROUP BY 1").fetch_all(&ctx.pool).await.unwrap().into_iter().collect();
    assert_eq!(states, BTreeMap::from([("done".to_owned(), STUDIES as i64 - 1), ("flagged".to_owned(), 1)]));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ehr_anon").fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(rows, STUDIES as i64);
    let flags: i64 = sqlx::query_scalar("SELECT count(*) FROM report_flags").fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(flags, 1, "the flagged report's flag, once");
    assert!(ctx.take_dead_letters(WorkQueue::Ehr).await.is_empty());

    // Nothing duplicated: no study was de-identified and stored twice.
    let logs = std::fs::read_to_string(&log).unwrap();
    let study = regex::Regex::new(r"study=(\d+)").unwrap();
    let mut stored: BTreeMap<i64, usize> = BTreeMap::new();
    for line in logs.lines().filter(|l| l.contains("EHR record de-identified and checked")) {
        let id: i64 = study.captures(line).unwrap_or_else(|| panic!("no study in {line}"))[1].parse().unwrap();
        *stored.entry(id).or_default() += 1;
    }
    assert!(stored.values().all(|n| *n == 1), "stored twice: {:?}", stored.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>());
    assert!(stored.len() >= STUDIES - 4, "the log records (nearly) every study: {}", stored.len());

    // Trace-level logs: no identifier of any patient, no report text.
    assert!(logs.contains("TRACE"), "the logs are at trace level");
    for patient in &patients {
        for identifier in patient.identifiers() {
            assert!(!logs.contains(&identifier), "the logs contain an identifier of a patient");
        }
    }
    for fragment in ["Clinical details", "consultant radiologist", "Walked", "[NAME]"] {
        assert!(!logs.contains(fragment), "the logs contain report text ({fragment})");
    }
    synthetic::drop_database(&emap).await.unwrap();
    ctx.teardown().await;
}
