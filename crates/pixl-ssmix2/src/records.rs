//! The records of each data type, as rows of the output tables. Only the fields the
//! tables name go into rows: names, addresses, phone numbers and insurance numbers (PID-5,
//! PID-11, PID-13, NK1, IN1) never do. The first four are read from ADT-00 only into
//! [`Basics::known`], pixl-text's probes for free text; IN1 is never parsed.

use chrono::NaiveDate;

use crate::hl7::{Coded, Msg};
use crate::storage::{DataFile, Deviations};
use crate::time::{self, Stamp};

/// A value of a row. Its `Debug` shows no free text.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Text(String),
    Time(Stamp),
    Bool(bool),
    /// Text that may name people: a free-text result (TX, FT, ST) or a local code system's
    /// wording. Written only after pixl-text, or not at all (`read::FreeText`).
    FreeText(String),
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => f.write_str("Null"),
            Value::Text(text) => f.debug_tuple("Text").field(text).finish(),
            Value::Time(stamp) => f.debug_tuple("Time").field(stamp).finish(),
            Value::Bool(b) => f.debug_tuple("Bool").field(b).finish(),
            Value::FreeText(text) => write!(f, "FreeText({} bytes)", text.len()),
        }
    }
}

/// The tables of records (the patient tables are made from ADT-00 and the folders).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    OutpatientVisits,
    Admissions,
    Discharges,
    Diagnoses,
    PrescriptionOrders,
    InjectionOrders,
    LabResults,
}

impl Table {
    pub const ALL: [Table; 7] =
        [Table::OutpatientVisits, Table::Admissions, Table::Discharges, Table::Diagnoses, Table::PrescriptionOrders, Table::InjectionOrders, Table::LabResults];

    pub fn name(self) -> &'static str {
        match self {
            Table::OutpatientVisits => "outpatient_visits",
            Table::Admissions => "admissions",
            Table::Discharges => "discharges",
            Table::Diagnoses => "diagnoses",
            Table::PrescriptionOrders => "prescription_orders",
            Table::InjectionOrders => "injection_orders",
            Table::LabResults => "lab_results",
        }
    }

    /// The columns after `patient_id` (ssmixtools' names).
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Table::OutpatientVisits => &["department", "visiting_date"],
            Table::Admissions => &["department", "admission_date", "time_of_transaction", "time_of_message"],
            Table::Discharges => &["discharge_date", "time_of_transaction", "time_of_message", "disposition"],
            Table::Diagnoses => &[
                "primary_diagnosis_coding_system",
                "primary_diagnosis_code",
                "primary_diagnosis_text",
                "secondary_diagnosis_coding_system",
                "secondary_diagnosis_code",
                "diagnosis_type",
                "provisional",
                "time_of_update",
                "date_of_onset",
                "date_of_diagnosis",
            ],
            Table::PrescriptionOrders => &[
                "primary_prescription_coding_system",
                "primary_prescription_code",
                "primary_prescription_text",
                "secondary_prescription_coding_system",
                "secondary_prescription_code",
                "secondary_prescription_text",
                "duration",
                "time_of_order",
                "start_of_order",
                "end_of_order",
            ],
            Table::InjectionOrders => &[
                "injection_type_coding_system",
                "injection_type_code",
                "injection_type_text",
                "primary_component_coding_system",
                "primary_component_code",
                "primary_component_text",
                "secondary_component_coding_system",
                "secondary_component_code",
                "secondary_component_text",
                "time_of_order",
                "start_of_order",
                "end_of_order",
            ],
            Table::LabResults => &[
                "lab_coding_system",
                "lab_code",
                "lab_text",
                "value_type",
                "value",
                "unit_text",
                "unit_code",
                "unit_coding_system",
                "sampled_time",
                "tested_time",
                "reported_time",
            ],
        }
    }
}

/// One row of a table (values in the table's column order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub table: Table,
    pub values: Vec<Value>,
}

/// What ADT-00 says of the patient.
#[derive(Debug, Clone, Default)]
pub struct Basics {
    pub birth_date: Option<NaiveDate>,
    pub sex: Option<String>,
    /// Names, address, phone numbers and ids (PID-3/5/11/13/14, NK1-2/4/5/6), only as
    /// probes for pixl-text: never written to a table. Its `Debug` shows no value.
    pub known: pixl_text::Patient,
}

fn count(deviations: &mut Deviations, kind: &'static str) {
    *deviations.entry(kind).or_default() += 1;
}

