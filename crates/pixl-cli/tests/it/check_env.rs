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

#[tokio::test]
async fn a_destination_without_its_credentials_is_reported_by_secret_name() {
    let env = Env::new().await;
    let configs = env.export_root.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    let test_configs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test/configs");
    std::os::unix::fs::symlink(std::fs::canonicalize(test_configs.join("tag-operations")).unwrap(), configs.join("tag-operations")).unwrap();
    let yaml = std::fs::read_to_string(test_configs.join("test-extract-uclh-omop-cdm.yaml")).unwrap().replace("dicom: \"directory\"", "dicom: \"ftps\"");
    std::fs::write(configs.join("test-extract-uclh-omop-cdm.yaml"), yaml).unwrap();
    let mut settings = env.ctx.settings.clone();
    settings.project_configs_dir = configs;
    // No secrets file at PIXL_SECRETS_FILE (the default path does not exist here): the
    // FTPS credentials are missing.
    let report = pixl_cli::check_env::render(&pixl_cli::check_env::run(&settings).await);
    assert!(
        report.contains(
            "[FAIL] project test-extract-uclh-omop-cdm destinations (dicom ftps, parquet directory): secret test-extract-uclh-omop-cdm--ftp--host is not in the secret store"
        ),
        "{report}"
    );
    env.teardown().await;
}
