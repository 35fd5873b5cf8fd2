//! kill -9 of the export-api binary in the middle of an upload, then a restart: no partial
//! file is visible under the study's name at any point, none is left behind, the study is
//! uploaded whole, once, and recorded exported once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::export::support::*;

fn partial_size(path: &PathBuf) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test]
async fn a_killed_upload_is_redone_whole_once_and_never_visible_half_done() {
    // 5 instances of 1024² 16-bit pixels: a zip of about 10.5 MB, uploaded at 2 MB/s.
    let f = Fixture::new("ftps", "none", 1, 5, 1024).await;
    let study = &f.studies[0];
    let server = FtpsServer::start(f.dir.path(), true, Some(2_000_000));
    write_secrets(&f.secrets, &server.secrets(PROJECT));
    let mut vars = f.vars();
    vars.push(("PIXL_EXTRA_CA_FILE".to_owned(), server.ca_file.display().to_string()));
    vars.push(("RUST_LOG".to_owned(), "info".to_owned()));
    let env = binary_env(&f.ctx, &vars);
    let log = f.dir.path().join("export-api.log");

    let mut first = spawn(&env, &log);
    queue_exports(&f.ctx, &f.studies).await;
    let final_path = server.root.join(PROJECT).join(format!("{}.zip", study.pseudo_study_uid));
    let partial_path = server.root.join(PROJECT).join(format!(".{}.zip.partial", study.pseudo_study_uid));
    let deadline = Instant::now() + Duration::from_secs(60);
    while partial_size(&partial_path) < 2_000_000 {
        assert!(Instant::now() < deadline, "the upload did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
        assert!(!final_path.exists(), "the final name appeared before the upload was whole");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let left = partial_size(&partial_path);
    let mut instances = Vec::new();
    all_files(&f.anon_store.join(PROJECT).join(&study.pseudo_study_uid), &mut instances);
    let study_bytes: u64 = instances.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    assert!(left > 0 && left < study_bytes, "the upload was cut midway: {left} of about {study_bytes} bytes");
    assert!(!final_path.exists(), "nothing under the study's name after the crash");
    assert_eq!(study_state(&f.ctx, study.id).await.0, "anonymised", "not recorded as exported");

    // While the restarted service uploads, the study's name never shows a partial file.
    let mut second = spawn(&env, &log);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut exported_seen = false;
    while Instant::now() < deadline {
        if final_path.exists() {
            let uids = zip_study_uids(&final_path);
            assert_eq!(uids.len(), study.instances, "the file under the study's name is whole");
        }
        if study_state(&f.ctx, study.id).await.0 == "exported" {
            exported_seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(exported_seen, "exported after the restart: {}", std::fs::read_to_string(&log).unwrap_or_default());
    assert_eq!(server.files(), [format!("{PROJECT}/{}.zip", study.pseudo_study_uid)], "one file, the partial one replaced");
    let uids = zip_study_uids(&final_path);
    assert_eq!(uids.len(), study.instances);
    assert!(uids.iter().all(|uid| *uid == study.pseudo_study_uid));
    let (state, _, to) = study_state(&f.ctx, study.id).await;
    assert_eq!((state.as_str(), to.as_deref()), ("exported", Some("ftps")));
    assert!(f.ctx.take_messages(pixl_core::queues::WorkQueue::Export).await.is_empty(), "no message left to upload it again");
    let exported_lines = std::fs::read_to_string(&log).unwrap().lines().filter(|l| l.contains("study exported")).count();
    assert_eq!(exported_lines, 1, "exported once");
    f.ctx.teardown().await;
}
