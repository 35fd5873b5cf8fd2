//! `pixl check-env`: is this machine ready to run pixl? Checks configuration, Postgres,
//! RabbitMQ, the project configs, each project's export destinations (their credentials
//! are in the secret store; nothing is contacted) and the export directory, and says what
//! is wrong. PIXL's variables that are set are reported: where pixl reads them, or why
//! they have no effect.
//!
//! Offline parts, for a site migrating from PIXL: `--project-configs DIR` checks a
//! directory of project configs with their tag-operation files and deid recipes;
//! `--sample-env-file F` (PIXL's option) checks that every variable of F is set.

use std::fmt::Write as _;
use std::path::Path;

use pixl_core::config::Settings;
use pixl_core::queues::{Broker, Topology};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub what: String,
    /// `Ok` with text starting `warning: ` is shown as a warning; it does not fail.
    pub outcome: Result<String, String>,
}

impl Check {
    pub fn warning(what: &str, text: &str) -> Self {
        Self { what: what.to_owned(), outcome: Ok(format!("warning: {text}")) }
    }

    pub fn is_warning(&self) -> bool {
        self.outcome.as_ref().is_ok_and(|text| text.starts_with("warning: "))
    }
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
                        for warning in &project.warnings {
                            checks.push(Check::warning(&format!("project {}", project.slug), warning));
                        }
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

/// Checks every `*.yaml` project config in `dir` as the services would load it: the
/// config, its tag-operation files (merged into a scheme) and its deid recipes. One line
/// per file (and one per warning). Contacts nothing.
pub fn project_configs(dir: &Path) -> Vec<Check> {
    let results = match pixl_core::project_config::load_all(dir) {
        Err(error) => return vec![Check { what: format!("project configs in {}", dir.display()), outcome: Err(error.to_string()) }],
        Ok(results) if results.is_empty() => {
            return vec![Check { what: format!("project configs in {}", dir.display()), outcome: Err("no *.yaml project config found".to_owned()) }];
        }
        Ok(results) => results,
    };
    let mut checks = Vec::new();
    for result in results {
        let loaded = match result {
            Ok(loaded) => loaded,
            Err(error) => {
                checks.push(Check { what: "project config".to_owned(), outcome: Err(error.to_string()) });
                continue;
            }
        };
        let file = loaded.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let what = format!("{file} (project {})", loaded.slug);
        match pixl_deid::Project::load(dir, &loaded.slug) {
            Ok(project) => {
                let recipes = project.loaded.deid_recipe_files.len();
                let detail = format!(
                    "valid: {} tag rules from {} file(s), {} manufacturer override(s), {recipes} deid recipe(s); destinations dicom {}, parquet {}",
                    project.scheme.base_len(),
                    project.loaded.base_tag_files.len(),
                    project.scheme.overrides_len(),
                    format!("{:?}", project.loaded.config.destination.dicom).to_lowercase(),
                    format!("{:?}", project.loaded.config.destination.parquet).to_lowercase(),
                );
                checks.push(Check { what: what.clone(), outcome: Ok(detail) });
                for warning in &project.loaded.warnings {
                    checks.push(Check::warning(&what, warning));
                }
            }
            Err(error) => checks.push(Check { what, outcome: Err(error.to_string()) }),
        }
    }
    checks
}

/// PIXL's `--sample-env-file`: every variable named in `sample` must be set (an empty
/// value counts as set, as in PIXL). Missing ones fail with `error`, else warn.
pub fn sample_env(sample: &Path, error: bool) -> Vec<Check> {
    let what = format!("variables of {}", sample.display());
    let text = match std::fs::read_to_string(sample) {
        Ok(text) => text,
        Err(e) => return vec![Check { what, outcome: Err(format!("cannot read it: {e}")) }],
    };
    let names: Vec<String> = match pixl_core::config::dotenv_pairs(&text) {
        Ok(pairs) => pairs.into_iter().map(|(name, _)| name).collect(),
        Err(index) => return vec![Check { what, outcome: Err(format!("cannot parse it: syntax error at character {index}")) }],
    };
    let missing: Vec<&String> = names.iter().filter(|name| std::env::var_os(name.as_str()).is_none()).collect();
    let mut checks: Vec<Check> = missing
        .iter()
        .map(|name| {
            let text = format!("environment variable {name} is not set");
            if error { Check { what: what.clone(), outcome: Err(text) } } else { Check::warning(&what, &text) }
        })
        .collect();
    if missing.is_empty() {
        checks.push(Check { what, outcome: Ok(format!("all {} are set", names.len())) });
    }
    checks
}

/// PIXL's variables that are set: where pixl reads each, or why it has no effect.
pub fn pixl_variables() -> Vec<Check> {
    pixl_core::pixl_env::report(|name| std::env::var(name).ok())
        .into_iter()
        .map(|(name, line)| match line {
            Ok(text) => Check { what: name.to_owned(), outcome: Ok(text) },
            Err(text) => Check::warning(name, &text),
        })
        .collect()
}

/// The secret store export-api reads destination credentials from (`EXPORT_API_AZ_*`, else
/// the local secrets file).
fn export_secret_store() -> Result<std::sync::Arc<dyn pixl_secrets::SecretStore>, String> {
    let config = pixl_secrets::SecretsConfig::from_lookup("EXPORT_API", pixl_core::pixl_env::process_lookup).map_err(|e| e.to_string())?;
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
            Ok(detail) => match detail.strip_prefix("warning: ") {
                Some(warning) => ("warn", warning),
                None => ("ok  ", detail.as_str()),
            },
            Err(detail) => ("FAIL", detail.as_str()),
        };
        let _ = writeln!(out, "[{mark}] {}: {detail}", check.what);
    }
    out
}
