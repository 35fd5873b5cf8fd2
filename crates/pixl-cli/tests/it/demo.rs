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
    expected.push("test-extract-uclh-omop-cdm/2023-12-07t14-08-58/parquet/radiology/radiology.parquet".to_owned());
    expected.push("test-extract-uclh-omop-cdm/2023-12-07t14-08-58/parquet/release-report.html".to_owned());
    for path in &expected {
        assert!(dir.path().join("demo/research-export").join(path).is_file(), "{path} was not exported");
        assert!(stdout.contains(&format!("  {path} (")), "the summary does not list {path}: {stdout}");
    }
    assert!(
        stdout.contains("export-patient-data: project test-extract-uclh-omop-cdm extract 2023-12-07t14-08-58: image linker with 2 exported studies"),
        "{stdout}"
    );
    // The reports: one de-identified and exported, the one naming its patient as "Walked"
    // flagged and withheld for review; the release report's path.
    assert!(stdout.contains("2 de-identified and checked: 1 exported in radiology/radiology.parquet, 1 flagged by the second check and withheld"), "{stdout}");
    assert!(stdout.contains("flagged (name variant); review it with `pixl reports show"), "{stdout}");
    assert!(stdout.contains("release report: ") && stdout.contains("release-report.html"), "{stdout}");
    // The generated patients' identifiers are nowhere in what was exported or printed.
    let keys: Vec<(String, String, chrono::NaiveDate)> = pixl_cli::demo_data::system_test_studies()
        .iter()
        .map(|s| (s.patient_id.clone(), s.accession_number.clone(), chrono::NaiveDate::parse_from_str(&s.study_date, "%Y%m%d").unwrap()))
        .collect();
    let identifiers: Vec<String> = pixl_cli::demo_ehr::patients(&keys, 1).iter().flat_map(|p| p.identifiers()).collect();
    let mut exported = Vec::new();
    pixl_testkit::dicom::all_files(&dir.path().join("demo/research-export"), &mut exported);
    for file in &exported {
        let bytes = std::fs::read(file).unwrap();
        let text = if file.extension().is_some_and(|e| e == "parquet") { parquet_text(file) } else { String::from_utf8_lossy(&bytes).into_owned() };
        for identifier in &identifiers {
            assert!(
                !text.contains(identifier.as_str()) && !bytes.windows(identifier.len()).any(|w| w == identifier.as_bytes()),
                "{} holds an identifier",
                file.display()
            );
            assert!(!stdout.contains(identifier.as_str()), "an identifier of a generated patient in the demo's output");
        }
    }
    // The summary and the progress lines name no patient, accession number or original UID.
    for secret in ["987654321", "AA12345601", "AA12345605", "1.3.6.1.4.1.14519.5.2.1.99.1071.12985477682660597455732044031486", "Fake^Alice"] {
        assert!(!stdout.contains(secret), "{secret} in the demo's output");
    }
    for service in ["anon-node", "export-api"] {
        let logs = std::fs::read_to_string(dir.path().join(format!("demo/logs/{service}.log"))).unwrap();
        assert!(!logs.contains("987654321") && !logs.contains("AA12345601"), "identifiers in {service}'s log");
    }
}

/// Every value of every column of a parquet file, as text (compressed pages hide bytes).
fn parquet_text(path: &std::path::Path) -> String {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap().build().unwrap();
    reader.map(|batch| format!("{:?}", batch.unwrap())).collect()
}
