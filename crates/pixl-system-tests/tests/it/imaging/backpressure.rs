//! The raw cache never evicts work in progress. 40 studies of 20 instances go through a
//! raw cache bound to 3 MB while hasher-api starts 20 s late, so retrieved studies wait for
//! de-identification and fill the cache: anon-node refuses new studies, imaging-api waits
//! (backpressure), and every study ends de-identified, none evicted before its turn. The
//! raw instances are gone once de-identified.

use std::time::{Duration, Instant};

use pixl_cli::demo_data::{radiograph_studies, write_study};
use pixl_cli::populate::{PopulateOptions, populate};
use pixl_core::queues::WorkQueue;

use crate::harness::{Services, hasher_client};
use crate::imaging::peers::{Peer, free_port};
use crate::imaging::pipeline::studies;
use crate::imaging::retrieval::cohort;

#[tokio::test]
async fn a_full_raw_cache_makes_retrieval_wait_and_loses_nothing() {
    let mut ctx = pixl_core::testing::TestContext::new().await;
    let dir = tempfile::tempdir().unwrap();
    ctx.settings.host_export_root_dir = dir.path().join("exports");
    let anon_dicom = free_port();
    let vna = Peer::orthanc(dir.path(), "VNA", ("PIXL_RAW", anon_dicom));
    // 40 × 20 instances of 64 × 64 pixels: about 6 MB, twice the cache.
    let specs = radiograph_studies(40, 20, 64);
    for spec in &specs {
        vna.load(&write_study(&dir.path().join("archive-input"), spec).unwrap()).await;
    }

    let mut services = Services::new();
    // hasher-api's port is known now; it starts 20 s late.
    let hasher_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hasher_url = format!("http://{}", hasher_listener.local_addr().unwrap());
    let node = services
        .anon_node(&ctx, dir.path(), "VNA", Some(anon_dicom), hasher_client(&hasher_url), vec![("ANON_NODE_RAW_CACHE_MAX_SIZE_MB", "3".to_owned())])
        .await;
    let imaging = services.imaging_api(&ctx, &vna, None, &node.url, vec![("IMAGING_API_MAX_ATTEMPTS", "5".to_owned())]).await;
    let rows: Vec<_> = specs.iter().map(|spec| (spec, true, Vec::new())).collect();
    let options = PopulateOptions { path: cohort(dir.path(), &rows), queue: WorkQueue::ImagingPrimary, priority: 1, show_progress: false };
    populate(&ctx.settings, &options).await.unwrap();

    // The cache fills with studies waiting for de-identification and says so.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stores: serde_json::Value = client.get(format!("{}/stores", node.url)).send().await.unwrap().json().await.unwrap();
        if stores["raw_cache"]["accepting"] == false {
            assert!(stores["raw_cache"]["in_progress"].as_u64().unwrap() > 0, "{stores}");
            break;
        }
        assert!(Instant::now() < deadline, "the raw cache never filled up: {stores}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed_while_full: Vec<_> = studies(&ctx).await.into_iter().filter(|(_, state, ..)| state == "failed").collect();
    assert!(failed_while_full.is_empty(), "{failed_while_full:?}");

    tokio::time::sleep(Duration::from_secs(20)).await;
    services.hasher_on(hasher_listener, dir.path(), &ctx.settings.project_configs_dir, "backpressure-key").await;

    let deadline = Instant::now() + Duration::from_secs(240);
    let rows = loop {
        let rows = studies(&ctx).await;
        assert!(rows.iter().all(|(_, state, ..)| state != "failed"), "{rows:?}");
        if rows.iter().all(|(_, state, ..)| state == "anonymised") {
            break rows;
        }
        assert!(Instant::now() < deadline, "not every study was de-identified: {rows:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(rows.len(), 40);
    let metrics = client.get(format!("http://{imaging}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("pixl_imaging_backpressure_total") && !l.ends_with(" 0")), "imaging-api waited for the cache");
    // De-identified means gone from the identifiable raw cache (retention 0), just after
    // the study is recorded.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stores: serde_json::Value = client.get(format!("{}/stores", node.url)).send().await.unwrap().json().await.unwrap();
        if (stores["raw_cache"]["studies"].as_u64(), stores["raw_cache"]["bytes"].as_u64()) == (Some(0), Some(0)) {
            break;
        }
        assert!(Instant::now() < deadline, "raw instances were kept: {stores}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(std::fs::read_dir(&node.raw_cache).unwrap().count(), 0);
    services.stop().await;
    ctx.teardown().await;
}
