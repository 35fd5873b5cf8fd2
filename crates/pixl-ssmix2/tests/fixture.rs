//! The storage written by an independent generator (`../shared/fixtures/ssmix2-synthetic`,
//! ISO-2022-JP with LF terminators, ADT-12 files carrying ADT^A01): every event of its
//! source lists is read, with the values the messages hold.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pixl_ssmix2::read::read_storage;
use pixl_ssmix2::records::{Table, Value};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/ssmix2-synthetic/storage")
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "∅".to_owned(),
        Value::Text(t) => t.clone(),
        Value::Time(s) => s.at.format("%Y%m%d%H%M%S").to_string(),
        Value::Bool(b) => b.to_string(),
        Value::FreeText(t) => format!("free text: {t}"),
    }
}

#[test]
fn every_event_of_the_independent_storage_is_read() {
    let (patients, counts) = read_storage(&fixture()).expect("the fixture is readable");
    assert_eq!(patients.len(), 6);
    assert_eq!(counts.messages_parsed, 60);
    assert_eq!((counts.decode_errors, counts.unparsable_messages), (0, 0));
    let mut rows: BTreeMap<Table, usize> = BTreeMap::new();
    for patient in &patients {
        for record in &patient.records {
            *rows.entry(record.table).or_default() += 1;
            assert_eq!(record.values.len(), record.table.columns().len(), "{}", record.table.name());
        }
        assert!(patient.basics.birth_date.is_some() && patient.basics.sex.is_some(), "{}", patient.pid);
    }
    let expected = BTreeMap::from([
        (Table::OutpatientVisits, 15),
        (Table::Admissions, 3),
        (Table::Discharges, 3),
        (Table::Diagnoses, 12),
        (Table::PrescriptionOrders, 6),
        (Table::InjectionOrders, 3),
        (Table::LabResults, 12),
    ]);
    assert_eq!(rows, expected);
    assert_eq!(counts.deviations.get("adt12_message_type_a01"), Some(&15), "{:?}", counts.deviations);
    assert_eq!(counts.deviations.get("irregular_timestamp"), None, "{:?}", counts.deviations);

    // Patient 2024647717 (source-csv 64_M_0) as the messages hold it.
    let patient = patients.iter().find(|p| p.pid == "2024647717").unwrap();
    assert_eq!(patient.basics.birth_date.unwrap().to_string(), "1958-01-10");
    assert_eq!(patient.basics.sex.as_deref(), Some("M"));
    let of = |table: Table| -> Vec<Vec<String>> { patient.records.iter().filter(|r| r.table == table).map(|r| r.values.iter().map(text).collect()).collect() };
    assert!(of(Table::OutpatientVisits).contains(&vec!["102".to_owned(), "20220110083902".to_owned()]));
    let diagnoses = of(Table::Diagnoses);
    assert!(
        diagnoses.contains(
            &["MDCDX2", "20064316", "2型糖尿病", "I10", "E119", "F", "false", "20220110100500", "20211231123138", "20220109160253"].map(str::to_owned).to_vec()
        ),
        "{diagnoses:?}"
    );
    let prescriptions = of(Table::PrescriptionOrders);
    assert_eq!(prescriptions[0][..7], ["HOT9", "1124007F1", "メトホルミン塩酸塩錠250mg", "∅", "∅", "∅", "90d"].map(str::to_owned));
    let labs = of(Table::LabResults);
    assert!(
        labs.contains(
            &["JC10", "3D046000001920402", "HbA1c", "NM", "7.2", "%", "%", "99XYZ", "20220110110000", "∅", "20220110123151"].map(str::to_owned).to_vec()
        ),
        "{labs:?}"
    );
    let injections: Vec<Vec<String>> =
        patients.iter().flat_map(|p| p.records.iter().filter(|r| r.table == Table::InjectionOrders).map(|r| r.values.iter().map(text).collect())).collect();
    assert!(injections.iter().any(|r| r[3..6] == ["HOT9", "620007312", "生理食塩液500mL"].map(str::to_owned)), "{injections:?}");
}

/// Every event of `source-csv/` (the generator's input) is a row, matched by code and
/// time to the minute (the generator adds seconds).
#[test]
fn the_generators_source_events_are_all_rows() {
    let (patients, _) = read_storage(&fixture()).unwrap();
    let sources = [
        ("35_M_3", "0000827717"),
        ("48_F_1", "2024647482"),
        ("57_F_5", "0004647717"),
        ("64_M_0", "2024647717"),
        ("81_F_2", "0004647482"),
        ("92_M_4", "0000827482"),
    ];
    let mut matched = 0;
    for (csv, pid) in sources {
        let patient = patients.iter().find(|p| p.pid == pid).unwrap();
        let rows =
            |table: Table| -> Vec<Vec<String>> { patient.records.iter().filter(|r| r.table == table).map(|r| r.values.iter().map(text).collect()).collect() };
        let source = std::fs::read_to_string(fixture().join(format!("../source-csv/{csv}.csv"))).unwrap();
        for line in source.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let minute = &f[0][..12];
            let at = |value: &String| value.starts_with(minute);
            let found = match f[1] {
                "0" => rows(Table::Admissions).iter().any(|r| at(&r[1])),
                "1" => rows(Table::Discharges).iter().any(|r| at(&r[0]) && r[3] == f[10]),
                "2" => rows(Table::Diagnoses).iter().any(|r| r[1] == f[4] && r[4] == f[3] && at(&r[7]) && (r[6] == "true") == (f[5] == "1")),
                "3" => rows(Table::PrescriptionOrders).iter().any(|r| r[1] == f[6] && r[2] == f[2] && at(&r[7])),
                "4" => rows(Table::InjectionOrders).iter().any(|r| r[4] == f[6] && at(&r[9])),
                "5" => rows(Table::LabResults).iter().any(|r| r[1] == f[7] && r[4] == f[8] && r[5] == f[9] && at(&r[8])),
                other => panic!("unknown event type {other}"),
            };
            assert!(found, "{csv}: no row for {line}");
            matched += 1;
        }
    }
    assert_eq!(matched, 39, "3 admissions, 3 discharges, 12 diagnoses, 6 prescriptions, 3 injections, 12 labs");
}
