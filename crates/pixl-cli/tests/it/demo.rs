//! `pixl demo` as a user runs it: the binary, with the service binaries beside it (built by
//! `cargo test --workspace`), a local Orthanc or dcmqrscp, the local Postgres and RabbitMQ.

#[test]
fn the_demo_runs_the_pipeline_and_says_what_came_out_where() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pixl"))
        .current_dir(&root)
        .args(["demo", "--timeout", "120", "--dir"])
        .arg(dir.path().join("demo"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("studies: 2 queued from the extract; 2 retrieved, 2 de-identified, 2 exported, 0 failed"), "{stdout}");
    // PIXL's system test: 4 of study 1's 8 instances (AP, include123), 2 of study 2's 4.
    assert!(stdout.contains("4 of 8 instances de-identified, 2 dropped (modality not allowed), 2 dropped (series description filtered)"), "{stdout}");
    assert!(stdout.contains("2 of 4 instances de-identified, 2 dropped (series description filtered)"), "{stdout}");
    let store = dir.path().join("demo/anon-store/test-extract-uclh-omop-cdm");
    let studies: Vec<String> = std::fs::read_dir(&store).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(studies.len(), 2);
    // The research environment (the project's directory destination) holds one zip per
    // study and the extract's parquet files, and the summary lists each.
    let mut expected: Vec<String> = studies.iter().map(|uid| format!("test-extract-uclh-omop-cdm/{uid}.zip")).collect();
    expected.push("test-extract-uclh-omop-cdm/2023-12-07t14-08-58/parquet/omop/public/omop/PROCEDURE_OCCURRENCE.parquet".to_owned());
    expected.push("test-extract-uclh-omop-cdm/2023-12-07t14-08-58/parquet/radiology/IMAGE_LINKER.parquet".to_owned());
    for path in &expected {
        assert!(dir.path().join("demo/research-export").join(path).is_file(), "{path} was not exported");
        assert!(stdout.contains(&format!("  {path} (")), "the summary does not list {path}: {stdout}");
    }
    assert!(
        stdout.contains("export-patient-data: project test-extract-uclh-omop-cdm extract 2023-12-07t14-08-58: image linker with 2 exported studies"),
        "{stdout}"
    );
    // The summary and the progress lines name no patient, accession number or original UID.
    for secret in ["987654321", "AA12345601", "AA12345605", "1.3.6.1.4.1.14519.5.2.1.99.1071.12985477682660597455732044031486", "Fake^Alice"] {
        assert!(!stdout.contains(secret), "{secret} in the demo's output");
    }
    for service in ["anon-node", "export-api"] {
        let logs = std::fs::read_to_string(dir.path().join(format!("demo/logs/{service}.log"))).unwrap();
        assert!(!logs.contains("987654321") && !logs.contains("AA12345601"), "identifiers in {service}'s log");
    }
}
