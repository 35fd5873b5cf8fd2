//! Extraction of the independent generator's storage into tables: exact row counts,
//! pseudonymous ids with the identity tag, timestamps converted, and no name, address,
//! phone number, insurance number or storage id of the messages in any cell; encrypted
//! output opens with the recipient's key to the same tables.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pixl_ssmix2::crypto::{DecryptionKey, RecipientKey};
use pixl_ssmix2::extract::{BirthDates, Format, Ids, Options, TimeMode, extract};
use pixl_ssmix2::read::FreeText;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/ssmix2-synthetic/storage")
}

struct TestIds;
impl Ids for TestIds {
    fn pseudonym(&self, pid: &str) -> String {
        format!("{:x}", pid.bytes().fold(7u64, |a, b| a.wrapping_mul(131).wrapping_add(u64::from(b))))
    }
    fn offset_days(&self, _: &str) -> i64 {
        -100
    }
}

fn options(format: Format, time_mode: TimeMode) -> Options {
    Options {
        identity_tag: "UT".to_owned(),
        time_mode,
        birth_dates: BirthDates::Year,
        period_start: None,
        period_end: None,
        min_encounters: 1,
        format,
        recipient: None,
        shuffled_ids_map_key: None,
        max_workers: 3,
        free_text: FreeText::Remove,
    }
}

/// Names, addresses, phones, insurance numbers and ids in the fixture's messages.
fn identifiers() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![fixture()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let (text, _) = pixl_ssmix2::decode::decode(&std::fs::read(&path).unwrap());
            for segment in text.split(['\r', '\n']) {
                let fields: Vec<&str> = segment.split('|').collect();
                let wanted: &[usize] = match fields[0] {
                    "PID" => &[3, 5, 11, 13, 14],
                    "NK1" => &[2, 4, 5, 6],
                    "IN1" => &[2, 3, 4, 36],
                    _ => &[],
                };
                for &i in wanted {
                    for part in fields.get(i).unwrap_or(&"").split(['^', '~', '&']) {
                        let part = pixl_ssmix2::normalise::normalise(part);
                        let digits = part.chars().all(|c| c.is_ascii_digit() || c == '-');
                        // Short numbers (house numbers, parts of a phone number) are in any timestamp.
                        // Kanji and kana names are often two characters; short ASCII is a code.
                        let shortest = if digits {
                            6
                        } else if part.is_ascii() {
                            4
                        } else {
                            2
                        };
                        if part.chars().count() >= shortest
                            && !["JHSD0001", "L", "I", "P", "JPN", "PRN", "PH", "H", "B", "O", "M", "F"].contains(&part.as_str())
                        {
                            found.insert(part);
                        }
                    }
                }
            }
        }
    }
    found
}

fn csv_cells(dir: &Path) -> Vec<(String, String)> {
    let mut cells = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "csv") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let mut reader = csv::Reader::from_path(&path).unwrap();
            for record in reader.records() {
                for value in record.unwrap().iter() {
                    cells.push((name.clone(), value.to_owned()));
                }
            }
        }
    }
    cells
}

#[test]
fn tables_hold_every_record_and_no_identifier() {
    let out = tempfile::tempdir().unwrap();
    let report = extract(&fixture(), out.path(), &options(Format::Csv, TimeMode::SinceBirth), &TestIds, &|_, _| {}).unwrap();
    let rows: Vec<(&str, u64)> = report.rows.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        rows,
        [
            ("admissions", 3),
            ("date_of_birth", 6),
            ("diagnoses", 12),
            ("discharges", 3),
            ("injection_orders", 3),
            ("lab_results", 12),
            ("outpatient_visits", 15),
            ("patient_metadata", 6),
            ("prescription_orders", 6)
        ]
    );
    assert_eq!((report.patients, report.patients_included, report.messages_parsed), (6, 6, 60));
    assert_eq!(report.files.get("ADT-12/1"), Some(&15));
    let secrets = identifiers();
    assert!(secrets.contains("2024647717") && secrets.len() > 30, "the scan has something to find: {}", secrets.len());
    let cells = csv_cells(out.path());
    for (file, cell) in &cells {
        for secret in &secrets {
            assert!(!cell.contains(secret.as_str()), "{file}: an identifier of the messages is in a table");
        }
    }
    // With free text kept through pixl-text too.
    let kept = tempfile::tempdir().unwrap();
    let mut with_text = options(Format::Csv, TimeMode::SinceBirth);
    with_text.free_text = FreeText::Deidentify;
    let report_kept = extract(&fixture(), kept.path(), &with_text, &TestIds, &|_, _| {}).unwrap();
    assert_eq!(report_kept.rows, report.rows);
    assert_eq!(report_kept.free_text.removed, 0);
    assert!(report.free_text.removed > 0, "the storage has free text (local wording) to keep or remove");
    assert_eq!(report_kept.free_text.deidentified + report_kept.free_text.withheld, report.free_text.removed);
    for (file, cell) in &csv_cells(kept.path()) {
        for secret in &secrets {
            assert!(!cell.contains(secret.as_str()), "{file}: an identifier of the messages is in a table (--free-text deidentify)");
        }
    }
    // The ids are pseudonyms with the tag; timestamps are time since birth.
    let visits = std::fs::read_to_string(out.path().join("outpatient_visits_UT.csv")).unwrap();
    let id = format!("{}UT", TestIds.pseudonym("2024647717"));
    assert!(visits.contains(&format!("{id},102,23376 days 08:39:02.000003")), "{visits}");
    let birth = std::fs::read_to_string(out.path().join("date_of_birth_UT.csv")).unwrap();
    assert!(birth.contains(&format!("{id},1958")), "{birth}");
    let analytics: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("analytics_UT.json")).unwrap()).unwrap();
    assert_eq!(analytics["deviations"]["adt12_message_type_a01"], 15);
    let text = analytics.to_string();
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "the report holds counts only");
    }
}

