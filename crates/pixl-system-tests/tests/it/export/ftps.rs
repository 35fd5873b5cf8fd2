//! Export to a real FTPS server (pyftpdlib with TLS, certificate made at test time), in
//! PIXL's implicit mode and in explicit mode; refused logins and untrusted certificates.

use std::collections::BTreeSet;

use pixl_core::consumer::Handled;
use pixl_core::ids::{ProjectSlug, PseudoStudyUid};
use pixl_core::messages::{ExportRequest, QueueMessage};
use pixl_core::queues::WorkQueue;

use crate::export::support::*;

#[tokio::test]
async fn implicit_and_explicit_tls_leave_one_zip_per_study_and_redelivery_uploads_nothing() {
    for implicit in [true, false] {
        let f = Fixture::new("ftps", "ftps", 2, 3, 64).await;
        let server = FtpsServer::start(f.dir.path(), implicit, None);
        write_secrets(&f.secrets, &server.secrets(PROJECT));
        let mut vars = f.vars();
        vars.push(("EXPORT_FTPS_TLS".to_owned(), if implicit { "implicit" } else { "explicit" }.to_owned()));
        vars.push(("PIXL_EXTRA_CA_FILE".to_owned(), server.ca_file.display().to_string()));
        let api = ExportApi::start(&f.ctx, &vars).await;

        queue_exports(&f.ctx, &f.studies).await;
        let settled = wait_for(&f.ctx, &f.studies, &["exported", "failed"]).await;
        for (state, reason, to) in &settled {
            assert_eq!((state.as_str(), to.as_deref()), ("exported", Some("ftps")), "implicit {implicit}: {reason:?}");
        }
        let expected: BTreeSet<String> = f.studies.iter().map(|s| format!("{PROJECT}/{}.zip", s.pseudo_study_uid)).collect();
        assert_eq!(server.files().into_iter().collect::<BTreeSet<_>>(), expected, "one zip per study, nothing else");
        for study in &f.studies {
            let zip = server.root.join(PROJECT).join(format!("{}.zip", study.pseudo_study_uid));
            let uids = zip_study_uids(&zip);
            assert_eq!(uids.len(), study.instances);
            assert!(uids.iter().all(|uid| *uid == study.pseudo_study_uid), "{uids:?}");
        }

        // Redelivery (the outbox may publish twice): nothing is uploaded again.
        let mtimes = |root: &std::path::Path| -> Vec<std::time::SystemTime> {
            let mut files = Vec::new();
            all_files(root, &mut files);
            files.sort();
            files.iter().map(|f| std::fs::metadata(f).unwrap().modified().unwrap()).collect()
        };
        let before = mtimes(&server.root);
        // One step of the consumer per redelivered message, as the service takes it.
        let context = pixl_export_api::service::connect(&config(&vars), &f.ctx.settings).await.unwrap();
        for study in &f.studies {
            let message = QueueMessage::ExportV1(ExportRequest {
                study_id: study.id,
                project: ProjectSlug::parse(PROJECT).unwrap(),
                pseudo_study_uid: PseudoStudyUid::parse(&study.pseudo_study_uid).unwrap(),
            });
            assert_eq!(pixl_export_api::service::handle(&context, &message.encode()).await, Handled::Done);
        }
        assert_eq!(mtimes(&server.root), before, "no file was written again");
        assert!(f.ctx.take_dead_letters(WorkQueue::Export).await.is_empty());
        api.stop().await;
        f.ctx.teardown().await;
    }
}

