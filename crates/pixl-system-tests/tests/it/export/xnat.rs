//! Export to XNAT through the local fake of its import service (see `fake_xnat`: XNAT
//! cannot run here). The fake checks the request shape; these tests check PIXL's
//! parameters, the retry after a crash between upload and commit, and refused credentials.

use crate::export::fake_xnat::FakeXnat;
use crate::export::support::*;

#[tokio::test]
async fn sessions_are_imported_once_with_pixls_parameters() {
    let f = Fixture::new("xnat", "none", 3, 2, 32).await;
    let xnat = FakeXnat::start("xnat-user", "xnat-password");
    let ca = xnat.pki.write_ca(f.dir.path());
    let good = vec![
        (format!("{PROJECT}--xnat--host"), "127.0.0.1".to_owned()),
        (format!("{PROJECT}--xnat--port"), xnat.address.port().to_string()),
        (format!("{PROJECT}--xnat--username"), "xnat-user".to_owned()),
        (format!("{PROJECT}--xnat--password"), "xnat-password".to_owned()),
    ];
    write_secrets(&f.secrets, &good);
    let mut vars = f.vars();
    vars.push(("PIXL_EXTRA_CA_FILE".to_owned(), ca.display().to_string()));
    let api = ExportApi::start(&f.ctx, &vars).await;

    queue_exports(&f.ctx, &f.studies[..2]).await;
    let settled = wait_for(&f.ctx, &f.studies[..2], &["exported", "failed"]).await;
    for (state, reason, to) in &settled {
        assert_eq!((state.as_str(), to.as_deref()), ("exported", Some("xnat")), "{reason:?}");
    }
    assert!(xnat.state.refusals.lock().unwrap().is_empty(), "{:?}", xnat.state.refusals.lock().unwrap());
    {
        let sessions = xnat.state.sessions.lock().unwrap();
        for study in &f.studies[..2] {
            let key = (PROJECT.to_owned(), study.pseudo_patient_id.clone(), study.pseudo_study_uid.clone());
            assert_eq!(sessions.get(&key), Some(&study.instances), "session {key:?} in {sessions:?}");
        }
        let imports = xnat.state.imports.lock().unwrap();
        assert_eq!(imports.len(), 2);
        assert_eq!(imports[0]["overwrite"], "none");
        assert_eq!(imports[0]["dest"], "/archive");
    }

    // A crash after XNAT took the session but before the export was recorded: the retry
    // finds the session and does not import it again (XNAT would refuse with overwrite=none).
    sqlx::query("UPDATE studies SET state = 'anonymised', exported_at = NULL, exported_to = NULL WHERE id = $1")
        .bind(f.studies[0].id.0)
        .execute(&f.ctx.pool)
        .await
        .unwrap();
    queue_exports(&f.ctx, &f.studies[..1]).await;
    let settled = wait_for(&f.ctx, &f.studies[..1], &["exported", "failed"]).await;
    assert_eq!(settled[0].0, "exported", "{:?}", settled[0].1);
    assert_eq!(xnat.state.imports.lock().unwrap().len(), 2, "not imported again");
    assert!(xnat.state.refusals.lock().unwrap().is_empty());

    // Refused credentials.
    let mut bad = good.clone();
    bad[3].1 = "wrong".to_owned();
    write_secrets(&f.secrets, &bad);
    queue_exports(&f.ctx, &f.studies[2..]).await;
    let settled = wait_for(&f.ctx, &f.studies[2..], &["exported", "failed"]).await;
    assert_eq!(settled[0].0, "failed");
    assert_eq!(
        settled[0].1.as_deref(),
        Some(format!("xnat: XNAT refused the credentials (401 Unauthorized); check secrets {PROJECT}--xnat--username and {PROJECT}--xnat--password").as_str())
    );
    api.stop().await;
    f.ctx.teardown().await;
}
