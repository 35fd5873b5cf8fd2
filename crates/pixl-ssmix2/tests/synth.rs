//! The generator's storage, with every deviation real storages hold: exact rows of every
//! table and exact deviation counts; kanji whose bytes are delimiters, CR and LF files,
//! deleted and superseded versions not read, hour 25 rolled into the next day.

use std::collections::BTreeMap;

use pixl_ssmix2::read::read_storage;
use pixl_ssmix2::records::{Table, Value};
use pixl_ssmix2::synth;

#[test]
fn a_generated_storage_with_every_deviation_reads_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let written = synth::write(dir.path(), 7, true).unwrap();
    let (patients, counts) = read_storage(dir.path()).unwrap();
    assert_eq!(patients.len(), 7);
    let days: usize = (0..7).map(synth::days_of).sum();
    assert_eq!(days, 20);
    let mut rows: BTreeMap<Table, usize> = BTreeMap::new();
    for patient in &patients {
        for record in &patient.records {
            *rows.entry(record.table).or_default() += 1;
        }
    }
    assert_eq!(
        rows,
        BTreeMap::from([(Table::OutpatientVisits, days + 2), (Table::Diagnoses, 7), (Table::PrescriptionOrders, days), (Table::LabResults, 3 * days),])
    );
    let deviations: Vec<(&str, u64)> = counts.deviations.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(
        deviations,
        [("duplicate_current_order_skipped", 1), ("file_in_wrong_folder", 1), ("junk_file", 1), ("order_number_not_15_digits", 1), ("pid_mismatch", 1)]
    );
    assert_eq!(counts.files.get(&("OML-11".to_owned(), 0)), Some(&1));
    assert_eq!(counts.files.get(&("OML-11".to_owned(), 2)), Some(&1));
    assert_eq!(counts.messages_parsed as usize, 7 * 2 + 3 * days + 2 + 1, "and the superseded lab report");
    assert_eq!(written.files, counts.messages_parsed as usize + 2, "every file but the deleted version and the duplicate was parsed");
    assert_eq!((counts.decode_errors, counts.unparsable_messages), (0, 0));

    // Birth dates and sex of every patient (read from PID-7/8 past a name whose bytes hold delimiters).
    for (i, patient) in patients.iter().enumerate() {
        assert_eq!(patient.pid, synth::pid_of(i));
        assert_eq!(patient.basics.sex.as_deref(), Some(if i % 2 == 0 { "F" } else { "M" }));
        assert_eq!(patient.basics.birth_date.unwrap().format("%Y%m%d").to_string(), format!("19{:02}0{}1{}", 30 + i % 60, 1 + i % 9, i % 10));
    }
    // Hour 25 on the first day of patient 0 is 01:30 the next day.
    let first = &patients[0];
    let starts: Vec<String> = first
        .records
        .iter()
        .filter(|r| r.table == Table::PrescriptionOrders)
        .filter_map(|r| match &r.values[8] {
            Value::Time(t) => Some(t.at.format("%Y-%m-%d %H:%M").to_string()),
            _ => None,
        })
        .collect();
    assert!(starts.contains(&"2022-01-04 01:30".to_owned()), "{starts:?}");
    // The superseded report (7.1), the deleted order (9.9) and the earlier duplicate of a
    // current report (6.9) are not in the results.
    let values: Vec<String> = first
        .records
        .iter()
        .filter(|r| r.table == Table::LabResults)
        .filter_map(|r| if let Value::Text(v) = &r.values[4] { Some(v.clone()) } else { None })
        .collect();
    assert!(
        values.contains(&"7.2".to_owned()) && !values.contains(&"7.1".to_owned()) && !values.contains(&"9.9".to_owned()) && !values.contains(&"6.9".to_owned()),
        "{values:?}"
    );
    // The current report's results carry the first report time, from the superseded version.
    let reported: Vec<String> = first
        .records
        .iter()
        .filter(|r| r.table == Table::LabResults)
        .filter_map(|r| if let Value::Time(t) = &r.values[10] { Some(t.at.format("%Y-%m-%d %H:%M").to_string()) } else { None })
        .collect();
    assert_eq!(reported[..3], ["2022-01-03 11:30", "2022-01-03 11:30", "2022-01-03 11:30"], "{reported:?}");
    assert!(reported[3..].iter().all(|r| r.ends_with("12:30")), "{reported:?}");
}

#[test]
fn kanji_names_whose_bytes_are_delimiters_parse_after_decoding() {
    let dir = tempfile::tempdir().unwrap();
    synth::write(dir.path(), 2, false).unwrap();
    for (i, family) in [(0, "日本"), (1, "京本")] {
        let pid = synth::pid_of(i);
        let folder = dir.path().join(&pid[0..3]).join(&pid[3..6]).join(&pid).join("-").join("ADT-00");
        let file = std::fs::read_dir(folder).unwrap().next().unwrap().unwrap().path();
        let bytes = std::fs::read(file).unwrap();
        assert!(bytes.contains(&b'\r') != bytes.contains(&b'\n'), "one terminator per file");
        // 日 is JIS 46 7C and 本 4B 5C: a '|' and a '\\' inside the name's bytes.
        assert!(bytes.windows(2).any(|w| w == [0x4B, 0x5C]), "本 in the name");
        let (text, _) = pixl_ssmix2::decode::decode(&bytes);
        let prepared = pixl_ssmix2::hl7::prepare(&text).unwrap();
        let msg = prepared.parse().unwrap();
        let pid_segment = msg.segment("PID").unwrap();
        assert_eq!(msg.value(pid_segment, 5, 1).as_deref(), Some(family));
        assert_eq!(msg.value(pid_segment, 7, 1).as_deref().map(str::len), Some(8));
    }
}