#[tokio::test]
async fn a_wrong_password_fails_the_study_with_its_reason_and_a_dead_letter() {
    let f = Fixture::new("ftps", "none", 1, 2, 32).await;
    let server = FtpsServer::start(f.dir.path(), true, None);
    let mut entries = server.secrets(PROJECT);
    entries[3].1 = "not-the-password".to_owned();
    write_secrets(&f.secrets, &entries);
    let mut vars = f.vars();
    vars.push(("PIXL_EXTRA_CA_FILE".to_owned(), server.ca_file.display().to_string()));
    let api = ExportApi::start(&f.ctx, &vars).await;

    queue_exports(&f.ctx, &f.studies).await;
    let settled = wait_for(&f.ctx, &f.studies, &["exported", "failed"]).await;
    let (state, reason, _) = &settled[0];
    assert_eq!(state, "failed");
    let reason = reason.clone().unwrap();
    assert_eq!(reason, format!("ftps: login: the FTPS server refused the login (530); check secrets {PROJECT}--ftp--username and {PROJECT}--ftp--password"));
    let letters = f.ctx.take_dead_letters(WorkQueue::Export).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].1, reason, "the dead letter carries the same reason");
    assert!(server.files().is_empty(), "nothing was stored");
    let failed_queue: Option<String> =
        sqlx::query_scalar("SELECT failed_queue FROM studies WHERE id = $1").bind(f.studies[0].id.0).fetch_one(&f.ctx.pool).await.unwrap();
    assert_eq!(failed_queue.as_deref(), Some("export"));
    // `pixl status` shows it.
    let status = pixl_cli::control::status(&f.ctx.settings, "http://127.0.0.1:9").await.unwrap().to_string();
    assert!(status.contains(&format!("{PROJECT}: 1 × {reason}")), "{status}");

    // The password fixed, `pixl retry-failed` resumes at export (anon-node still holds the
    // study) and the dead letter goes.
    f.ctx.broker.dead_letter(WorkQueue::Export, &letters[0].0, &letters[0].1).await.unwrap();
    write_secrets(&f.secrets, &server.secrets(PROJECT));
    assert_eq!(pixl_cli::control::retry_failed(&f.ctx.settings, Some(PROJECT)).await.unwrap(), 1);
    let settled = wait_for(&f.ctx, &f.studies, &["exported", "failed"]).await;
    assert_eq!(settled[0].0, "exported", "{:?}", settled[0].1);
    assert_eq!(server.files(), [format!("{PROJECT}/{}.zip", f.studies[0].pseudo_study_uid)]);
    assert!(f.ctx.take_dead_letters(WorkQueue::Export).await.is_empty(), "the retried study's dead letter was removed");
    assert!(f.ctx.take_messages(WorkQueue::ImagingPrimary).await.is_empty(), "not sent back to retrieval");
    api.stop().await;
    f.ctx.teardown().await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_before_logging_in() {
    let f = Fixture::new("ftps", "none", 1, 2, 32).await;
    for implicit in [true, false] {
        let server = FtpsServer::start(f.dir.path(), implicit, None);
        write_secrets(&f.secrets, &server.secrets(PROJECT));
        // No PIXL_EXTRA_CA_FILE: the test CA is not trusted.
        let mut vars = f.vars();
        vars.push(("EXPORT_FTPS_TLS".to_owned(), if implicit { "implicit" } else { "explicit" }.to_owned()));
        let context = pixl_export_api::service::connect(&config(&vars), &f.ctx.settings).await.unwrap();
        let message = QueueMessage::ExportV1(ExportRequest {
            study_id: f.studies[0].id,
            project: ProjectSlug::parse(PROJECT).unwrap(),
            pseudo_study_uid: PseudoStudyUid::parse(&f.studies[0].pseudo_study_uid).unwrap(),
        });
        let handled = pixl_export_api::service::handle(&context, &message.encode()).await;
        let Handled::Permanent { study, reason } = handled else { panic!("implicit {implicit}: expected a permanent failure, got {handled:?}") };
        assert_eq!(study, Some(f.studies[0].id));
        assert!(reason.starts_with("ftps: connect") || reason.starts_with("ftps: AUTH TLS"), "{reason}");
        assert!(reason.contains("certificate is not trusted") && reason.contains("PIXL_EXTRA_CA_FILE"), "{reason}");
        assert!(server.files().is_empty());
    }
    f.ctx.teardown().await;
}
