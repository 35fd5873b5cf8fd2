//! A broker or database restart in the middle of a run loses nothing. 40 studies of 20
//! instances are retrieved from Orthanc at 4 studies a second; 4 s in, RabbitMQ (or
//! Postgres) stops, and starts again 5 s later. Every service reports itself unhealthy on
//! `/heart-beat` while it cannot reach the server, reconnects by itself, and the run ends
//! with 40 of 40 studies de-identified and exported to a real FTPS server exactly once.
//! The servers are private instances: the machine's shared ones stay up for the tests
//! running beside this one.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pixl_cli::demo_data::{radiograph_studies, write_study};
use pixl_cli::populate::{PopulateOptions, populate};
use pixl_core::queues::WorkQueue;
use pixl_core::testing::TestContext;
use pixl_core::testing::private::{PrivatePostgres, PrivateRabbit};

use crate::export::support::{FtpsServer, export_vars, project_configs, write_secrets};
use crate::harness::Services;
use crate::imaging::peers::{Peer, free_port};
use crate::imaging::pipeline::studies;
use crate::imaging::retrieval::{PROJECT, cohort};

enum Outage {
    Broker(PrivateRabbit),
    Database(PrivatePostgres),
}

impl Outage {
    fn stop(&self) {
        match self {
            Self::Broker(rabbit) => rabbit.stop_app(),
            Self::Database(postgres) => postgres.stop(),
        }
    }

    fn start(&self) {
        match self {
            Self::Broker(rabbit) => rabbit.start_app(),
            Self::Database(postgres) => postgres.start_again(),
        }
    }
}

async fn run_through(outage: Outage) {
    let outage = std::sync::Arc::new(outage);
    let mut ctx = match outage.as_ref() {
        Outage::Broker(rabbit) => TestContext::with_servers(Some(rabbit), None).await,
        Outage::Database(postgres) => TestContext::with_servers(None, Some(postgres)).await,
    };
    let dir = tempfile::tempdir().unwrap();
    ctx.settings.host_export_root_dir = dir.path().join("exports");
    ctx.settings.project_configs_dir = project_configs(dir.path(), "ftps", "none");
    let anon_dicom = free_port();
    let vna = Peer::orthanc(dir.path(), "VNA", ("PIXL_RAW", anon_dicom));
    let specs = radiograph_studies(40, 20, 32);
    for spec in &specs {
        vna.load(&write_study(&dir.path().join("archive-input"), spec).unwrap()).await;
    }
    let server = FtpsServer::start(dir.path(), true, None);
    let secrets = dir.path().join("secrets.json");
    write_secrets(&secrets, &server.secrets(PROJECT));

    let mut services = Services::new();
    let hasher = services.hasher(dir.path(), &ctx.settings.project_configs_dir, "restart-key").await;
    let node = services.anon_node(&ctx, dir.path(), "VNA", Some(anon_dicom), hasher, vec![]).await;
    let retries = vec![("IMAGING_API_RATE", "4".to_owned()), ("IMAGING_API_RETRY_PAUSE", "1".to_owned()), ("IMAGING_API_MAX_ATTEMPTS", "6".to_owned())];
    let imaging = services.imaging_api(&ctx, &vna, None, &node.url, retries).await;
    let mut vars = export_vars(dir.path(), &node.url, &secrets);
    vars.push(("PIXL_EXTRA_CA_FILE".to_owned(), server.ca_file.display().to_string()));
    vars.push(("EXPORT_API_RETRY_PAUSE".to_owned(), "1".to_owned()));
    vars.push(("EXPORT_API_MAX_ATTEMPTS".to_owned(), "6".to_owned()));
    let export = services.export_api(&ctx, &vars).await;

    let rows: Vec<_> = specs.iter().map(|spec| (spec, true, Vec::new())).collect();
    let options = PopulateOptions { path: cohort(dir.path(), &rows), queue: WorkQueue::ImagingPrimary, priority: 1, show_progress: false };
    populate(&ctx.settings, &options).await.unwrap();

    tokio::time::sleep(Duration::from_secs(4)).await;
    tokio::task::spawn_blocking({
        let outage = std::sync::Arc::clone(&outage);
        move || outage.stop()
    })
    .await
    .unwrap();
    // Every service says it cannot work while the server is away.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let health = [format!("http://{imaging}/heart-beat"), format!("{}/heart-beat", node.url), format!("{export}/heart-beat")];
    let mut unhealthy = BTreeSet::new();
    let outage_started = Instant::now();
    while unhealthy.len() < health.len() {
        assert!(outage_started.elapsed() < Duration::from_secs(20), "only {unhealthy:?} reported the outage");
        for url in &health {
            if let Ok(response) = client.get(url).send().await
                && response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE
            {
                unhealthy.insert(url.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(outage_started.elapsed())).await;
    tokio::task::spawn_blocking({
        let outage = std::sync::Arc::clone(&outage);
        move || outage.start()
    })
    .await
    .unwrap();

    let deadline = Instant::now() + Duration::from_secs(240);
    let rows = loop {
        if let Ok(rows) = tokio::time::timeout(Duration::from_secs(5), studies(&ctx)).await {
            assert!(rows.iter().all(|(_, state, ..)| state != "failed"), "{rows:?}");
            if rows.len() == 40 && rows.iter().all(|(_, state, ..)| state == "exported") {
                break rows;
            }
            assert!(Instant::now() < deadline, "not every study was exported: {rows:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Healthy again.
    for url in &health {
        assert_eq!(client.get(url).send().await.unwrap().status(), reqwest::StatusCode::OK, "{url}");
    }
    // Exactly once: one zip per study, each stored once by the server.
    let expected: BTreeSet<String> = rows.iter().map(|(.., uid)| format!("{}.zip", uid.as_deref().unwrap())).collect();
    let stores = server.stores();
    assert_eq!(stores.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(stores.values().all(|count| *count == 1), "a study was uploaded twice: {stores:?}");
    for queue in WorkQueue::ALL {
        assert!(ctx.take_dead_letters(queue).await.is_empty(), "{queue:?}");
    }
    services.stop().await;
    ctx.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_mid_run_loses_nothing_and_exports_each_study_once() {
    run_through(Outage::Broker(tokio::task::spawn_blocking(PrivateRabbit::start).await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_mid_run_loses_nothing_and_exports_each_study_once() {
    run_through(Outage::Database(tokio::task::spawn_blocking(PrivatePostgres::start).await.unwrap())).await;
}
