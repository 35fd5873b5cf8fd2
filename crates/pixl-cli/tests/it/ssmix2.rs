//! `pixl ssmix2 extract` and `pixl decrypt` through the binary on the independent
//! generator's storage, with a recipient key made by ssh-keygen as ssmixtools' users make
//! theirs: every output file encrypted, opened again with the key (converted to PKCS#8,
//! as the refusal of OpenSSH's own format tells).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pixl_testkit::dicom::project_dir;

fn pixl(args: &[&str], configs: &Path, secrets: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pixl")).args(args).env("PROJECT_CONFIGS_DIR", configs).env("PIXL_SECRETS_FILE", secrets).output().expect("pixl runs")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/ssmix2-synthetic/storage")
}

#[test]
fn extract_encrypted_for_an_ssh_keygen_key_then_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let configs = project_dir(dir.path());
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, r#"{"hashing-key": "ssmix2-test-key", "check-project": "5eed5a170000c0de"}"#).unwrap();
    let key = dir.path().join("recipient");
    let made = Command::new("ssh-keygen").args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "recipient", "-f"]).arg(&key).output().unwrap();
    assert!(made.status.success(), "{}", text(&made));

    let out = dir.path().join("tables");
    let (root, out_s) = (fixture().display().to_string(), out.display().to_string());
    let public = format!("{}.pub", key.display());
    let args = [
        "ssmix2",
        "extract",
        &root,
        "--out",
        &out_s,
        "--project",
        "check-project",
        "--identity-tag",
        "UT",
        "--format",
        "csv",
        "--dob",
        "year",
        "--recipient-key",
        &public,
    ];
    let run = pixl(&args, &configs, &secrets);
    assert!(run.status.success(), "{}", text(&run));
    assert!(text(&run).contains("6 patients: 6 included") && text(&run).contains("adt12_message_type_a01 15"), "{}", text(&run));
    let mut sealed: Vec<PathBuf> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "bin")).collect();
    sealed.sort();
    assert_eq!(sealed.len(), 9, "7 record tables, patient_metadata and date_of_birth");

    // OpenSSH's own private key format is refused with the way out; the converted copy works.
    let sealed_args: Vec<String> = sealed.iter().map(|p| p.display().to_string()).collect();
    let plain = dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let mut decrypt = vec!["decrypt".to_owned()];
    decrypt.extend(sealed_args.iter().cloned());
    decrypt.extend(["--key".to_owned(), key.display().to_string(), "--out".to_owned(), plain.display().to_string()]);
    let refused = pixl(&decrypt.iter().map(String::as_str).collect::<Vec<_>>(), &configs, &secrets);
    assert!(!refused.status.success() && text(&refused).contains("ssh-keygen -p -m PKCS8"), "{}", text(&refused));
    let converted = Command::new("ssh-keygen").args(["-q", "-p", "-m", "PKCS8", "-N", "", "-P", "", "-f"]).arg(&key).output().unwrap();
    assert!(converted.status.success(), "{}", text(&converted));
    let opened = pixl(&decrypt.iter().map(String::as_str).collect::<Vec<_>>(), &configs, &secrets);
    assert!(opened.status.success(), "{}", text(&opened));
    let visits = std::fs::read_to_string(plain.join("outpatient_visits_UT.csv")).unwrap();
    assert_eq!(visits.lines().count(), 16, "a header and 15 visits");
    assert!(visits.lines().nth(1).unwrap().contains("UT,"), "ids carry the tag");
    assert!(!visits.contains("2024647717"), "no storage id");

    let bad =
        pixl(&["ssmix2", "extract", &root, "--out", &out_s, "--project", "check-project", "--identity-tag", "UT", "--format", "xlsx"], &configs, &secrets);
    assert!(!bad.status.success() && text(&bad).contains("invalid value 'xlsx' for '--format"), "{}", text(&bad));
    let no_map_key =
        pixl(&["ssmix2", "extract", &root, "--out", &out_s, "--project", "check-project", "--identity-tag", "V", "--ids", "shuffled"], &configs, &secrets);
    assert!(!no_map_key.status.success() && text(&no_map_key).contains("--id-map-key"), "{}", text(&no_map_key));
    // ssmixtools' numbering: the map is sealed for the key given, the tables use the numbers.
    let shuffled = dir.path().join("shuffled");
    let shuffled_s = shuffled.display().to_string();
    let args = [
        "ssmix2",
        "extract",
        &root,
        "--out",
        &shuffled_s,
        "--project",
        "check-project",
        "--identity-tag",
        "S",
        "--format",
        "csv",
        "--ids",
        "shuffled",
        "--id-map-key",
        &public,
    ];
    let run = pixl(&args, &configs, &secrets);
    assert!(run.status.success(), "{}", text(&run));
    assert!(shuffled.join("patient_id_S.csv.bin").is_file() && !shuffled.join("patient_id_S.csv").exists());
    let metadata = std::fs::read_to_string(shuffled.join("patient_metadata_S.csv")).unwrap();
    let mut numbers: Vec<String> = metadata.lines().skip(1).map(|l| l.split(',').next().unwrap().to_owned()).collect();
    numbers.sort();
    assert_eq!(numbers, ["1S", "2S", "3S", "4S", "5S", "6S"]);
}