#[test]
fn shifted_parquet_and_selection() {
    let out = tempfile::tempdir().unwrap();
    let mut options = options(Format::Parquet, TimeMode::Shift);
    // Three patients were admitted (4 days with records); the others have 2.
    options.min_encounters = 3;
    let report = extract(&fixture(), out.path(), &options, &TestIds, &|_, _| {}).unwrap();
    assert_eq!((report.patients_included, report.excluded_by_min_encounters, report.excluded_by_period), (3, 3, 0));
    let file = std::fs::File::open(out.path().join("admissions_UT.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let mut dates = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let column = batch.column_by_name("admission_date").unwrap().as_any().downcast_ref::<arrow_array::StringArray>().unwrap().clone();
        dates.extend(column.iter().flatten().map(str::to_owned));
    }
    // 2022-03-01T14:00:00 (patient 2024647717's admission, PV1-44) shifted by -100 days.
    assert!(dates.contains(&"2021-11-21T14:00:00".to_owned()), "{dates:?}");
    // The same tag again in the same folder: refused, nothing replaced.
    let again = extract(&fixture(), out.path(), &options, &TestIds, &|_, _| {}).unwrap_err();
    assert!(again.to_string().contains("not replaced"), "{again}");

    // A period after every visit excludes everyone; one that holds a single day of a
    // patient's care includes them with all their records.
    let later = tempfile::tempdir().unwrap();
    let mut options = self::options(Format::Csv, TimeMode::Shift);
    options.period_start = chrono::NaiveDate::from_ymd_opt(2030, 1, 1);
    let report = extract(&fixture(), later.path(), &options, &TestIds, &|_, _| {}).unwrap();
    assert_eq!((report.patients_included, report.excluded_by_period), (0, 6));
    let one_day = tempfile::tempdir().unwrap();
    options.period_start = chrono::NaiveDate::from_ymd_opt(2022, 3, 1);
    options.period_end = chrono::NaiveDate::from_ymd_opt(2022, 3, 1);
    let report = extract(&fixture(), one_day.path(), &options, &TestIds, &|_, _| {}).unwrap();
    assert_eq!(report.patients_included, 1, "{report:?}");
    assert_eq!(report.rows["outpatient_visits"], 3, "the patient's visits outside the period too");
}

#[test]
fn encrypted_tables_open_with_the_recipients_key_only() {
    let (private_pem, public_pem) = pixl_ssmix2::crypto::generate_key_pair();
    let plain = tempfile::tempdir().unwrap();
    extract(&fixture(), plain.path(), &options(Format::Csv, TimeMode::SinceBirth), &TestIds, &|_, _| {}).unwrap();
    let sealed = tempfile::tempdir().unwrap();
    let mut options = options(Format::Csv, TimeMode::SinceBirth);
    options.recipient = Some(RecipientKey::parse(&public_pem).unwrap());
    let report = extract(&fixture(), sealed.path(), &options, &TestIds, &|_, _| {}).unwrap();
    assert!(report.files_written.iter().all(|f| f.ends_with(".csv.bin")), "{:?}", report.files_written);
    let names: BTreeSet<String> = std::fs::read_dir(sealed.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| n.ends_with(".bin") || n.starts_with("analytics_")), "nothing unencrypted but the counts: {names:?}");
    let key = DecryptionKey::parse(&private_pem).unwrap();
    for file in &report.files_written {
        let opened = key.open(&std::fs::read(sealed.path().join(file)).unwrap()).unwrap();
        let expected = std::fs::read(plain.path().join(file.trim_end_matches(".bin"))).unwrap();
        assert_eq!(opened, expected, "{file}");
    }
}