/// Context of one message's reading.
struct Reader<'a, 'm> {
    msg: &'a Msg<'m>,
    deviations: &'a mut Deviations,
}

impl Reader<'_, '_> {
    fn text(&self, segment: &str, field: usize, component: usize) -> Value {
        self.msg.segment(segment).and_then(|s| self.msg.value(s, field, component)).map_or(Value::Null, Value::Text)
    }

    fn time_text(&mut self, raw: Option<String>) -> Value {
        match raw {
            None => Value::Null,
            Some(raw) => match time::parse(&raw) {
                Some(stamp) => Value::Time(stamp),
                None => {
                    count(self.deviations, "irregular_timestamp");
                    Value::Null
                }
            },
        }
    }

    fn time(&mut self, segment: &str, field: usize) -> Value {
        let raw = self.msg.segment(segment).and_then(|s| self.msg.value(s, field, 1));
        self.time_text(raw)
    }
}

/// A coded value's system, code and (with `with_text`) text. A local code system's text
/// is the hospital's own wording, which may be free text: it is [`Value::FreeText`].
/// Standard masters' texts (MDCDX2, HOT, JLAC10) are kept as they are.
fn coded_values(coded: Option<Coded>, with_text: bool) -> Vec<Value> {
    let text = |v: Option<String>| v.map_or(Value::Null, Value::Text);
    match coded {
        Some(c) if with_text => {
            let wording = if is_local(&c.system) { c.text.map_or(Value::Null, Value::FreeText) } else { text(c.text) };
            vec![Value::Text(c.system), text(c.code), wording]
        }
        Some(c) => vec![Value::Text(c.system), text(c.code)],
        None if with_text => vec![Value::Null, Value::Null, Value::Null],
        None => vec![Value::Null, Value::Null],
    }
}

fn is_hot(system: &str) -> bool {
    matches!(system, "HOT" | "HOT7" | "HOT07" | "HOT9" | "HOT09" | "HOT11" | "HOT13")
}

fn is_local(system: &str) -> bool {
    system.starts_with("99")
}

/// Patient basics from an ADT-00 message: PID-7 birth date, PID-8 sex, and what pixl-text
/// needs to find the patient in free text.
pub fn basics(msg: &Msg<'_>) -> Basics {
    let pid = msg.segment("PID");
    let birth_date = pid.and_then(|p| msg.value(p, 7, 1)).and_then(|d| time::parse(&d)).map(|s| s.at.date());
    let sex = pid.and_then(|p| msg.value(p, 8, 1));
    let mut known = pixl_text::Patient::default();
    for segment in msg.segments().filter(|s| s.name == "PID" || s.name == "NK1") {
        let (names, address, phones): (usize, usize, &[usize]) = if segment.name == "PID" { (5, 11, &[13, 14]) } else { (2, 4, &[5, 6]) };
        // Every repetition: SS-MIX2 writes the kanji name, then the kana reading.
        for name in msg.repeats(segment, names) {
            // A name may be written whole in one component ("山田 太郎"): its words too.
            for (component, list) in [(0, &mut known.surnames), (1, &mut known.first_names)] {
                let Some(Some(value)) = name.get(component) else { continue };
                let words: Vec<&str> = value.split_whitespace().collect();
                if words.len() > 1 {
                    list.extend(words.iter().map(|w| (*w).to_owned()));
                }
                list.push(value.clone());
            }
        }
        for place in msg.repeats(segment, address) {
            // Street, other, city, prefecture, postal code.
            known.postcodes.extend(place.into_iter().take(5).flatten());
        }
        for &field in phones {
            for phone in msg.repeats(segment, field) {
                // XTN-1 (the number as written) or XTN-12 (unformatted).
                known.phones.extend(phone.first().cloned().flatten());
                known.phones.extend(phone.get(11).cloned().flatten());
            }
        }
        if segment.name == "PID" {
            for id in msg.repeats(segment, 3) {
                known.identifiers.extend(id.first().cloned().flatten());
            }
        }
    }
    known.dates_of_birth.extend(birth_date.map(|d| d.format("%Y-%m-%d").to_string()));
    Basics { birth_date, sex, known }
}

