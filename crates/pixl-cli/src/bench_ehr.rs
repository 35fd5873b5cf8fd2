//! `pixl bench ehr`: reports per second through ehr-api (EHR query, de-identification,
//! second check, store) against the engine alone (`pixl deid-text` on the same texts with
//! the same probes), in the same run, each pinned to one core (`taskset -c 0`). Postgres
//! and RabbitMQ run where they are (the other cores): their work for ehr-api is part of
//! its rate, not of its core.
//!
//! The studies, their EMAP database (`<db>_bench_emap`) and the pixl database
//! (`<db>_bench_ehr`) are generated afresh, seeded; the report texts and probes are
//! written to WORK for the engine's run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use pixl_core::config::Settings;
use pixl_core::ids::StudyId;
use pixl_core::outbox::{self, MessageKind};
use pixl_core::queues::{Broker, Topology, WorkQueue};

const PROJECT: &str = "test-extract-uclh-omop-cdm";

/// What one run measured.
#[derive(Debug, Clone)]
pub struct EhrBench {
    pub studies: usize,
    pub engine_seconds: f64,
    pub service_seconds: f64,
}

impl std::fmt::Display for EhrBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let engine = self.studies as f64 / self.engine_seconds;
        let service = self.studies as f64 / self.service_seconds;
        writeln!(f, "studies: {}", self.studies)?;
        writeln!(f, "engine alone (pixl deid-text, one core):  {:.2} s, {engine:.0} reports/s", self.engine_seconds)?;
        writeln!(f, "ehr-api (query + de-id + check + store):  {:.2} s, {service:.0} reports/s", self.service_seconds)?;
        writeln!(f, "ehr-api / engine: {:.0}%", 100.0 * service / engine)
    }
}

