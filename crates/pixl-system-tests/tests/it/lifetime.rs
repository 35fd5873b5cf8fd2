//! Identifiable data and de-identified copies have a lifetime, and control commands touch
//! only what they say: the anon store deletes an exported study's files once its retention
//! has passed (and `pixl status` shows both stores' disk use); `pixl stop --purge` of one
//! queue fails only the studies whose message it dropped.

use std::time::{Duration, Instant};

use pixl_cli::demo_data::radiograph_studies;
use pixl_cli::populate::{PopulateOptions, populate};
use pixl_core::queues::WorkQueue;

use crate::export::support::*;
use crate::harness::Services;

#[tokio::test]
async fn exported_studies_leave_the_anon_store_after_their_retention() {
    let f = Fixture::new("directory", "none", 2, 2, 32).await;
    let mut services = Services::new();
    let hasher = services.hasher(f.dir.path(), &f.ctx.settings.project_configs_dir, "lifetime-key").await;
    // anon-node over the fixture's anon store; exported studies are kept for no time.
    let node = services
        .anon_node(
            &f.ctx,
            &f.dir.path().join("node"),
            "VNA",
            None,
            hasher,
            vec![
                ("ANON_NODE_ANON_STORE_DIR", f.anon_store.display().to_string()),
                ("ANON_NODE_ANON_RETENTION_DAYS", "0".to_owned()),
                ("ANON_NODE_SWEEP_SECONDS", "0.2".to_owned()),
            ],
        )
        .await;
    let status = pixl_cli::control::status(&f.ctx.settings, &node.url).await.unwrap().to_string();
    assert!(status.contains("anon store:") && status.contains(", 2 studies"), "{status}");
    assert!(status.contains("raw cache:   0.0 MB of"), "{status}");

    let export = services.export_api(&f.ctx, &f.vars()).await;
    let _ = export;
    queue_exports(&f.ctx, &f.studies).await;
    wait_for(&f.ctx, &f.studies, &["exported"]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let purged: i64 = sqlx::query_scalar("SELECT count(*) FROM studies WHERE anon_purged_at IS NOT NULL").fetch_one(&f.ctx.pool).await.unwrap();
        if purged == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{purged} of 2 exported studies purged from the anon store");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for study in &f.studies {
        assert!(!f.anon_store.join(PROJECT).join(&study.pseudo_study_uid).exists(), "the de-identified files are gone");
    }
    // And they reached the destination before.
    let mut exported = Vec::new();
    all_files(&f.dir.path().join("research-export"), &mut exported);
    assert_eq!(exported.len(), 2);
    services.stop().await;
    f.ctx.teardown().await;
}

#[tokio::test]
async fn purging_one_queue_fails_only_its_studies() {
    let f = Fixture::new("directory", "none", 1, 2, 32).await;
    // The generator is deterministic: its first study is the fixture's.
    let specs: Vec<_> = radiograph_studies(4, 1, 8).into_iter().skip(1).collect();
    let dir = f.dir.path();
    for (queue, specs) in [(WorkQueue::ImagingPrimary, &specs[..2]), (WorkQueue::ImagingSecondary, &specs[2..])] {
        let rows: Vec<_> = specs.iter().map(|spec| (spec, true, Vec::new())).collect();
        let options = PopulateOptions { path: crate::imaging::retrieval::cohort(dir, &rows), queue, priority: 1, show_progress: false };
        populate(&f.ctx.settings, &options).await.unwrap();
    }
    // The fixture's de-identified study waits on the export queue.
    queue_exports(&f.ctx, &f.studies).await;

    let purged = pixl_cli::control::purge(&f.ctx.settings, &[WorkQueue::ImagingPrimary]).await.unwrap();
    assert_eq!(purged, 2);
    let states: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT COALESCE(waiting_queue, ''), state::text, failure_reason FROM studies ORDER BY id").fetch_all(&f.ctx.pool).await.unwrap();
    let count = |state: &str| states.iter().filter(|(_, s, _)| s == state).count();
    assert_eq!((count("failed"), count("queued"), count("anonymised")), (2, 1, 1), "{states:?}");
    for (queue, state, reason) in &states {
        if state == "failed" {
            assert_eq!((queue.as_str(), reason.as_deref()), ("imaging-primary", Some("purged by pixl stop --purge")));
        }
    }
    assert_eq!(f.ctx.take_messages(WorkQueue::ImagingSecondary).await.len(), 1, "the other queue keeps its message");
    f.ctx.teardown().await;
}
