//! The binary at trace level, exporting a study and an extract's parquet files over FTPS:
//! its logs hold no secret (FTP user name and password) and no identifier of the study
//! (MRN, accession number, original UID, patient name).

use std::time::{Duration, Instant};

use crate::export::support::*;

#[tokio::test]
async fn trace_logs_hold_no_secret_and_no_identifier() {
    let f = Fixture::new("ftps", "ftps", 1, 2, 32).await;
    let server = FtpsServer::start(f.dir.path(), true, None);
    write_secrets(&f.secrets, &server.secrets(PROJECT));
    let mut vars = f.vars();
    vars.push(("PIXL_EXTRA_CA_FILE".to_owned(), server.ca_file.display().to_string()));
    vars.push(("RUST_LOG".to_owned(), "trace".to_owned()));
    let env = binary_env(&f.ctx, &vars);
    let port = env.iter().find(|(k, _)| k == "EXPORT_API_PORT").unwrap().1.clone();
    let log = f.dir.path().join("export-api.log");
    let mut child = spawn(&env, &log);

    queue_exports(&f.ctx, &f.studies).await;
    let settled = wait_for(&f.ctx, &f.studies, &["exported", "failed"]).await;
    assert_eq!(settled[0].0, "exported", "{:?}", settled[0].1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let response = loop {
        let answer = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/export-patient-data"))
            .json(&serde_json::json!({"project_name": PROJECT, "extract_datetime": "2024-01-01T00:00:00Z"}))
            .send()
            .await;
        match answer {
            Ok(response) => break response,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(error) => panic!("{error}"),
        }
    };
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
    child.kill().unwrap();
    child.wait().unwrap();

    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("TRACE") && logs.contains("study exported"), "the logs are at trace level and cover the export");
    let original = &f.studies[0].original;
    let forbidden = [
        ("FTP password", server.password.as_str()),
        ("FTP user name", server.user.as_str()),
        ("PASS command", "PASS "),
        ("MRN", original.patient_id.as_str()),
        ("accession number", original.accession_number.as_str()),
        ("original study UID", original.study_uid.as_str()),
        ("patient name", original.patient_name.as_str()),
    ];
    for (what, value) in forbidden {
        assert!(!logs.contains(value), "the logs contain the {what}");
    }
    f.ctx.teardown().await;
}