/// The segments the records of a data type read, each with the last field read (0: the
/// whole segment), or `None` for a data type that makes no rows: its files are counted,
/// not parsed. MSH is read up to MSH-9. What is not read is not parsed either: IN1, DB1,
/// AL1, RXR..., and the names and addresses of PID but in ADT-00 (for pixl-text's probes).
pub fn segments_read(data_type: &str) -> Option<&'static [(&'static str, usize)]> {
    Some(match data_type {
        "ADT-00" => &[("PID", 0), ("NK1", 0)],
        "ADT-12" | "ADT-22" | "ADT-52" => &[("EVN", 2), ("PID", 3), ("PV1", 45)],
        "PPR-01" => &[("PID", 3), ("PRB", 16)],
        "OMP-01" | "OMP-02" => &[("PID", 3), ("ORC", 9), ("RXE", 31), ("TQ1", 8), ("RXC", 2)],
        "OML-11" => &[("PID", 3), ("SPM", 17), ("OBR", 22), ("OBX", 14)],
        _ => return None,
    })
}

/// The patient id a message names (PID-3, first component).
pub fn message_pid(msg: &Msg<'_>) -> Option<String> {
    msg.segment("PID").and_then(|p| msg.value(p, 3, 1))
}

/// The records of one file of a data type that makes rows.
pub fn records(file: &DataFile, msg: &Msg<'_>, deviations: &mut Deviations) -> Vec<Record> {
    let message_type = msg.message_type();
    let mut reader = Reader { msg, deviations };
    let department = |reader: &Reader<'_, '_>| match reader.text("PV1", 10, 1) {
        Value::Null => file.name.department.clone().map_or(Value::Null, Value::Text),
        value => value,
    };
    let expect = |reader: &mut Reader<'_, '_>, wanted: &str| {
        if message_type != wanted {
            count(reader.deviations, "unexpected_message_type");
            false
        } else {
            true
        }
    };
    match file.name.data_type.as_str() {
        "ADT-12" => {
            // The guideline's ADT^A04; some generators and systems write ADT^A01. The
            // folder says it is an outpatient visit: read it, and count it.
            if message_type == "ADT^A01" {
                count(reader.deviations, "adt12_message_type_a01");
            } else if !expect(&mut reader, "ADT^A04") {
                return Vec::new();
            }
            let values = vec![department(&reader), reader.time("PV1", 44)];
            vec![Record { table: Table::OutpatientVisits, values }]
        }
        "ADT-22" => {
            if !expect(&mut reader, "ADT^A01") {
                return Vec::new();
            }
            let values = vec![department(&reader), reader.time("PV1", 44), reader.time("EVN", 2), reader.time("MSH", 7)];
            vec![Record { table: Table::Admissions, values }]
        }
        "ADT-52" => {
            if !expect(&mut reader, "ADT^A03") {
                return Vec::new();
            }
            let values = vec![reader.time("PV1", 45), reader.time("EVN", 2), reader.time("MSH", 7), reader.text("PV1", 36, 1)];
            vec![Record { table: Table::Discharges, values }]
        }
        "PPR-01" => diagnoses(&mut reader),
        "OMP-01" => orders(&mut reader, false),
        "OMP-02" => orders(&mut reader, true),
        "OML-11" => labs(&mut reader),
        _ => Vec::new(),
    }
}

fn diagnoses(reader: &mut Reader<'_, '_>) -> Vec<Record> {
    let msg = reader.msg;
    let mut rows = Vec::new();
    for prb in msg.segments().filter(|s| s.name == "PRB") {
        if msg.value(prb, 1, 1).as_deref() != Some("AD") {
            continue;
        }
        let primary = msg.coded(prb, 3, |s| s == "MDCDX2").or_else(|| msg.coded(prb, 3, |_| true));
        let secondary = msg.coded(prb, 10, |s| s == "I10" || s == "ICD10");
        let diagnosis_type = msg.coded(prb, 10, |s| s == "JHSD0004").and_then(|c| c.code).map_or(Value::Null, Value::Text);
        // PRB-13 as a JHSD0005 code, or bare.
        let provisional = match msg.coded(prb, 13, |s| s == "JHSD0005").and_then(|c| c.code).or_else(|| msg.value(prb, 13, 1)) {
            Some(flag) => Value::Bool(flag == "1" || flag.eq_ignore_ascii_case("Y")),
            None => Value::Bool(false),
        };
        let mut values = coded_values(primary, true);
        values.extend(coded_values(secondary, false));
        values.push(diagnosis_type);
        values.push(provisional);
        for field in [2, 16, 7] {
            let raw = msg.value(prb, field, 1);
            values.push(reader.time_text(raw));
        }
        rows.push(Record { table: Table::Diagnoses, values });
    }
    rows
}