#[test]
fn the_tables_are_the_same_whatever_the_number_of_workers() {
    let storage = tempfile::tempdir().unwrap();
    pixl_ssmix2::synth::write(storage.path(), 40, true).unwrap();
    let mut outputs = Vec::new();
    for workers in [1, 4] {
        let out = tempfile::tempdir().unwrap();
        let mut options = options(Format::Csv, TimeMode::SinceBirth);
        options.max_workers = workers;
        let seen = std::sync::Mutex::new(Vec::new());
        let report = extract(storage.path(), out.path(), &options, &TestIds, &|done, all| seen.lock().unwrap().push((done, all))).unwrap();
        assert_eq!(*seen.lock().unwrap(), (1..=40).map(|d| (d, 40)).collect::<Vec<_>>(), "progress over every patient, in order");
        let mut files: Vec<(String, String)> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
            .collect();
        files.sort();
        outputs.push((files, report.deviations.clone(), report.messages_parsed));
    }
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn shuffled_ids_are_a_fresh_permutation_and_their_map_is_only_encrypted() {
    let (private_pem, public_pem) = pixl_ssmix2::crypto::generate_key_pair();
    let storage = tempfile::tempdir().unwrap();
    pixl_ssmix2::synth::write(storage.path(), 40, false).unwrap();
    let mut orders = Vec::new();
    for _ in 0..2 {
        let out = tempfile::tempdir().unwrap();
        let mut options = options(Format::Csv, TimeMode::SinceBirth);
        options.shuffled_ids_map_key = Some(RecipientKey::parse(&public_pem).unwrap());
        extract(storage.path(), out.path(), &options, &TestIds, &|_, _| {}).unwrap();
        let metadata = std::fs::read_to_string(out.path().join("patient_metadata_UT.csv")).unwrap();
        let ids: Vec<String> = metadata.lines().skip(1).map(|l| l.split(',').next().unwrap().to_owned()).collect();
        let mut sorted: Vec<u64> = ids.iter().map(|id| id.strip_suffix("UT").unwrap().parse().unwrap()).collect();
        sorted.sort();
        assert_eq!(sorted, (1..=40).collect::<Vec<u64>>(), "the numbers 1..N with the tag");
        assert!(!out.path().join("patient_id_UT.csv").exists());
        let sealed = std::fs::read(out.path().join("patient_id_UT.csv.bin")).unwrap();
        let map = String::from_utf8(DecryptionKey::parse(&private_pem).unwrap().open(&sealed).unwrap()).unwrap();
        let pairs: Vec<(String, String)> = map.lines().skip(1).map(|l| l.split_once(',').map(|(a, b)| (a.to_owned(), b.to_owned())).unwrap()).collect();
        // The map's order is the storage's, as the metadata rows'.
        assert_eq!(pairs.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>(), ids);
        assert_eq!(pairs[0].0, pixl_ssmix2::synth::pid_of(0));
        orders.push(ids);
    }
    assert_ne!(orders[0], orders[1], "a fresh order each run (1 in 40! to be equal)");
}

#[test]
fn free_text_is_left_out_or_goes_through_pixl_text_with_the_patients_probes() {
    let storage = tempfile::tempdir().unwrap();
    pixl_ssmix2::synth::write(storage.path(), 6, false).unwrap();
    let labs = |mode: FreeText| {
        let out = tempfile::tempdir().unwrap();
        let mut options = options(Format::Csv, TimeMode::SinceBirth);
        options.free_text = mode;
        let report = extract(storage.path(), out.path(), &options, &TestIds, &|_, _| {}).unwrap();
        let mut reader = csv::Reader::from_path(out.path().join("lab_results_UT.csv")).unwrap();
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        (report, rows)
    };
    // Column 3 is lab_text, 4 value_type, 5 value.
    let (report, rows) = labs(FreeText::Remove);
    let comments: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[4] == "TX").collect();
    let days: usize = (0..6).map(pixl_ssmix2::synth::days_of).sum();
    assert_eq!(comments.len(), days);
    assert!(comments.iter().all(|r| r[5].is_empty() && r[3].is_empty() && &r[2] == "9Z001"), "value and local wording left out, code kept");
    assert_eq!((report.free_text.removed, report.free_text.deidentified), (2 * days as u64, 0), "each comment's value and local wording");

    let (report, rows) = labs(FreeText::Deidentify);
    let comments: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[4] == "TX").collect();
    assert_eq!(comments.len(), days);
    assert_eq!((report.free_text.removed, report.free_text.deidentified), (0, 2 * days as u64));
    assert!(report.free_text.spans_masked.get("NAME").is_some_and(|n| *n >= days as u64), "{:?}", report.free_text);
    let all_names: Vec<&str> = ["日本", "京本", "日野", "本田", "東京", "太郎", "京子", "日出男", "本子", "剤子"].into();
    for row in comments {
        let value = &row[5];
        assert!(value.starts_with("Repeat test advised. Called "), "what is not identifying is kept: {value}");
        assert!(value.contains('\n'), "the repetitions are lines: {value}");
        for name in &all_names {
            assert!(!value.contains(name), "a name is left in {value}");
        }
        assert!(!value.contains("1234") && !value.contains("5678"), "the phone number is left in {value}");
    }
}
