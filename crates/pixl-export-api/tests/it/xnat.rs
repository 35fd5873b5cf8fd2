//! Export to XNAT through the local fake of its import service (see `fake_xnat`: XNAT
//! cannot run here). The fake checks the request shape; these tests check PIXL's
//! parameters, the retry after a crash between upload and commit, and refused credentials.

use pixl_core::testing::TestContext;

use crate::fake_xnat::FakeXnat;
use crate::support::*;

#[tokio::test]
async fn sessions_are_imported_once_with_pixls_parameters() {
    let mut ctx = TestContext::new().await;
    let dir = tempfile::tempdir().unwrap();
    ctx.settings.project_configs_dir = project_configs(dir.path(), "xnat", "none");
    let anon_store = dir.path().join("anon-store");
    let studies = deidentified_studies(&ctx, dir.path(), &anon_store, 3, 2, 32).await;
    let anon_node = AnonNodeHttp::start(&anon_store, &dir.path().join("raw-cache")).await;
    let xnat = FakeXnat::start("xnat-user", "xnat-password");
    let ca = xnat.pki.write_ca(dir.path());
    let secrets = dir.path().join("secrets.json");
    let good = vec![
        (format!("{PROJECT}--xnat--host"), "127.0.0.1".to_owned()),
        (format!("{PROJECT}--xnat--port"), xnat.address.port().to_string()),
        (format!("{PROJECT}--xnat--username"), "xnat-user".to_owned()),
        (format!("{PROJECT}--xnat--password"), "xnat-password".to_owned()),
    ];
    write_secrets(&secrets, &good);
    let mut vars = export_vars(dir.path(), &anon_node.url, &secrets);
    vars.push(("PIXL_EXTRA_CA_FILE".to_owned(), ca.display().to_string()));
    let api = ExportApi::start(&ctx, &vars).await;

    queue_exports(&ctx, &studies[..2]).await;
    let settled = wait_for(&ctx, &studies[..2], &["exported", "failed"]).await;
    for (state, reason, to) in &settled {
        assert_eq!((state.as_str(), to.as_deref()), ("exported", Some("xnat")), "{reason:?}");
    }
    assert!(xnat.state.refusals.lock().unwrap().is_empty(), "{:?}", xnat.state.refusals.lock().unwrap());
    {
        let sessions = xnat.state.sessions.lock().unwrap();
        for study in &studies[..2] {
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
        .bind(studies[0].id.0)
        .execute(&ctx.pool)
        .await
        .unwrap();
    queue_exports(&ctx, &studies[..1]).await;
    let settled = wait_for(&ctx, &studies[..1], &["exported", "failed"]).await;
    assert_eq!(settled[0].0, "exported", "{:?}", settled[0].1);
    assert_eq!(xnat.state.imports.lock().unwrap().len(), 2, "not imported again");
    assert!(xnat.state.refusals.lock().unwrap().is_empty());

    // Refused credentials.
    let mut bad = good.clone();
    bad[3].1 = "wrong".to_owned();
    write_secrets(&secrets, &bad);
    queue_exports(&ctx, &studies[2..]).await;
    let settled = wait_for(&ctx, &studies[2..], &["exported", "failed"]).await;
    assert_eq!(settled[0].0, "failed");
    assert_eq!(
        settled[0].1.as_deref(),
        Some(format!("xnat: XNAT refused the credentials (401 Unauthorized); check secrets {PROJECT}--xnat--username and {PROJECT}--xnat--password").as_str())
    );
    api.stop().await;
    ctx.teardown().await;
}
