//! One project's unreachable destination does not hold up another project's exports:
//! passing failures wait in delay queues, not in the consumer; and export-api stops within
//! docker compose's stop timeout.

use std::time::{Duration, Instant};

use pixl_core::queues::WorkQueue;

use crate::export::support::*;

const OTHER: &str = "second-project";

#[tokio::test]
async fn an_unreachable_destination_does_not_stall_other_projects() {
    let f = Fixture::new("ftps", "none", 4, 2, 32).await;
    // Two of the studies belong to a second project exporting to a directory.
    let configs = &f.ctx.settings.project_configs_dir;
    let yaml = std::fs::read_to_string(configs.join(format!("{PROJECT}.yaml"))).unwrap();
    let name = yaml.lines().find(|l| l.trim_start().starts_with("name:")).unwrap().to_owned();
    let other_yaml = yaml.replace(&name, "  name: \"second-project\"").replace("dicom: \"ftps\"", "dicom: \"directory\"");
    std::fs::write(configs.join(format!("{OTHER}.yaml")), other_yaml).unwrap();
    let (refused, moved) = f.studies.split_at(2);
    std::fs::create_dir_all(f.anon_store.join(OTHER)).unwrap();
    for study in moved {
        std::fs::rename(f.anon_store.join(PROJECT).join(&study.pseudo_study_uid), f.anon_store.join(OTHER).join(&study.pseudo_study_uid)).unwrap();
        sqlx::query("UPDATE studies SET project_slug = $2 WHERE id = $1").bind(study.id.0).bind(OTHER).execute(&f.ctx.pool).await.unwrap();
    }
    // The first project's FTPS server refuses connections (nothing listens on its port).
    let closed = pixl_core::testing::peers::free_port();
    write_secrets(
        &f.secrets,
        &[
            (format!("{PROJECT}--ftp--host"), "127.0.0.1".to_owned()),
            (format!("{PROJECT}--ftp--port"), closed.to_string()),
            (format!("{PROJECT}--ftp--username"), "user".to_owned()),
            (format!("{PROJECT}--ftp--password"), "password".to_owned()),
        ],
    );
    let mut vars = f.vars();
    // One upload at a time: a consumer that slept on its retries would hold everything.
    for (name, value) in [("EXPORT_API_CONCURRENCY", "1"), ("EXPORT_API_RETRY_PAUSE", "1"), ("EXPORT_API_MAX_ATTEMPTS", "4")] {
        vars.retain(|(other, _)| other != name);
        vars.push((name.to_owned(), value.to_owned()));
    }
    let api = ExportApi::start(&f.ctx, &vars).await;

    // The refusing project's studies are queued first.
    queue_exports(&f.ctx, refused).await;
    queue_exports(&f.ctx, moved).await;
    let exported = wait_for(&f.ctx, moved, &["exported", "failed"]).await;
    for (state, reason, to) in &exported {
        assert_eq!((state.as_str(), to.as_deref()), ("exported", Some("directory")), "{reason:?}");
    }
    // Meanwhile the refused studies are still being retried, not failed.
    for study in refused {
        let (state, ..) = study_state(&f.ctx, study.id).await;
        assert_eq!(state, "anonymised");
    }
    let delayed = f.ctx.broker.delayed(WorkQueue::Export).await.unwrap();
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT attempts FROM studies WHERE id = ANY($1)")
        .bind(refused.iter().map(|s| s.id.0).collect::<Vec<_>>())
        .fetch_all(&f.ctx.pool)
        .await
        .unwrap();
    assert!(delayed > 0 || attempts.iter().any(|a| *a > 0), "the refused studies are waiting for a retry: {delayed} delayed, attempts {attempts:?}");

    // In the end they fail with the reason, after their attempts.
    let failed = wait_for(&f.ctx, refused, &["failed"]).await;
    for (_, reason, _) in &failed {
        let reason = reason.as_deref().unwrap_or_default();
        assert!(reason.starts_with("gave up after 4 attempts: ftps:"), "{reason}");
    }
    assert_eq!(f.ctx.take_dead_letters(WorkQueue::Export).await.len(), 2);

    // Shutdown finishes within docker compose's default stop timeout (10 s).
    let stopping = Instant::now();
    api.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(10), "export-api took {:?} to stop", stopping.elapsed());
    f.ctx.teardown().await;
}