fn pinned(program: &Path) -> Command {
    if Path::new("/usr/bin/taskset").exists() {
        let mut command = Command::new("taskset");
        command.arg("-c").arg("0").arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Runs the benchmark with `studies` studies; `bin_dir` holds `pixl` and `pixl-ehr-api`.
pub async fn run(settings: &Settings, studies: usize, work: &Path, bin_dir: &Path) -> anyhow::Result<EhrBench> {
    std::fs::create_dir_all(work)?;
    let date = chrono::NaiveDate::from_ymd_opt(2024, 5, 1).expect("a date");
    let keys: Vec<(String, String, chrono::NaiveDate)> = (0..studies).map(|i| (format!("B{i:08}"), format!("BENCH{i:08}"), date)).collect();
    let patients = crate::demo_ehr::patients(&keys, 42);

    // The engine's input: the report as ehr-api assembles it, and the probes it derives.
    let reports = work.join("reports.jsonl");
    let probes = work.join("probes.jsonl");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&reports)?);
        let mut probe_out = std::io::BufWriter::new(std::fs::File::create(&probes)?);
        for p in &patients {
            let text = format!("{}\n\n{}", p.narrative, p.impression);
            writeln!(out, "{}", serde_json::json!({"id": p.accession_number, "patient_id": p.accession_number, "text": text}))?;
            writeln!(
                probe_out,
                "{}",
                serde_json::json!({"patient_id": p.accession_number, "first_names": [p.first_name], "surnames": [p.last_name],
                    "identifiers": [p.mrn, p.accession_number, p.nhs_number], "dates_of_birth": [p.date_of_birth.format("%Y-%m-%d").to_string()],
                    "postcodes": [p.postcode]})
            )?;
        }
    }

    // The databases.
    let emap = pixl_core::config::DatabaseSettings { name: format!("{}_bench_emap", settings.database.name), ..settings.database.clone() };
    crate::demo_ehr::create_database(&emap, &patients).await.context("cannot create the EMAP database")?;
    let mut settings = settings.clone();
    settings.database.name = format!("{}_bench_ehr", settings.database.name);
    settings.queue_prefix = "bench-ehr.".to_owned();
    {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect_with(&settings.database.connect_options_for("postgres")).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", settings.database.name))).execute(&mut admin).await?;
    }
    let pool = pixl_core::db::connect(&settings.database, 4).await?;
    let broker = Broker::connect(&settings.rabbitmq, Topology::new(settings.queue_prefix.clone())).await?;
    broker.delete_topology().await?;
    broker.close().await;
    let broker = Broker::connect(&settings.rabbitmq, Topology::new(settings.queue_prefix.clone())).await?;
    let extract: i64 =
        sqlx::query_scalar("INSERT INTO extracts (project_slug, extract_datetime) VALUES ($1, now()) RETURNING id").bind(PROJECT).fetch_one(&pool).await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO studies (extract_id, project_slug, mrn, accession_number, study_date, ehr_wanted)
         SELECT $1, $2, k.mrn, k.accession, $5, true FROM unnest($3::text[], $4::text[]) AS k (mrn, accession) RETURNING id",
    )
    .bind(extract)
    .bind(PROJECT)
    .bind(keys.iter().map(|k| k.0.clone()).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.1.clone()).collect::<Vec<_>>())
    .bind(date)
    .fetch_all(&pool)
    .await?;
    let mut tx = pool.begin().await?;
    for id in &ids {
        outbox::enqueue(&mut tx, StudyId(*id), MessageKind::Ehr, WorkQueue::Ehr, 0).await?;
    }
    tx.commit().await?;

    // The engine alone, one core, one thread.
    let started = Instant::now();
    let status = pinned(&bin_dir.join("pixl"))
        .args(["deid-text", "--threads", "1", "--output", "tags", "--probes"])
        .arg(&probes)
        .arg(&reports)
        .arg(work.join("engine-out.jsonl"))
        .stdout(Stdio::null())
        .status()
        .context("cannot run pixl deid-text")?;
    anyhow::ensure!(status.success(), "pixl deid-text failed");
    let engine_seconds = started.elapsed().as_secs_f64();

    // ehr-api, one core: started, then the messages published; done when every study has
    // its EHR state.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::fs::File::create(work.join("ehr-api.log"))?;
    let env: Vec<(String, String)> = vec![
        ("PIXL_DB_HOST".into(), settings.database.host.clone()),
        ("PIXL_DB_PORT".into(), settings.database.port.to_string()),
        ("PIXL_DB_USER".into(), settings.database.user.clone()),
        ("PIXL_DB_PASSWORD".into(), secrecy::ExposeSecret::expose_secret(&settings.database.password).to_owned()),
        ("PIXL_DB_NAME".into(), settings.database.name.clone()),
        ("PIXL_QUEUE_PREFIX".into(), settings.queue_prefix.clone()),
        ("PROJECT_CONFIGS_DIR".into(), std::path::absolute(&settings.project_configs_dir)?.display().to_string()),
        ("EHR_API_PORT".into(), port.to_string()),
        ("EHR_API_TOKEN".into(), pixl_core::hashing::new_hashing_key()),
        ("EMAP_DB_HOST".into(), emap.host.clone()),
        ("EMAP_DB_PORT".into(), emap.port.to_string()),
        ("EMAP_DB_USER".into(), emap.user.clone()),
        ("EMAP_DB_PASSWORD".into(), secrecy::ExposeSecret::expose_secret(&emap.password).to_owned()),
        ("EMAP_DB_NAME".into(), emap.name.clone()),
        ("RUST_LOG".into(), std::env::var("PIXL_BENCH_EHR_LOG").unwrap_or_else(|_| "warn".to_owned())),
    ];
    let mut service = pinned(&bin_dir.join("pixl-ehr-api")).envs(env).stdout(Stdio::null()).stderr(log).spawn().context("cannot start pixl-ehr-api")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "pixl-ehr-api did not start (see {})", work.join("ehr-api.log").display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    outbox::relay(&pool, &broker, 10_000, |_| {}).await?;
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM studies WHERE ehr_state IS NOT NULL").fetch_one(&pool).await?;
        if done as usize >= studies {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "ehr-api did not finish in an hour");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let service_seconds = started.elapsed().as_secs_f64();
    let _ = service.kill();
    let _ = service.wait();
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM studies WHERE ehr_state = 'failed'").fetch_one(&pool).await?;
    anyhow::ensure!(failed == 0, "{failed} studies failed in ehr-api (see {})", work.join("ehr-api.log").display());
    pool.close().await;
    broker.delete_topology().await?;
    crate::demo_ehr::drop_database(&emap).await?;
    Ok(EhrBench { studies, engine_seconds, service_seconds })
}

/// Where the binaries are: beside this one.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    std::env::current_exe()?.parent().map(Path::to_path_buf).context("where is this binary?")
}
