//! PIXL's CLI habits: `pixl populate --num-retries` rounds (against the real database and
//! broker), and the arguments PIXL's operators type (`--queues a,b`, `start` with a rate of
//! 0, `--debug` anywhere), through the binary.

use std::time::Duration;

use pixl_cli::control::{RetryRounds, retry_rounds};
use pixl_core::ids::ProjectSlug;

use crate::support::{Env, fixture};

const PROJECT: &str = "ms-pinpoint-test";

/// Round 1 queues the failed studies again; they fail again without a new export, so
/// round 2 stops and says why instead of trying forever.
#[tokio::test]
async fn retry_rounds_queue_failed_studies_again_and_stop_when_nothing_changes() {
    let env = Env::new().await;
    env.populate(&fixture("test.csv")).await.unwrap();
    sqlx::query("UPDATE studies SET state = 'failed', failure_reason = 'not found in the VNA', failed_queue = 'imaging-primary'")
        .execute(&env.ctx.pool)
        .await
        .unwrap();
    // Plays imaging-api: whatever is queued again fails again.
    let pool = env.ctx.pool.clone();
    let failer = tokio::spawn(async move {
        loop {
            let _ = sqlx::query("UPDATE studies SET state = 'failed', failure_reason = 'not found in the VNA' WHERE state = 'queued'").execute(&pool).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let rounds = RetryRounds { rounds: 5, pause: Duration::ZERO, poll: Duration::from_millis(20) };
    let mut said = Vec::new();
    retry_rounds(&env.ctx.settings, &[ProjectSlug::parse(PROJECT).unwrap()], &rounds, |line| said.push(line)).await.unwrap();
    failer.abort();
    assert_eq!(said.len(), 2, "{said:?}");
    assert_eq!(said[0], "retries: round 1 of 5: queued 1 failed studies again");
    assert_eq!(said[1], "retries: round 2 exported nothing new; stopping (pixl status shows why studies failed)");
    env.teardown().await;
}

#[test]
fn pixls_arguments_are_taken_or_refused_with_the_reason() {
    let pixl = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_pixl"))
            .args(args)
            .env("IMAGING_API_URL", "http://127.0.0.1:9")
            .env_remove("IMAGING_API_RATE")
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr))
    };
    // Two queues: each study is queued once here.
    let (ok, text) = pixl(&["populate", "cohort.csv", "--queues", "imaging,imaging-secondary"]);
    assert!(!ok && text.contains("--queues takes one queue here"), "{text}");
    // A rate of 0 does not start anything.
    let (ok, text) = pixl(&["start", "--rate", "0"]);
    assert!(!ok && text.contains("it must be more than 0 studies per second"), "{text}");
    // A queue PIXL does not have.
    let (ok, text) = pixl(&["start", "--queues", "ehr"]);
    assert!(!ok && text.contains("expected imaging-primary or imaging-secondary"), "{text}");
    // `--debug` is global, and `start` defaults to imaging-primary (here unreachable).
    let (ok, text) = pixl(&["start", "--debug"]);
    assert!(!ok && text.contains("127.0.0.1:9"), "{text}");
    let (ok, text) = pixl(&["--help"]);
    assert!(ok && text.contains("kill") && text.contains("import-pixl-db"), "{text}");
}