/// Segments from one ORC to the next.
fn order_groups<'a, 'm>(msg: &'a Msg<'m>) -> Vec<Vec<&'a hl7_parser::message::Segment<'m>>> {
    let mut groups: Vec<Vec<&hl7_parser::message::Segment<'m>>> = Vec::new();
    for segment in msg.segments() {
        match segment.name {
            "ORC" => groups.push(vec![segment]),
            _ => {
                if let Some(group) = groups.last_mut() {
                    group.push(segment);
                }
            }
        }
    }
    groups
}

fn orders(reader: &mut Reader<'_, '_>, injections: bool) -> Vec<Record> {
    let msg = reader.msg;
    let mut rows = Vec::new();
    for group in order_groups(msg) {
        let orc = group[0];
        if msg.value(orc, 1, 1).as_deref() != Some("NW") {
            continue;
        }
        let Some(rxe) = group.iter().find(|s| s.name == "RXE").copied() else {
            count(reader.deviations, "order_without_rxe");
            continue;
        };
        let tq1 = group.iter().find(|s| s.name == "TQ1").copied();
        let ordered = msg.value(orc, 9, 1);
        let start = tq1.and_then(|t| msg.value(t, 7, 1));
        let end = tq1.and_then(|t| msg.value(t, 8, 1));
        let mut times = Vec::new();
        for raw in [ordered, start, end] {
            times.push(reader.time_text(raw));
        }
        if injections {
            let injection_type = msg.coded(rxe, 2, |s| s == "99I02").or_else(|| msg.coded(rxe, 2, |_| true));
            let components: Vec<_> = group.iter().filter(|s| s.name == "RXC").collect();
            let component_rows: Vec<(Option<Coded>, Option<Coded>)> = if components.is_empty() {
                vec![(None, None)]
            } else {
                components
                    .iter()
                    .map(|rxc| {
                        let primary = msg.coded(rxc, 2, is_hot).or_else(|| msg.coded(rxc, 2, |_| true));
                        let secondary = msg.coded(rxc, 2, |s| is_local(s) && primary.as_ref().is_none_or(|p| p.system != s));
                        (primary, secondary)
                    })
                    .collect()
            };
            for (primary, secondary) in component_rows {
                let mut values = coded_values(injection_type.clone(), true);
                values.extend(coded_values(primary, true));
                values.extend(coded_values(secondary, true));
                values.extend(times.iter().cloned());
                rows.push(Record { table: Table::InjectionOrders, values });
            }
        } else {
            let primary = msg.coded(rxe, 2, is_hot).or_else(|| msg.coded(rxe, 2, |_| true));
            let secondary = msg.coded(rxe, 31, |s| s == "YJ" || s == "MYAK");
            let duration = tq1.and_then(|t| {
                let amount = msg.value(t, 6, 1)?;
                Some(format!("{amount}{}", msg.value(t, 6, 2).unwrap_or_default()))
            });
            let mut values = coded_values(primary, true);
            values.extend(coded_values(secondary, true));
            values.push(duration.map_or(Value::Null, Value::Text));
            values.extend(times);
            rows.push(Record { table: Table::PrescriptionOrders, values });
        }
    }
    rows
}

/// A numeric result as HL7 writes one (NM `-1.5`, SN `>^5`, `^1^:^128`, NA `1^2^3`):
/// digits, signs, comparators, separators and white space only.
fn numeric(value: &str) -> bool {
    value.chars().any(|c| c.is_ascii_digit()) && value.chars().all(|c| c.is_ascii_digit() || " .+-<>=^:/~".contains(c))
}

/// The position of `reported_time` in a lab row.
pub const LAB_REPORTED_TIME: usize = 10;

/// The earliest OBR-22 (results reported) of a lab message.
pub fn first_report_time(msg: &Msg<'_>) -> Option<Stamp> {
    msg.segments().filter(|s| s.name == "OBR").filter_map(|s| msg.value(s, 22, 1)).filter_map(|t| time::parse(&t)).min_by_key(|s| s.at)
}

