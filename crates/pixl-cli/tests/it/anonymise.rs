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
    std::fs::write(dir.path().join("secrets.json"), r#"{"hashing-key": "offline-test-key"}"#).unwrap();
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
