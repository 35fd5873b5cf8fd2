//! Export to PIXL's `tre` destination through the local fake of the TRE API (see
//! `fake_tre`: the hosted API cannot run here). The fake checks the request shape; this
//! test checks what lands in the project's storage (study zips, the extract's parquet zip)
//! and a refused token.

use crate::export::fake_tre::FakeTre;
use crate::export::support::*;

#[tokio::test]
async fn studies_go_up_as_pseudonymous_zips_and_are_flushed_out_of_quarantine() {
    let f = Fixture::new("tre", "tre", 3, 2, 32).await;
    let tre = FakeTre::start("tre-token-value");
    let ca = tre.pki.write_ca(f.dir.path());
    write_secrets(&f.secrets, &[(format!("{PROJECT}--api--token"), "tre-token-value".to_owned())]);
    let mut vars = f.vars();
    vars.push(("PIXL_EXTRA_CA_FILE".to_owned(), ca.display().to_string()));
    vars.push(("TRE_API_URL".to_owned(), tre.url()));
    let api = ExportApi::start(&f.ctx, &vars).await;

    queue_exports(&f.ctx, &f.studies[..2]).await;
    let settled = wait_for(&f.ctx, &f.studies[..2], &["exported", "failed"]).await;
    for (state, reason, to) in &settled {
        assert_eq!((state.as_str(), to.as_deref()), ("exported", Some("tre")), "{reason:?}");
    }
    assert!(tre.state.refusals.lock().unwrap().is_empty(), "{:?}", tre.state.refusals.lock().unwrap());
    {
        let storage = tre.state.storage.lock().unwrap();
        for study in &f.studies[..2] {
            assert_eq!(storage.get(&format!("{}.zip", study.pseudo_study_uid)), Some(&study.instances), "{storage:?}");
        }
        assert!(tre.state.quarantine.lock().unwrap().is_empty(), "nothing is left in quarantine");
        assert!(*tre.state.token_checks.lock().unwrap() >= 2, "the token is checked before uploading");
    }

    // The extract's parquet files go up as one zip named by the extract time, then flushed.
    let response = reqwest::Client::new()
        .post(format!("{}/export-patient-data", api.url))
        .json(&serde_json::json!({"project_name": PROJECT, "extract_datetime": "2024-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    let (status, text) = (response.status(), response.text().await.unwrap());
    assert!(status.is_success(), "{text}");
    let answer: pixl_core::rest::PatientDataExported = serde_json::from_str(&text).unwrap();
    assert_eq!(answer.destination, "tre", "{text}");
    let entries = tre.state.parquet_entries.lock().unwrap().get("2024-01-01t00-00-00.zip").cloned();
    let expected = ["radiology/IMAGE_LINKER.parquet", "radiology/radiology.parquet", "release-report.html", "release-report.json"];
    assert_eq!(entries, Some(expected.map(str::to_owned).to_vec()), "{:?}", tre.state.parquet_entries.lock().unwrap());
    assert!(tre.state.quarantine.lock().unwrap().is_empty(), "nothing is left in quarantine");

    // A refused token fails the study with the secret to fix, never the token.
    write_secrets(&f.secrets, &[(format!("{PROJECT}--api--token"), "expired-token".to_owned())]);
    queue_exports(&f.ctx, &f.studies[2..]).await;
    let settled = wait_for(&f.ctx, &f.studies[2..], &["exported", "failed"]).await;
    assert_eq!(settled[0].0, "failed");
    let reason = settled[0].1.clone().unwrap_or_default();
    assert!(reason.contains(&format!("{PROJECT}--api--token")) && !reason.contains("expired-token"), "{reason}");
    api.stop().await;
    f.ctx.teardown().await;
}
