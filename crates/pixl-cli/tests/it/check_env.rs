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

fn pixl_configs() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/pixl-configs")
}

/// `pixl check-env` as a PIXL site runs it first: its configs directory and its `.env`.
/// Offline: no service is needed, and PIXL's variables are named, each with where it goes
/// or why it has no effect.
#[test]
fn a_pixl_site_checks_its_configs_and_env_offline() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pixl"))
        .current_dir(dir.path())
        .args(["check-env", "--project-configs"])
        .arg(pixl_configs())
        .arg("--sample-env-file")
        .arg(pixl_configs().join("PIXL.env.sample"))
        .env("ORTHANC_RAW_URL", "http://orthanc-raw:8042")
        .env("EXPORT_AZ_CLIENT_ID", "client")
        .env("PRIMARY_DICOM_SOURCE_IP_ADDR", "10.1.2.3")
        // Nothing listens here: the offline checks must not need it.
        .env("PIXL_DB_PORT", "1")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    // Without --error, unset variables of the sample are warnings (as in PIXL).
    assert!(output.status.success(), "{report}{}", String::from_utf8_lossy(&output.stderr));
    for config in std::fs::read_dir(pixl_configs()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| n.ends_with(".yaml")) {
        assert!(report.contains(&format!("[ok  ] {config} (project ")), "{config}: {report}");
    }
    assert!(report.contains("[warn] variables of"), "{report}");
    assert!(report.contains("environment variable SKIP_ALEMBIC is not set"), "{report}");
    assert!(report.contains("[warn] ORTHANC_RAW_URL: PIXL variable ORTHANC_RAW_URL has no effect here because pixl has no Orthanc"), "{report}");
    assert!(report.contains("[ok  ] EXPORT_AZ_CLIENT_ID: PIXL variable EXPORT_AZ_CLIENT_ID is read as EXPORT_API_AZ_CLIENT_ID"), "{report}");
    assert!(report.contains("PRIMARY_DICOM_SOURCE_IP_ADDR is read as PRIMARY_DICOM_SOURCE_HOST"), "{report}");
    assert!(!report.contains("Postgres"), "offline: {report}");

    // --error: a missing variable fails the command.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pixl"))
        .current_dir(dir.path())
        .args(["check-env", "--error", "--sample-env-file"])
        .arg(pixl_configs().join("PIXL.env.sample"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{report}");
    assert!(report.contains("[FAIL] variables of"), "{report}");

    // PIXL's own sample as the site's .env (its `ORTHANC_RAW_MAXIMUM_STORAGE_SIZE= // MB`
    // line included): read as compose reads it, every variable set, each PIXL-only one named.
    std::fs::copy(pixl_configs().join("PIXL.env.sample"), dir.path().join(".env")).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pixl"))
        .current_dir(dir.path())
        .args(["check-env", "--error", "--sample-env-file"])
        .arg(pixl_configs().join("PIXL.env.sample"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}{}", String::from_utf8_lossy(&output.stderr));
    assert!(report.contains("[ok  ] variables of") && report.contains("are set"), "{report}");
    assert!(report.contains("[warn] SKIP_ALEMBIC: PIXL variable SKIP_ALEMBIC has no effect here because"), "{report}");
    assert!(
        report.contains(
            "[warn] ORTHANC_RAW_MAXIMUM_STORAGE_SIZE: PIXL variable ORTHANC_RAW_MAXIMUM_STORAGE_SIZE holds no value pixl can use; ANON_NODE_RAW_CACHE_MAX_SIZE_MB keeps its default"
        ),
        "{report}"
    );
}

/// A broken config is named with its file, field and problem; the others still pass.
#[test]
fn a_broken_config_is_named_with_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    std::os::unix::fs::symlink(pixl_configs().join("tag-operations"), configs.join("tag-operations")).unwrap();
    std::os::unix::fs::symlink(pixl_configs().join("image-operations"), configs.join("image-operations")).unwrap();
    std::fs::copy(pixl_configs().join("ms-pinpoint.yaml"), configs.join("ms-pinpoint.yaml")).unwrap();
    let broken = std::fs::read_to_string(pixl_configs().join("prognosis-ai.yaml")).unwrap().replace("\"ion-neuro-db.yaml\"", "\"no-such-file.yaml\"");
    std::fs::write(configs.join("prognosis-ai.yaml"), broken).unwrap();
    let typo = std::fs::read_to_string(pixl_configs().join("test-mr-spectroscopy.yaml")).unwrap().replace("series_filters:", "series_filter:");
    std::fs::write(configs.join("test-mr-spectroscopy.yaml"), typo).unwrap();

    let checks = pixl_cli::check_env::project_configs(&configs);
    let report = pixl_cli::check_env::render(&checks);
    assert!(report.contains("[ok  ] ms-pinpoint.yaml (project ms-pinpoint): valid"), "{report}");
    assert!(report.contains("prognosis-ai.yaml: field `tag_operation_files.base[2]`:") && report.contains("no-such-file.yaml does not exist"), "{report}");
    assert!(report.contains("[warn] test-mr-spectroscopy.yaml (project test-mr-spectroscopy):") && report.contains("series_filter"), "{report}");
    assert_eq!(checks.iter().filter(|c| c.outcome.is_err()).count(), 1, "{report}");
}