fn labs(reader: &mut Reader<'_, '_>) -> Vec<Record> {
    let msg = reader.msg;
    let mut rows = Vec::new();
    let (mut sampled, mut reported): (Option<String>, Option<String>) = (None, None);
    for segment in msg.segments() {
        match segment.name {
            "SPM" => {
                sampled = msg.value(segment, 17, 1);
                reported = None;
            }
            "OBR" => reported = msg.value(segment, 22, 1),
            "OBX" => {
                let lab = msg.coded(segment, 3, |s| s == "JC10").or_else(|| msg.coded(segment, 3, |_| true));
                let value_type = msg.value(segment, 2, 1);
                // Numbers are kept; a coded result keeps its text (component 2, as ssmixtools)
                // or code; text of any other kind (TX, FT, ST, none given) may name people:
                // it is free text, every repetition a line.
                // A number that is not one (text typed into a numeric result) is free text; so
                // is a coded result's wording from a local (`99…`) system.
                let value = match value_type.as_deref() {
                    Some("NM" | "SN" | "NA") => msg.value(segment, 5, 0).map(|v| if numeric(&v) { Value::Text(v) } else { Value::FreeText(v) }),
                    Some("CWE" | "CE" | "CNE" | "CF") => {
                        let local = msg.value(segment, 5, 3).is_some_and(|system| is_local(&system));
                        match msg.value(segment, 5, 2) {
                            Some(text) if local => Some(Value::FreeText(text)),
                            Some(text) => Some(Value::Text(text)),
                            None => msg.value(segment, 5, 1).map(Value::Text),
                        }
                    }
                    _ => msg.lines(segment, 5).map(Value::FreeText),
                };
                let unit = msg.coded(segment, 6, |_| true);
                let mut values = coded_values(lab, true);
                values.push(value_type.map_or(Value::Null, Value::Text));
                values.push(value.unwrap_or(Value::Null));
                // ssmixtools' order: unit_text, unit_code, unit_coding_system. A unit's text
                // is a unit, in a local system too.
                let text = |v: Option<String>| v.map_or(Value::Null, Value::Text);
                match unit {
                    Some(unit) => values.extend([text(unit.text), text(unit.code), Value::Text(unit.system)]),
                    None => values.extend([Value::Null, Value::Null, Value::Null]),
                }
                let tested = msg.value(segment, 14, 1);
                for raw in [sampled.clone(), tested, reported.clone()] {
                    values.push(reader.time_text(raw));
                }
                rows.push(Record { table: Table::LabResults, values });
            }
            _ => {}
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probes_are_every_name_address_phone_and_id_of_adt00() {
        let text = [
            "MSH|^~\\&|HIS|H|SSMIX2|H|20220110090000||ADT^A08^ADT_A01|1|P|2.5",
            "PID|||0001234567^^^^PI||日本^太郎^^^^^L^I~ニホン^タロウ^^^^^L^P~NIHON TARO^^^^^^L^A||19580110|M|||東京都文京区本郷7-3-1^^^^113-8655^JPN^H||03-1234-5678^PRN^PH~^^^^^^^^^^^0312345679",
            "NK1|1|日本^花子^^^^^L^I|SPO^配偶者^HL70063|大阪府^^^^530-0001|06-1111-2222|07-3333-4444",
            "IN1|1|06123456^^^^IN|保険者|東京都^^^^100-0001|||||||||||||||||||||||||||||||||||12345678",
        ]
        .join("\r");
        let prepared = crate::hl7::prepare_only(&text, segments_read("ADT-00").unwrap()).unwrap();
        let msg = prepared.parse().unwrap();
        let basics = basics(&msg);
        assert_eq!(basics.birth_date.unwrap().to_string(), "1958-01-10");
        assert_eq!(basics.sex.as_deref(), Some("M"));
        let known = basics.known;
        assert_eq!(known.surnames, ["日本", "ニホン", "NIHON", "TARO", "NIHON TARO", "日本"]);
        assert_eq!(known.first_names, ["太郎", "タロウ", "花子"]);
        assert_eq!(known.identifiers, ["0001234567"]);
        assert_eq!(known.phones, ["03-1234-5678", "0312345679", "06-1111-2222", "07-3333-4444"]);
        assert_eq!(known.postcodes, ["東京都文京区本郷7-3-1", "113-8655", "大阪府", "530-0001"]);
        assert_eq!(known.dates_of_birth, ["1958-01-10"]);
        assert!(!format!("{known:?}").contains("日本"), "no value in Debug");
        // IN1 is not parsed at all.
        assert!(msg.segment("IN1").is_none());
    }

    #[test]
    fn numbers_are_numbers_and_typed_text_is_free_text() {
        for number in ["-1.5", "7.2", ">^5", "^1^:^128", "1^2^3", " 12 "] {
            assert!(numeric(number), "{number}");
        }
        for text in ["", "see comment", "日本", "5 (Dr Smith)", "N/A"] {
            assert!(!numeric(text), "{text}");
        }
    }
}
