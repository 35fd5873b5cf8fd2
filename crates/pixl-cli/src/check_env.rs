//! `pixl check-env`: is this machine ready to run pixl? Checks configuration, Postgres,
//! RabbitMQ, the project configs and the export directory, and says what is wrong.

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
        Ok(results) if results.is_empty() => checks.push(Check {
            what: format!("project configs in {}", configs_dir.display()),
            outcome: Err("no *.yaml project config found".to_owned()),
        }),
        Ok(results) => {
            for result in results {
                checks.push(match result {
                    Ok(project) => Check {
                        what: format!("project {}", project.slug),
                        outcome: Ok(format!("valid ({})", project.path.display())),
                    },
                    Err(error) => Check { what: "project config".to_owned(), outcome: Err(error.to_string()) },
                });
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