/// `--extract`: the tables go into the extract's export tree (`ssmix2/`), where
/// export-api's identifier check and upload find every parquet file; what may not go
/// there (encrypted or CSV tables, run-local numbers, full dates of birth) is refused.
/// `--free-text deidentify` keeps generated lab comments through pixl-text.
#[test]
fn extract_into_an_export_tree_with_free_text_through_pixl_text() {
    let dir = tempfile::tempdir().unwrap();
    let configs = project_dir(dir.path());
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, r#"{"hashing-key": "ssmix2-test-key", "check-project": "5eed5a170000c0de"}"#).unwrap();
    let storage = dir.path().join("storage");
    let generated = pixl(&["ssmix2", "generate", storage.to_str().unwrap(), "--patients", "5"], &configs, &secrets);
    assert!(generated.status.success(), "{}", text(&generated));
    let into = crate::support::IntoExtract::new(dir.path(), &configs, &secrets);
    let export_root = into.export_root.clone();
    let run = |extra: &[&str]| into.run(&["ssmix2", "extract", storage.to_str().unwrap(), "--identity-tag", "E"], extra);
    for (extra, said) in [
        (&["--format", "csv"][..], "--extract writes parquet"),
        (&["--recipient-key", "key.pub"][..], "not encrypted"),
        (&["--dob", "full"][..], "--dob year"),
        (&["--project", "another-project"][..], "not the extract's project"),
        (&["--free-text", "keep"][..], "invalid value 'keep' for '--free-text"),
    ] {
        let refused = run(extra);
        assert!(!refused.status.success() && text(&refused).contains(said), "{extra:?}: {}", text(&refused));
    }
    assert!(!export_root.exists(), "nothing written by a refused run");

    let done = run(&["--free-text", "deidentify", "--dob", "year"]);
    assert!(done.status.success(), "{}", text(&done));
    let days: usize = (0..5).map(pixl_ssmix2::synth::days_of).sum();
    assert!(text(&done).contains(&format!("free text: {} values through pixl-text", 2 * days)), "{}", text(&done));
    let tree = export_root.join("check-project/all_extracts/2024-05-06t07-08-09/ssmix2");
    let mut files: Vec<String> = std::fs::read_dir(&tree).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(
        files,
        [
            "admissions_E.parquet",
            "analytics_E.json",
            "date_of_birth_E.parquet",
            "diagnoses_E.parquet",
            "discharges_E.parquet",
            "injection_orders_E.parquet",
            "lab_results_E.parquet",
            "outpatient_visits_E.parquet",
            "patient_metadata_E.parquet",
            "prescription_orders_E.parquet"
        ]
    );
    // The comments are kept, without the patients' names or phone number.
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(tree.join("lab_results_E.parquet")).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut comments = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let column = |name: &str| batch.column_by_name(name).unwrap().as_any().downcast_ref::<arrow_array::StringArray>().unwrap().clone();
        let (types, values) = (column("value_type"), column("value"));
        comments.extend((0..batch.num_rows()).filter(|&i| types.value(i) == "TX").map(|i| values.value(i).to_owned()));
    }
    assert_eq!(comments.len(), days);
    let names = ["日本", "京本", "日野", "本田", "東京", "太郎", "京子", "日出男", "本子", "剤子"];
    for comment in &comments {
        assert!(comment.starts_with("Repeat test advised.") && !comment.contains("5678"), "{comment}");
        assert!(names.iter().all(|name| !comment.contains(name)), "{comment}");
    }
}
