//! `pixl check-env`: is this machine ready to run pixl? Checks configuration, Postgres,
//! RabbitMQ, the project configs, each project's export destinations (their credentials
//! are in the secret store; nothing is contacted) and the export directory, and says what
//! is wrong.

use std::fmt::Write as _;

use pixl_core::config::Settings;
use pixl_core::queues::{Broker, Topology};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub what: String,
    pub outcome: Result<String, String>,
}

/// Runs every check; never stops at the first failure.
pub async fn run(settings: &Settings) -> Vec<Check> {
    let mut checks = Vec::new();

    let db = &settings.database;
    checks.push(Check {
        what: format!("Postgres {}:{}/{}", db.host, db.port, db.name),
        outcome: match pixl_core::db::connect(db, 1).await {
            Ok(pool) => {
                pool.close().await;
                Ok("reachable, migrations applied".to_owned())
            }
            Err(error) => Err(error.to_string()),
        },
    });

    let mq = &settings.rabbitmq;
    checks.push(Check {
        what: format!("RabbitMQ {}:{}", mq.host, mq.port),
        outcome: match Broker::connect(mq, Topology::new(settings.queue_prefix.clone())).await {
            Ok(broker) => {
                broker.close().await;
                Ok("reachable, queues declared".to_owned())
            }
            Err(error) => Err(error.to_string()),
        },
    });

    let configs_dir = &settings.project_configs_dir;
    match pixl_core::project_config::load_all(configs_dir) {
        Err(error) => checks.push(Check { what: format!("project configs in {}", configs_dir.display()), outcome: Err(error.to_string()) }),
        Ok(results) if results.is_empty() => {
            checks.push(Check { what: format!("project configs in {}", configs_dir.display()), outcome: Err("no *.yaml project config found".to_owned()) })
        }
        Ok(results) => {
            let store = export_secret_store();
            for result in results {
                match result {
                    Ok(project) => {
                        checks.push(Check { what: format!("project {}", project.slug), outcome: Ok(format!("valid ({})", project.path.display())) });
                        checks.push(destination_check(&store, &project).await);
                    }
                    Err(error) => checks.push(Check { what: "project config".to_owned(), outcome: Err(error.to_string()) }),
                }
            }
        }
    }

    let export_root = &settings.host_export_root_dir;
    checks.push(Check {
        what: format!("export directory {}", export_root.display()),
        outcome: std::fs::create_dir_all(export_root)
            .and_then(|()| tempfile_in(export_root))
            .map(|()| "writable".to_owned())
            .map_err(|error| error.to_string()),
    });
    checks
}

/// The secret store export-api reads destination credentials from (`EXPORT_API_AZ_*`, else
/// the local secrets file).
fn export_secret_store() -> Result<std::sync::Arc<dyn pixl_secrets::SecretStore>, String> {
    let config = pixl_secrets::SecretsConfig::from_lookup("EXPORT_API", |name| std::env::var(name).ok()).map_err(|e| e.to_string())?;
    config.open().map_err(|e| e.to_string())
}

/// Whether the project's DICOM and parquet destinations have their credentials.
async fn destination_check(store: &Result<std::sync::Arc<dyn pixl_secrets::SecretStore>, String>, project: &pixl_core::project_config::LoadedProject) -> Check {
    let destination = project.config.destination;
    let what = format!("project {} destinations (dicom {:?}, parquet {:?})", project.slug, destination.dicom, destination.parquet).to_lowercase();
    let store = match store {
        Ok(store) => store,
        Err(error) => return Check { what, outcome: Err(format!("export-api secret store: {error}")) },
    };
    let outcome = match pixl_secrets::destinations::check_project(store.as_ref(), project).await {
        Ok(checked) if checked.is_empty() => Ok("no credentials needed".to_owned()),
        Ok(_) => Ok("credentials present".to_owned()),
        Err(error) => Err(error.to_string()),
    };
    Check { what, outcome }
}

fn tempfile_in(dir: &std::path::Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".pixl-check-env-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(probe)
}

/// The report as text, one line per check.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        let (mark, detail) = match &check.outcome {
            Ok(detail) => ("ok  ", detail),
            Err(detail) => ("FAIL", detail),
        };
        let _ = writeln!(out, "[{mark}] {}: {detail}", check.what);
    }
    out
}
