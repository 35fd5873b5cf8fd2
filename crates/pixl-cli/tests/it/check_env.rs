//! `pixl check-env` against the real services: every check passes on a ready machine, and
//! a broken one is reported with what is wrong, without stopping the other checks.

use crate::support::Env;

#[tokio::test]
async fn reports_each_check_and_keeps_going_after_a_failure() {
    let env = Env::new().await;
    let checks = pixl_cli::check_env::run(&env.ctx.settings).await;
    let report = pixl_cli::check_env::render(&checks);
    assert!(checks.iter().all(|c| c.outcome.is_ok()), "{report}");
    assert!(report.contains("[ok  ] project test-extract-uclh-omop-cdm: valid"), "{report}");

    let mut broken = env.ctx.settings.clone();
    broken.rabbitmq.port = 1;
    broken.project_configs_dir = env.export_root.path().join("no-such-dir");
    let checks = pixl_cli::check_env::run(&broken).await;
    let report = pixl_cli::check_env::render(&checks);
    assert!(report.contains("[FAIL] RabbitMQ 127.0.0.1:1: cannot connect to RabbitMQ"), "{report}");
    assert!(report.contains("[FAIL] project configs in"), "{report}");
    assert!(report.contains("[ok  ] Postgres"), "the other checks still ran: {report}");
    env.teardown().await;
}
