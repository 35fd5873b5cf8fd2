//! NDJSON → parquet through the shipped views, with and without de-identification: row
//! counts per table, and a scan of every string value of every output table for the
//! input's names, identifiers, telecom, addresses, original ids and unshifted dates.

use std::path::Path;

use arrow_array::{Array, ListArray, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pixl_fhir::convert::convert;
use pixl_fhir::deid::{Deidentifier, FhirPolicy, Keys};

/// Keyed like the real thing (a different input gives a different pseudonym), and with a
/// shift of a hundred years, so that a shifted date can never equal another input date
/// by chance (the generator's dates are all after 1925).
struct TestKeys;

impl Keys for TestKeys {
    fn pseudonym(&self, input: &str) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in input.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        format!("{h:016x}")
    }
    fn offset_days(&self, patient_key: &str) -> i64 {
        36_525 + (self.pseudonym(patient_key).as_bytes()[0] as i64 % 7)
    }
}

/// Every string of a parquet file (list items included), with its column name.
fn strings(path: &Path) -> Vec<(String, String)> {
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            if let Some(strings) = column.as_any().downcast_ref::<StringArray>() {
                out.extend(strings.iter().flatten().map(|s| (field.name().clone(), s.to_owned())));
            } else if let Some(lists) = column.as_any().downcast_ref::<ListArray>()
                && let Some(strings) = lists.values().as_any().downcast_ref::<StringArray>()
            {
                out.extend(strings.iter().flatten().map(|s| (field.name().clone(), s.to_owned())));
            }
        }
    }
    out
}

fn rows(path: &Path) -> usize {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().map(|b| b.unwrap().num_rows()).sum()
}

#[test]
fn de_identified_tables_hold_no_identifier_and_no_unshifted_date() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ndjson");
    let written = pixl_fhir::synth::write(&input, 40, 7).unwrap();
    let views = pixl_fhir::views::default_views();

    // Without de-identification the scan finds the identifiers: it can fail.
    let plain = dir.path().join("plain");
    let summary = convert(&input, &views, &plain, None).unwrap();
    assert_eq!(summary.tables["patient"].0, 40);
    let plain_strings: Vec<String> = summary.tables.values().flat_map(|(_, p)| strings(p)).map(|(_, s)| s).collect();
    assert!(written.identifiers.iter().any(|id| plain_strings.iter().any(|s| s.contains(id.as_str()))));

    let keys = TestKeys;
    let mut deid = Deidentifier::new(FhirPolicy::default(), &keys);
    let out = dir.path().join("deid");
    let summary = convert(&input, &views, &out, Some(&mut deid)).unwrap();
    assert_eq!(summary.bad_line_count, 0);
    // The one Organization is in a file no view reads: not parsed, counted as unread.
    assert_eq!(summary.resources + 1, written.resources);
    assert_eq!(summary.unread_files.get("Organization"), Some(&1));
    for (view, (count, path)) in &summary.tables {
        assert_eq!(*count as usize, rows(path), "{view}");
        assert!(*count > 0, "{view} has rows");
    }
    assert_eq!(summary.tables["patient"].0, 40);
    assert_eq!(summary.tables["observation_component"].0, 2 * summary.tables["encounter"].0, "two components per blood pressure");
    let deid_counts = summary.deid.as_ref().unwrap();
    assert!(deid_counts.spans_removed.values().sum::<u64>() > 0);

    let day_first = regex::Regex::new(r"\d{2}/\d{2}/\d{4}").unwrap();
    let mut found = Vec::new();
    for (_, path) in summary.tables.values() {
        for (column, value) in strings(path) {
            for secret in written.identifiers.iter().chain(&written.dates) {
                if value.contains(secret.as_str()) {
                    found.push(format!("{} column {column}", path.file_name().unwrap().to_string_lossy()));
                }
            }
            // Day-first dates of birth as the reports write them.
            if day_first.is_match(&value) {
                found.push(format!("a dd/mm/yyyy date in {column}"));
            }
        }
    }
    assert!(found.is_empty(), "identifiers survived in: {found:?}");

    // References still join: every observation's patient is a patient of the table.
    let patients: std::collections::BTreeSet<String> = strings(&summary.tables["patient"].1).into_iter().filter(|(c, _)| c == "id").map(|(_, v)| v).collect();
    let observed: std::collections::BTreeSet<String> =
        strings(&summary.tables["observation"].1).into_iter().filter(|(c, _)| c == "patient_id").map(|(_, v)| v).collect();
    assert!(!observed.is_empty() && observed.is_subset(&patients));
    // Birth dates are years only.
    let births: Vec<String> = strings(&summary.tables["patient"].1).into_iter().filter(|(c, _)| c == "birth_date").map(|(_, v)| v).collect();
    assert!(births.iter().all(|b| b.len() == 4), "{births:?}");
}
