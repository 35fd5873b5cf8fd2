//! `pixl fhir generate | convert | example` through the binary: de-identified tables with
//! the project's keys, the imaging link by MRN when the project's FHIR policy asks for it,
//! refusals with their reasons, and bad lines reported by file and line.

use std::path::Path;
use std::process::Output;

use arrow_array::{Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pixl_testkit::dicom::project_dir;

fn pixl(args: &[&str], configs: &Path, secrets: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pixl"))
        .args(args)
        .env("PROJECT_CONFIGS_DIR", configs)
        .env("PIXL_SECRETS_FILE", secrets)
        .output()
        .expect("pixl runs")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn column(path: &Path, name: &str) -> Vec<String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap().build().unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let array = batch.column_by_name(name).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        out.extend(array.iter().flatten().map(str::to_owned));
    }
    out
}

#[tokio::test]
async fn converted_tables_are_pseudonymous_and_linked_to_imaging_when_the_project_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let configs = project_dir(dir.path());
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, r#"{"hashing-key": "fhir-test-key", "check-project": "5eed5a170000c0de"}"#).unwrap();
    let ndjson = dir.path().join("ndjson");
    let out = pixl(&["fhir", "generate", ndjson.to_str().unwrap(), "--patients", "12", "--seed", "3"], &configs, &secrets);
    assert!(out.status.success(), "{}", text(&out));

    // Without a project, only with --no-deid.
    let tables = dir.path().join("tables");
    let out = pixl(&["fhir", "convert", ndjson.to_str().unwrap(), "--out", tables.to_str().unwrap()], &configs, &secrets);
    assert!(!out.status.success() && text(&out).contains("--project"), "{}", text(&out));

    // Linked to imaging: the FHIR patient id is the keyed hash of the MRN, as the DICOM
    // PatientID's pseudonym is.
    std::fs::write(configs.join("check-project.fhir.yaml"), "link_imaging_by_identifier_system: urn:oid:hospital-mrn\n").unwrap();
    let out = pixl(&["fhir", "convert", ndjson.to_str().unwrap(), "--out", tables.to_str().unwrap(), "--project", "check-project"], &configs, &secrets);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("de-identified:"), "{}", text(&out));
    let settings = pixl_secrets::pseudonym_keys::KeySettings::from_lookup(|name| (name == "PIXL_SECRETS_FILE").then(|| secrets.display().to_string())).unwrap();
    let loaded = pixl_core::project_config::load_project(&configs, &pixl_core::ids::ProjectSlug::parse("check-project").unwrap()).unwrap();
    let keys = settings.open().unwrap().project_keys(&loaded).await.unwrap();
    let mrns: Vec<String> = std::fs::read_to_string(ndjson.join("Patient.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|p| p["identifier"].as_array().unwrap().iter().find(|i| i["system"] == "urn:oid:hospital-mrn").unwrap()["value"].as_str().unwrap().to_owned())
        .collect();
    let expected: std::collections::BTreeSet<String> = mrns.iter().map(|m| keys.hash(m, 64).unwrap()).collect();
    let ids: std::collections::BTreeSet<String> = column(&tables.join("patient.parquet"), "id").into_iter().collect();
    assert_eq!(ids, expected);
    let observed: std::collections::BTreeSet<String> = column(&tables.join("observation.parquet"), "patient_id").into_iter().collect();
    assert!(observed.is_subset(&ids) && !observed.is_empty());

    // A policy with a misspelt key is refused, naming it.
    std::fs::write(configs.join("check-project.fhir.yaml"), "keep_postcode_prefx: true\n").unwrap();
    let out = pixl(&["fhir", "convert", ndjson.to_str().unwrap(), "--out", tables.to_str().unwrap(), "--project", "check-project"], &configs, &secrets);
    assert!(!out.status.success() && text(&out).contains("keep_postcode_prefx"), "{}", text(&out));
    std::fs::remove_file(configs.join("check-project.fhir.yaml")).unwrap();

    // A broken line is reported by file and line, the rest converted, the exit status a failure.
    let mut patients = std::fs::read_to_string(ndjson.join("Patient.ndjson")).unwrap();
    patients.push_str("{\"resourceType\": \"Patient\", \"id\": \"x\", \"name\": [{\"family\": \"Unterminated\n");
    std::fs::write(ndjson.join("Patient.ndjson"), patients).unwrap();
    let out = pixl(&["fhir", "convert", ndjson.to_str().unwrap(), "--out", tables.to_str().unwrap(), "--project", "check-project"], &configs, &secrets);
    let said = text(&out);
    assert!(!out.status.success() && said.contains("Patient.ndjson:13: not valid JSON"), "{said}");
    assert!(!said.contains("Unterminated"), "no value of a bad line is printed: {said}");
    assert_eq!(column(&tables.join("patient.parquet"), "id").len(), 12);

    // Into an extract's export tree, where export-api's identifier check and upload find
    // every parquet file; the project comes from the extract's summary.
    std::fs::write(
        ndjson.join("Patient.ndjson"),
        std::fs::read_to_string(ndjson.join("Patient.ndjson")).unwrap().lines().take(12).map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let into = crate::support::IntoExtract::new(dir.path(), &configs, &secrets);
    let export_root = into.export_root.clone();
    let convert_into_extract = |extra: &[&str]| into.run(&["fhir", "convert", ndjson.to_str().unwrap()], extra);
    let out = convert_into_extract(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let tree = export_root.join("check-project/all_extracts/2024-05-06t07-08-09/fhir");
    assert_eq!(column(&tree.join("patient.parquet"), "id").len(), 12, "{}", text(&out));
    let out = convert_into_extract(&["--project", "another-project"]);
    assert!(!out.status.success() && text(&out).contains("not the extract's project"), "{}", text(&out));
    let out = convert_into_extract(&["--no-deid"]);
    assert!(!out.status.success(), "an export tree never gets tables that were not de-identified: {}", text(&out));

    // The raw resource goes to a terminal only.
    let out = pixl(&["fhir", "example", "Patient", ndjson.to_str().unwrap()], &configs, &secrets);
    assert!(!out.status.success() && text(&out).contains("terminal only"), "{}", text(&out));
}
