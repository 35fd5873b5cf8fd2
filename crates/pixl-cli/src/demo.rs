//! `pixl demo`: the whole pipeline on this machine. It generates fake studies with the
//! identifiers of the bundled example extract, starts a local archive (Orthanc from
//! Debian's `orthanc` package, or dcmtk's `dcmqrscp`) on loopback and loads them, starts
//! hasher-api (local keys), anon-node, imaging-api and export-api as processes against the
//! local Postgres and RabbitMQ (database `pixl_demo`, queues `demo.*`, both reset first),
//! populates from the extract, follows progress until every study is exported (to the
//! project's `directory` destination, `<demo dir>/research-export`), exports the extract's
//! parquet files with the image linker (`pixl export-patient-data`), and ends with a
//! summary read from the database and the destination. Everything it started is stopped
//! at the end; its files stay in the demo directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use pixl_core::config::Settings;
use pixl_core::queues::{Broker, Topology, WorkQueue};
use sqlx::Row;

use crate::demo_data::{system_test_studies, write_study};
use crate::populate::{PopulateOptions, populate};

/// Options of `pixl demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Working directory (recreated).
    pub dir: PathBuf,
    /// The example extract to populate from.
    pub extract: PathBuf,
    /// How long to wait for the studies to finish.
    pub timeout: Duration,
}

/// A process started by the demo; stopped when dropped.
struct Started {
    name: &'static str,
    child: Child,
}

