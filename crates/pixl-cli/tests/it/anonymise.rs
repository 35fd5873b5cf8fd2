//! `pixl anonymise` offline on real DICOM files (PyPI pydicom's test files, installed by
//! test/run.sh): nothing identifying of any input survives in any output byte, and every
//! input is accounted for.

use pixl_cli::anonymise::anonymise;
use pixl_core::ids::ProjectSlug;
use pixl_secrets::pseudonym_keys::KeySettings;

use pixl_testkit::dicom::{all_files, assert_no_identifiers, project_dir, pydicom_files};

#[tokio::test]
async fn pydicom_corpus_leaves_no_identifier_and_every_file_is_counted() {
    let input = pydicom_files();
    let dir = tempfile::tempdir().unwrap();
    let configs = project_dir(dir.path());
    // A fixed project salt: with a random one, a shifted date could by chance equal another
    // input's date and be reported as surviving.
    std::fs::write(dir.path().join("secrets.json"), r#"{"hashing-key": "offline-test-key", "check-project": "5eed5a170000c0de"}"#).unwrap();
    let secrets = dir.path().join("secrets.json").display().to_string();
    let keys = KeySettings::from_lookup(|name| (name == "PIXL_SECRETS_FILE").then(|| secrets.clone())).unwrap().open().unwrap();
    let output = dir.path().join("out");
    let project = ProjectSlug::parse("check-project").unwrap();
    let summary = anonymise(&configs, &keys, &project, &input, &output).await.unwrap();

    let mut inputs = Vec::new();
    all_files(&input, &mut inputs);
    let accounted = summary.written + summary.dropped.values().sum::<u64>() + summary.failed.values().sum::<u64>();
    assert_eq!(accounted, inputs.len() as u64, "{summary}");
    assert!(summary.written >= 40, "most of the corpus is de-identified: {summary}");

    let mut outputs = Vec::new();
    all_files(&output, &mut outputs);
    assert_eq!(outputs.len() as u64, summary.written);
    assert_no_identifiers(&inputs, &outputs);

    // The same run again gives byte-identical output: pseudonyms are deterministic.
    let again = dir.path().join("again");
    anonymise(&configs, &keys, &project, &input, &again).await.unwrap();
    for path in &outputs {
        let twin = again.join(path.strip_prefix(&output).unwrap());
        assert_eq!(std::fs::read(path).unwrap(), std::fs::read(&twin).unwrap(), "{}", path.display());
    }
}

/// A site that moves from PIXL keeps its pseudonyms: with `pixl-blake2b`, PIXL's names for
/// the key secret and the local salt, and the salt stored under the project slug (not the
/// project's `azure_kv_alias`), the exported PatientID is PIXL's. The expected values were
/// computed with Python: `hashlib.blake2b((patient_id + salt + local_salt).encode(),
/// digest_size=32, key=key.encode()).hexdigest()`, the PatientID read as pydicom reads it
/// (trailing spaces dropped, leading ones kept).
#[tokio::test]
async fn pixl_blake2b_gives_the_pseudonyms_pixl_gives() {
    let configs = pixl_testkit::repo_root().join("../shared/fixtures/pixl-configs");
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    // The alias's "salt" is a decoy: using it gives other pseudonyms.
    std::fs::write(&secrets, r#"{"pixl-hash-key": "hashing-key-text", "test-extract-uclh-omop-cdm": "5f2c1e0a9b8d7c6e", "test": "0000000000000000"}"#).unwrap();
    let env = std::collections::HashMap::from([
        ("PIXL_SECRETS_FILE", secrets.display().to_string()),
        ("HASHER_ALGORITHM", "pixl-blake2b".to_owned()),
        ("HASHER_API_AZ_KEY_VAULT_SECRET_NAME", "pixl-hash-key".to_owned()),
        ("LOCAL_SALT_VALUE", "PIXL".to_owned()),
    ]);
    let lookup = |name: &str| pixl_core::pixl_env::with_pixl_names(name, |n| env.get(n).cloned());
    let keys = KeySettings::from_lookup(lookup).unwrap().open().unwrap();
    let project = ProjectSlug::parse("test-extract-uclh-omop-cdm").unwrap();

    let cases = [
        ("40012345  ", "3b0072efcf7254cdd5cbebc595f5d42c3e124decced24917f19d21b512f5cffc"),
        ("  0042", "af0154b096997be898c6f3daef170dac8d78593efc8af687543dd37d36cbf76c"),
    ];
    for (n, (patient_id, expected)) in cases.iter().enumerate() {
        let input = dir.path().join(format!("in{n}"));
        std::fs::create_dir_all(&input).unwrap();
        let mut instance = pixl_testkit::dicom::Synthetic::new("DX", 1);
        instance.manufacturer = Some("Carestream Health".to_owned());
        instance.patient_id = (*patient_id).to_owned();
        instance.study_uid = format!("1.2.826.0.1.3680043.10.1002.{}", n + 7);
        instance.write(&input.join("1.dcm"));
        let output = dir.path().join(format!("out{n}"));
        let summary = anonymise(&configs, &keys, &project, &input, &output).await.unwrap();
        assert_eq!(summary.written, 1, "{summary}");
        let mut files = Vec::new();
        all_files(&output, &mut files);
        let object = dicom_object::open_file(&files[0]).unwrap();
        let exported = object.element(dicom_dictionary_std::tags::PATIENT_ID).unwrap().to_str().unwrap().trim_end().to_owned();
        assert_eq!(exported, *expected, "PatientID {patient_id:?}");
    }
    // Nothing was created under the alias or anywhere else: the slug's salt was used.
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&secrets).unwrap()).unwrap();
    assert_eq!(stored.as_object().unwrap().len(), 3, "{:?}", stored.as_object().unwrap().keys().collect::<Vec<_>>());
}
