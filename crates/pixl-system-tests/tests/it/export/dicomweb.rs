//! Export by STOW-RS to a real DICOMweb server: Orthanc with its DICOMweb plugin (Debian
//! `orthanc-dicomweb`) and HTTP basic authentication. The studies are queryable there
//! afterwards (QIDO-RS); refused credentials fail the study with a clear reason.

use pixl_core::testing::peers::{OrthancOptions, Peer};

use crate::export::support::*;

/// QIDO-RS `GET path` at Orthanc, as the researcher would.
async fn qido(orthanc: &Peer, path: &str) -> Vec<serde_json::Value> {
    let (user, password) = orthanc.user.clone().unwrap();
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/dicom-web/{path}", orthanc.http_port.unwrap()))
        .basic_auth(user, Some(password))
        .header("Accept", "application/dicom+json")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success() || response.status() == reqwest::StatusCode::NO_CONTENT, "QIDO {path}: {}", response.status());
    let text = response.text().await.unwrap();
    if text.trim().is_empty() { Vec::new() } else { serde_json::from_str(&text).unwrap() }
}

#[tokio::test]
async fn studies_stored_by_stow_rs_are_queryable_and_bad_credentials_fail() {
    let f = Fixture::new("dicomweb", "none", 3, 3, 64).await;
    let options = OrthancOptions { dicomweb: true, user: Some(("researcher".to_owned(), "dicomweb-password".to_owned())) };
    let orthanc = Peer::orthanc_with(f.dir.path(), "RESEARCH", ("NOBODY", 1), &options);
    let base = format!("http://127.0.0.1:{}/dicom-web", orthanc.http_port.unwrap());
    let good = vec![
        (format!("{PROJECT}--dicomweb--url"), base.clone()),
        (format!("{PROJECT}--dicomweb--username"), "researcher".to_owned()),
        (format!("{PROJECT}--dicomweb--password"), "dicomweb-password".to_owned()),
    ];
    write_secrets(&f.secrets, &good);
    let api = ExportApi::start(&f.ctx, &f.vars()).await;

    queue_exports(&f.ctx, &f.studies[..2]).await;
    let settled = wait_for(&f.ctx, &f.studies[..2], &["exported", "failed"]).await;
    for (state, reason, to) in &settled {
        assert_eq!((state.as_str(), to.as_deref()), ("exported", Some("dicomweb")), "{reason:?}");
    }
    for study in &f.studies[..2] {
        let found = qido(&orthanc, &format!("studies?StudyInstanceUID={}", study.pseudo_study_uid)).await;
        assert_eq!(found.len(), 1, "the study is queryable by its pseudonymous UID");
        let instances = qido(&orthanc, &format!("studies/{}/instances", study.pseudo_study_uid)).await;
        assert_eq!(instances.len(), study.instances, "every instance arrived");
        let original = qido(&orthanc, &format!("studies?StudyInstanceUID={}", study.original.study_uid)).await;
        assert!(original.is_empty(), "the original UID is nowhere");
    }
    assert_eq!(qido(&orthanc, "studies").await.len(), 2);

    // A wrong password (secrets are read afresh: PIXL_SECRETS_TTL_SECONDS=0).
    let mut bad = good.clone();
    bad[2].1 = "wrong".to_owned();
    write_secrets(&f.secrets, &bad);
    queue_exports(&f.ctx, &f.studies[2..]).await;
    let settled = wait_for(&f.ctx, &f.studies[2..], &["exported", "failed"]).await;
    let (state, reason, _) = &settled[0];
    assert_eq!(state, "failed");
    assert_eq!(
        reason.as_deref(),
        Some(format!("dicomweb: the DICOMweb server refused the credentials (401 Unauthorized); check secrets {PROJECT}--dicomweb--*").as_str())
    );
    assert_eq!(qido(&orthanc, "studies").await.len(), 2, "nothing more was stored");
    api.stop().await;
    f.ctx.teardown().await;
}