impl Drop for Started {
    fn drop(&mut self) {
        // SIGTERM first (graceful shutdown), then kill.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("{} did not stop on SIGTERM; killed", self.name);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(program)).find(|p| p.is_file()))
}

async fn wait_for_port(port: u16, what: &str, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if Instant::now() > deadline {
            anyhow::bail!("{what} did not start within 30 s; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn start(name: &'static str, program: &Path, args: &[String], env: &[(String, String)], logs: &Path) -> anyhow::Result<(Started, PathBuf)> {
    let log = logs.join(format!("{name}.log"));
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("TCP_NODELAY", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    Ok((Started { name, child }, log))
}

/// Runs the demo; returns the summary to print.
pub async fn run(settings: &Settings, options: &DemoOptions) -> anyhow::Result<String> {
    let bin_dir = std::env::current_exe()?.parent().map(Path::to_path_buf).context("where is this binary?")?;
    let binary = |name: &str| -> anyhow::Result<PathBuf> {
        let path = bin_dir.join(name);
        anyhow::ensure!(path.is_file(), "{} is missing: build every binary first (cargo build --release --workspace)", path.display());
        Ok(path)
    };
    let (hasher_bin, anon_bin, imaging_bin, export_bin, ehr_bin) =
        (binary("pixl-hasher-api")?, binary("pixl-anon-node")?, binary("pixl-imaging-api")?, binary("pixl-export-api")?, binary("pixl-ehr-api")?);

    let dir = std::path::absolute(&options.dir)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    println!("pixl demo: working in {}", dir.display());

    // The demo's own database and queues, reset.
    let mut settings = settings.clone();
    settings.database.name = "pixl_demo".to_owned();
    settings.queue_prefix = "demo.".to_owned();
    settings.host_export_root_dir = dir.join("exports");
    reset(&settings).await?;

    // Local keys: a fresh hashing key in the demo's secrets file.
    let secrets_file = dir.join("secrets.json");
    let secrets_config =
        pixl_secrets::SecretsConfig::from_lookup("HASHER_API", |name| (name == "PIXL_SECRETS_FILE").then(|| secrets_file.display().to_string()))?;
    crate::secrets::init(&secrets_config, "hashing-key").await?;

    // The archive, loaded with the studies the extract names.
    let anon_dicom = free_port()?;
    let archive_dir = dir.join("archive");
    std::fs::create_dir_all(&archive_dir)?;
    let mut files = Vec::new();
    let studies = system_test_studies();
    for study in &studies {
        files.extend(write_study(&dir.join("generated"), study)?);
    }
    let archive_port = free_port()?;
    let mut processes = Vec::new();
    let archive_kind = if let Some(orthanc) = which("Orthanc") {
        let http = free_port()?;
        let config = serde_json::json!({
            "Name": "VNA", "HttpPort": http, "DicomPort": archive_port, "DicomAet": "VNA",
            "StorageDirectory": archive_dir.join("storage"), "IndexDirectory": archive_dir.join("index"),
            "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
            "DicomAlwaysAllowEcho": true, "DicomAlwaysAllowStore": true, "DicomAlwaysAllowFind": true,
            "DicomAlwaysAllowMove": true, "DicomCheckModalityHost": false, "SynchronousCMove": true,
            "DicomModalities": { "pixl": ["PIXL_RAW", "127.0.0.1", anon_dicom] }, "Plugins": [],
        });
        let config_path = archive_dir.join("orthanc.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let (process, log) = start("orthanc", &orthanc, &[config_path.display().to_string()], &[], &logs)?;
        processes.push(process);
        wait_for_port(http, "Orthanc", &log).await?;
        wait_for_port(archive_port, "Orthanc", &log).await?;
        let client = reqwest::Client::new();
        for file in &files {
            let response = client.post(format!("http://127.0.0.1:{http}/instances")).body(std::fs::read(file)?).send().await?;
            anyhow::ensure!(response.status().is_success(), "Orthanc refused an instance: {}", response.status());
        }
        "Orthanc"
    } else if let Some(dcmqrscp) = which("dcmqrscp") {
        let storage = archive_dir.join("storage");
        std::fs::create_dir_all(&storage)?;
        let config = format!(
            "NetworkTCPPort = {archive_port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n\nHostTable BEGIN\npixl = (PIXL_RAW, 127.0.0.1, {anon_dicom})\nHostTable END\n\nVendorTable BEGIN\nVendorTable END\n\nAETable BEGIN\nVNA {} RW (200, 1024mb) ANY\nAETable END\n",
            storage.display()
        );
        let config_path = archive_dir.join("dcmqrscp.cfg");
        std::fs::write(&config_path, config)?;
        let (process, log) = start("dcmqrscp", &dcmqrscp, &["-c".to_owned(), config_path.display().to_string(), archive_port.to_string()], &[], &logs)?;
        processes.push(process);
        wait_for_port(archive_port, "dcmqrscp", &log).await?;
        let status = Command::new("storescu")
            .env("TCP_NODELAY", "1")
            .args(["-aet", "LOADER", "-aec", "VNA", "127.0.0.1", &archive_port.to_string()])
            .args(&files)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("storescu (dcmtk) is needed to load dcmqrscp")?;
        anyhow::ensure!(status.success(), "storescu could not load the archive");
        "dcmqrscp"
    } else {
        anyhow::bail!("no local DICOM archive: install Debian's orthanc or dcmtk package");
    };
    println!("archive: {archive_kind} (AE VNA) on 127.0.0.1:{archive_port}, {} instances of {} studies loaded", files.len(), studies.len());

    // The EHR: a database in EMAP's star schema with a made-up patient per study, whose
    // report names them, their identifiers and their clinicians.
    let emap = pixl_core::config::DatabaseSettings { name: format!("{}_emap", settings.database.name), ..settings.database.clone() };
    let keys: Vec<(String, String, chrono::NaiveDate)> = studies
        .iter()
        .map(|s| (s.patient_id.clone(), s.accession_number.clone(), chrono::NaiveDate::parse_from_str(&s.study_date, "%Y%m%d").unwrap_or_default()))
        .collect();
    let patients = crate::demo_ehr::patients(&keys, 1);
    crate::demo_ehr::create_database(&emap, &patients).await.context("cannot create the demo's EHR database")?;
    println!("EHR: database {} (EMAP star schema), {} patients with radiology reports", emap.name, patients.len());

    // The services.
    let (hasher_port, anon_http, imaging_http, export_http, ehr_http) = (free_port()?, free_port()?, free_port()?, free_port()?, free_port()?);
    let destination = dir.join("research-export");
    let mut env: Vec<(String, String)> = vec![
        ("PIXL_DB_HOST", settings.database.host.clone()),
        ("PIXL_DB_PORT", settings.database.port.to_string()),
        ("PIXL_DB_USER", settings.database.user.clone()),
        ("PIXL_DB_NAME", settings.database.name.clone()),
        ("PIXL_QUEUE_PREFIX", settings.queue_prefix.clone()),
        ("PROJECT_CONFIGS_DIR", std::path::absolute(&settings.project_configs_dir)?.display().to_string()),
        ("PIXL_SECRETS_FILE", secrets_file.display().to_string()),
        ("HASHER_API_PORT", hasher_port.to_string()),
        ("HASHER_API_URL", format!("http://127.0.0.1:{hasher_port}")),
        ("ANON_NODE_DICOM_PORT", anon_dicom.to_string()),
        ("ANON_NODE_HTTP_PORT", anon_http.to_string()),
        ("ANON_NODE_ALLOWED_CALLERS", "VNA".to_owned()),
        ("ANON_NODE_RAW_CACHE_DIR", dir.join("raw-cache").display().to_string()),
        ("ANON_NODE_ANON_STORE_DIR", dir.join("anon-store").display().to_string()),
        ("IMAGING_API_PORT", imaging_http.to_string()),
        ("ANON_NODE_URL", format!("http://127.0.0.1:{anon_http}")),
        ("PRIMARY_DICOM_SOURCE_AE_TITLE", "VNA".to_owned()),
        ("PRIMARY_DICOM_SOURCE_PORT", archive_port.to_string()),
        ("HOST_EXPORT_ROOT_DIR", settings.host_export_root_dir.display().to_string()),
        ("EXPORT_API_PORT", export_http.to_string()),
        ("EXPORT_API_WORK_DIR", dir.join("export-work").display().to_string()),
        ("EXPORT_DIRECTORY_ROOT", destination.display().to_string()),
        ("PIXL_LOG_FORMAT", "text".to_owned()),
        // Fresh tokens for this run: the internal APIs are never open, not even here.
        ("HASHER_API_TOKEN", pixl_core::hashing::new_hashing_key()),
        ("ANON_NODE_API_TOKEN", pixl_core::hashing::new_hashing_key()),
        ("EHR_API_TOKEN", pixl_core::hashing::new_hashing_key()),
        ("EHR_API_PORT", ehr_http.to_string()),
        ("EMAP_DB_HOST", emap.host.clone()),
        ("EMAP_DB_PORT", emap.port.to_string()),
        ("EMAP_DB_USER", emap.user.clone()),
        ("EMAP_DB_PASSWORD", secrecy::ExposeSecret::expose_secret(&emap.password).to_owned()),
        ("EMAP_DB_NAME", emap.name.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.push(("RUST_LOG".to_owned(), "info".to_owned()));
    let services = [
        ("hasher-api", &hasher_bin, hasher_port),
        ("anon-node", &anon_bin, anon_http),
        ("imaging-api", &imaging_bin, imaging_http),
        ("export-api", &export_bin, export_http),
        ("ehr-api", &ehr_bin, ehr_http),
    ];
    for (name, program, port) in services {
        let (process, log) = start(name, program, &[], &env, &logs)?;
        processes.push(process);
        wait_for_port(port, name, &log).await?;
    }
    println!(
        "services: hasher-api :{hasher_port}, anon-node DICOM :{anon_dicom} HTTP :{anon_http}, imaging-api :{imaging_http}, export-api :{export_http}, ehr-api :{ehr_http} (logs in {})",
        logs.display()
    );

    // Populate from the example extract; imaging-api consumes at its default rate.
    let summary =
        populate(&settings, &PopulateOptions { path: options.extract.clone(), queue: WorkQueue::ImagingPrimary, priority: 1, show_progress: false }).await?;
    for line in summary.to_string().lines() {
        println!("populate: {line}");
    }

    // Progress until every study is exported or failed.
    let pool = pixl_core::db::connect(&settings.database, 2).await?;
    let deadline = Instant::now() + options.timeout;
    let mut last = String::new();
    loop {
        let counts = crate::control::counts_by_state(&pool).await?;
        let line = counts.iter().map(|(state, n)| format!("{state} {n}")).collect::<Vec<_>>().join(", ");
        let ehr_open: i64 = sqlx::query_scalar("SELECT count(*) FROM studies WHERE ehr_wanted AND ehr_state IS NULL").fetch_one(&pool).await?;
        let line = format!("{line}; EHR: {ehr_open} waiting");
        if line != last {
            println!("progress: {line}");
            last = line;
        }
        let open: i64 = counts.iter().filter(|(s, _)| !matches!(s.as_str(), "exported" | "failed")).map(|(_, n)| n).sum::<i64>() + ehr_open;
        if open == 0 {
            break;
        }
        if Instant::now() > deadline {
            println!("stopped waiting after {} s: {open} studies unfinished (see {})", options.timeout.as_secs(), logs.display());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The extract's parquet files, the image linker, the reports and the release report, as
    // `pixl export-patient-data --skip-flagged` does: the demo leaves its flagged report
    // for a person to review (pixl reports list).
    let parquet = match crate::export::export_patient_data(&format!("http://127.0.0.1:{export_http}"), &options.extract, Duration::from_secs(120), true).await {
        Ok(exported) => crate::export::render(&exported),
        Err(error) => format!("export-patient-data failed: {error:#}\n"),
    };
    for line in parquet.lines() {
        println!("export-patient-data: {line}");
    }
    let mut report = summary_report(&pool, &dir, &destination).await?;
    report.push_str(&reports_summary(&pool, &settings.host_export_root_dir).await?);
    pool.close().await;
    drop(processes);
    Ok(report)
}

/// Drops and recreates the demo database; deletes the demo queues.
async fn reset(settings: &Settings) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect_with(&settings.database.connect_options_for("postgres"))
        .await
        .context("cannot reach Postgres (is it running? see README)")?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", settings.database.name))).execute(&mut admin).await?;
    admin.close().await?;
    let broker =
        Broker::connect(&settings.rabbitmq, Topology::new(settings.queue_prefix.clone())).await.context("cannot reach RabbitMQ (is it running? see README)")?;
    broker.delete_topology().await?;
    broker.close().await;
    Ok(())
}

/// The closing summary: every count from the database, every file from the destination.
async fn summary_report(pool: &sqlx::PgPool, dir: &Path, destination: &Path) -> anyhow::Result<String> {
    let rows =
        sqlx::query("SELECT id, project_slug, state::text AS state, failure_reason, deid_summary, pseudo_study_uid, exported_to FROM studies ORDER BY id")
            .fetch_all(pool)
            .await?;
    let mut by_state: BTreeMap<String, i64> = BTreeMap::new();
    let mut out = String::from("\nsummary (from the database)\n");
    for row in &rows {
        *by_state.entry(row.get("state")).or_default() += 1;
    }
    let count = |s: &str| by_state.get(s).copied().unwrap_or(0);
    out.push_str(&format!(
        "  studies: {} queued from the extract; {} retrieved, {} de-identified, {} exported, {} failed\n",
        rows.len(),
        count("retrieved") + count("anonymised") + count("exported"),
        count("anonymised") + count("exported"),
        count("exported"),
        count("failed")
    ));
    for row in &rows {
        let id: i64 = row.get("id");
        let project: String = row.get("project_slug");
        let state: String = row.get("state");
        let uid = row.get::<Option<String>, _>("pseudo_study_uid").unwrap_or_default();
        let deid = row.get::<Option<String>, _>("deid_summary").unwrap_or_default();
        match state.as_str() {
            "exported" => out.push_str(&format!(
                "  study {id} ({project}): exported to {} as {uid}: {deid}\n",
                row.get::<Option<String>, _>("exported_to").unwrap_or_default()
            )),
            "anonymised" => out.push_str(&format!("  study {id} ({project}): de-identified as {uid}, not exported yet: {deid}\n")),
            "failed" => out.push_str(&format!("  study {id} ({project}): failed: {}\n", row.get::<Option<String>, _>("failure_reason").unwrap_or_default())),
            other => out.push_str(&format!("  study {id} ({project}): still {other}\n")),
        }
    }
    out.push_str(&format!("\nexported files (the research environment: {})\n", destination.display()));
    let files = files_under(destination);
    if files.is_empty() {
        out.push_str("  none\n");
    }
    for (path, bytes) in &files {
        out.push_str(&format!("  {} ({})\n", path.display(), human_bytes(*bytes)));
    }
    out.push_str(&format!(
        "\nde-identified studies as anon-node keeps them: {}\nidentifiable working data (raw cache, database pixl_demo) stays inside: {}\n",
        dir.join("anon-store").display(),
        dir.join("raw-cache").display()
    ));
    Ok(out)
}

/// The reports: de-identified, flagged, and where the release report is.
async fn reports_summary(pool: &sqlx::PgPool, export_root: &Path) -> anyhow::Result<String> {
    let states: BTreeMap<String, i64> = sqlx::query_as("SELECT COALESCE(ehr_state::text, 'pending'), count(*) FROM studies WHERE ehr_wanted GROUP BY 1")
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect();
    let spans: Vec<(String, i64)> =
        sqlx::query_as("SELECT k, sum(v::bigint)::bigint FROM ehr_anon, jsonb_each_text(report_spans) AS e (k, v) GROUP BY 1 ORDER BY 2 DESC, 1")
            .fetch_all(pool)
            .await?;
    let flags: Vec<(i64, String)> =
        sqlx::query_as("SELECT study_id, reason FROM report_flags WHERE cleared_by IS NULL ORDER BY study_id, span_start").fetch_all(pool).await?;
    let count = |s: &str| states.get(s).copied().unwrap_or(0);
    let mut out = String::from(
        "
reports (ehr-api: EHR fields and radiology reports)
",
    );
    out.push_str(&format!(
        "  {} de-identified and checked: {} exported in radiology/radiology.parquet, {} flagged by the second check and withheld, {} without an EHR record, {} failed
",
        count("done") + count("flagged"),
        count("done"),
        count("flagged"),
        count("no_record"),
        count("failed"),
    ));
    if !spans.is_empty() {
        out.push_str(&format!(
            "  removed from the reports: {}
",
            spans.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
        ));
    }
    for (study, reason) in &flags {
        out.push_str(&format!(
            "  study {study}: flagged ({reason}); review it with `pixl reports show {study}`, then release or redact it
"
        ));
    }
    let mut release_reports = Vec::new();
    for (path, _) in files_under(export_root) {
        // `latest` is a link to the newest extract's directory: each report once.
        if path.file_name().is_some_and(|n| n == "release-report.html") && !path.components().any(|c| c.as_os_str() == "latest") {
            release_reports.push(export_root.join(path));
        }
    }
    for path in release_reports {
        out.push_str(&format!(
            "  release report: {} (and release-report.json beside it)
",
            path.display()
        ));
    }
    Ok(out)
}

/// Every file under `root` (hidden partial files excluded), relative, with its size.
fn files_under(root: &Path) -> Vec<(PathBuf, u64)> {
    fn walk(root: &Path, dir: &Path, found: &mut Vec<(PathBuf, u64)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, found);
            } else if let Ok(metadata) = entry.metadata() {
                found.push((path.strip_prefix(root).unwrap_or(&path).to_owned(), metadata.len()));
            }
        }
    }
    let mut found = Vec::new();
    walk(root, root, &mut found);
    found.sort();
    found
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}
