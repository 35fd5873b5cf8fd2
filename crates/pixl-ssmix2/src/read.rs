//! Reading a patient's folder, or a whole storage, into records.

use std::collections::BTreeMap;
use std::path::Path;

use crate::decode::decode;
use crate::hl7::prepare_only;
use crate::records::{self, Basics, Record, Value};
use crate::storage::{self, DataFile, Deviations, Flag, PatientDir};
use crate::time::Stamp;

/// One patient's records.
#[derive(Debug, Clone)]
pub struct PatientRecords {
    /// The folder's patient id (never written to a table as it is).
    pub pid: String,
    pub basics: Basics,
    pub date_folders: Vec<String>,
    pub records: Vec<Record>,
}

/// What reading found, in counts only.
#[derive(Debug, Clone, Default)]
pub struct ReadCounts {
    /// Files per (data type, condition flag).
    pub files: BTreeMap<(String, u8), u64>,
    pub messages_parsed: u64,
    pub decode_errors: u64,
    pub unparsable_messages: u64,
    pub deviations: Deviations,
    pub free_text: FreeTextCounts,
}

/// What became of free text (lab results of type TX/FT/ST, local code systems' wording).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FreeTextCounts {
    /// Values left out (`FreeText::Remove`).
    pub removed: u64,
    /// Values written after pixl-text.
    pub deidentified: u64,
    /// Values pixl-text's second check doubted after masking: left out.
    pub withheld: u64,
    /// Spans pixl-text masked, by category.
    pub spans_masked: std::collections::BTreeMap<&'static str, u64>,
}

impl ReadCounts {
    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: ReadCounts) {
        for (key, n) in other.files {
            *self.files.entry(key).or_default() += n;
        }
        for (key, n) in other.deviations {
            *self.deviations.entry(key).or_default() += n;
        }
        self.messages_parsed += other.messages_parsed;
        self.decode_errors += other.decode_errors;
        self.unparsable_messages += other.unparsable_messages;
        self.free_text.removed += other.free_text.removed;
        self.free_text.deidentified += other.free_text.deidentified;
        self.free_text.withheld += other.free_text.withheld;
        for (key, n) in other.free_text.spans_masked {
            *self.free_text.spans_masked.entry(key).or_default() += n;
        }
    }
}

fn flag_number(flag: Flag) -> u8 {
    match flag {
        Flag::Deleted => 0,
        Flag::Current => 1,
        Flag::Superseded => 2,
    }
}

/// Reads one patient's folder.
pub fn read_patient(dir: &PatientDir, counts: &mut ReadCounts) -> PatientRecords {
    let mut patient = PatientRecords { pid: dir.pid.clone(), basics: Basics::default(), date_folders: dir.date_folders.clone(), records: Vec::new() };
    // The first report time of each lab order: superseded versions (flag 2) of an OML-11
    // order were reported before the current one.
    let mut first_reports: std::collections::HashMap<&str, Stamp> = std::collections::HashMap::new();
    let mut lab_orders: Vec<(&str, std::ops::Range<usize>)> = Vec::new();
    let latest = latest_current_orders(dir);
    for file in &dir.files {
        *counts.files.entry((file.name.data_type.clone(), flag_number(file.name.flag))).or_default() += 1;
        let superseded_lab = file.name.flag == Flag::Superseded && file.name.data_type == "OML-11";
        // Only current versions are read, and superseded lab reports for their report time.
        if file.name.flag != Flag::Current && !superseded_lab {
            continue;
        }
        // A file named for another patient is not mixed into this one's records.
        if file.name.pid != dir.pid {
            *counts.deviations.entry("file_of_another_patient_skipped").or_default() += 1;
            continue;
        }
        // One current version per order: a second one (a copy in another folder, a message
        // filed twice) would double the order's rows.
        if file.name.flag == Flag::Current
            && let Some(kept) = latest.get(&(file.name.data_type.as_str(), file.name.order_number.as_str(), file.name.date.as_deref()))
            && !std::ptr::eq(*kept, file)
        {
            *counts.deviations.entry("duplicate_current_order_skipped").or_default() += 1;
            continue;
        }
        let Some(segments) = records::segments_read(&file.name.data_type) else { continue };
        let Some(msg_text) = read_text(&file.path, counts) else { continue };
        let Ok(prepared) = prepare_only(&msg_text, segments) else {
            counts.unparsable_messages += 1;
            continue;
        };
        let Ok(msg) = prepared.parse() else {
            counts.unparsable_messages += 1;
            continue;
        };
        counts.messages_parsed += 1;
        if records::message_pid(&msg).is_some_and(|pid| pid != dir.pid) {
            *counts.deviations.entry("pid_mismatch").or_default() += 1;
        }
        if superseded_lab {
            if let Some(reported) = records::first_report_time(&msg) {
                let entry = first_reports.entry(file.name.order_number.as_str()).or_insert(reported);
                if reported.at < entry.at {
                    *entry = reported;
                }
            }
        } else if file.name.data_type == "ADT-00" {
            // The last one read (names sort by event time) gives birth date and sex; the
            // names and numbers of every one are probes.
            let earlier = std::mem::take(&mut patient.basics.known);
            patient.basics = records::basics(&msg);
            let known = &mut patient.basics.known;
            known.first_names.extend(earlier.first_names);
            known.surnames.extend(earlier.surnames);
            known.identifiers.extend(earlier.identifiers);
            known.dates_of_birth.extend(earlier.dates_of_birth);
            known.phones.extend(earlier.phones);
            known.postcodes.extend(earlier.postcodes);
        } else {
            let start = patient.records.len();
            patient.records.extend(records::records(file, &msg, &mut counts.deviations));
            if file.name.data_type == "OML-11" {
                lab_orders.push((file.name.order_number.as_str(), start..patient.records.len()));
            }
        }
    }
    for (order, rows) in lab_orders {
        let Some(first) = first_reports.get(order) else { continue };
        for record in &mut patient.records[rows] {
            let reported = &mut record.values[records::LAB_REPORTED_TIME];
            if !matches!(reported, Value::Time(current) if current.at <= first.at) {
                *reported = Value::Time(*first);
            }
        }
    }
    patient
}

/// Data types whose files are versions of one order (its order number).
const ORDER_TYPES: [&str; 3] = ["OMP-01", "OMP-02", "OML-11"];

/// An order: data type, order number and the day in the file name.
type OrderKey<'a> = (&'a str, &'a str, Option<&'a str>);

/// Of the current files of each order, the one with the latest event time (then path).
fn latest_current_orders(dir: &PatientDir) -> std::collections::HashMap<OrderKey<'_>, &DataFile> {
    let mut latest: std::collections::HashMap<OrderKey<'_>, &DataFile> = std::collections::HashMap::new();
    // A placeholder order number (all 0s or 9s) names no order: such files are all read.
    let placeholder = |number: &str| number.bytes().all(|b| b == b'0') || number.bytes().all(|b| b == b'9');
    let current_orders = dir.files.iter().filter(|f| {
        f.name.flag == Flag::Current && f.name.pid == dir.pid && ORDER_TYPES.contains(&f.name.data_type.as_str()) && !placeholder(&f.name.order_number)
    });
    for file in current_orders {
        // The day in the name too: a copy in another folder keeps its name; an order
        // number used again on another day is another order.
        let key = (file.name.data_type.as_str(), file.name.order_number.as_str(), file.name.date.as_deref());
        let kept = latest.entry(key).or_insert(file);
        if (file.name.event_time.as_str(), &file.path) > (kept.name.event_time.as_str(), &kept.path) {
            *kept = file;
        }
    }
    latest
}

/// What is done with free text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FreeText {
    /// Left out (the default): the column is empty and the value counted.
    #[default]
    Remove,
    /// Through pixl-text with the patient's own names, address, phone numbers, ids and
    /// date of birth as probes; every span it finds becomes `[CATEGORY]`. pixl-text knows
    /// no Japanese words, so every run of letters and digits that holds a kanji or kana is
    /// masked whole (`[OTHER]`). pixl-text's second check then reads the result with the
    /// patient's probes: a value it doubts is withheld (empty, counted).
    Deidentify,
}

/// A run of letters and digits holding Japanese script (no spaces separate Japanese
/// words, so the run is a phrase: names, dates and places inside it go with it).
static JAPANESE_RUN: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"[\p{L}\p{N}ー・]*[\p{Han}\p{Hiragana}\p{Katakana}][\p{L}\p{N}ー・]*").expect("the pattern compiles"));

/// One free-text value through pixl-text and the Japanese rule, then the second check:
/// the masked text, or `None` when the check doubts it.
fn deidentify(text: &str, probes: &pixl_text::Probes, known: &pixl_text::Patient, counts: &mut FreeTextCounts) -> Option<String> {
    let mut spans = pixl_text::detect_with(text, Some(probes)).spans;
    spans.extend(JAPANESE_RUN.find_iter(text).map(|m| pixl_text::Span { start: m.start(), end: m.end(), category: pixl_text::Category::Other }));
    let spans = pixl_text::merge(spans);
    let masked = pixl_text::mask_tags(text, &spans);
    if !pixl_text::check::check(&masked, Some(known)).is_empty() {
        counts.withheld += 1;
        return None;
    }
    for span in &spans {
        *counts.spans_masked.entry(span.category.as_str()).or_default() += 1;
    }
    counts.deidentified += 1;
    Some(masked)
}

/// Replaces every free-text value of `patient` as `mode` says; no free text is left.
pub fn resolve_free_text(patient: &mut PatientRecords, mode: FreeText, counts: &mut FreeTextCounts) {
    let mut probes: Option<pixl_text::Probes> = None;
    for value in patient.records.iter_mut().flat_map(|r| r.values.iter_mut()) {
        let Value::FreeText(text) = value else { continue };
        *value = match mode {
            FreeText::Remove => {
                counts.removed += 1;
                Value::Null
            }
            FreeText::Deidentify => {
                let probes = probes.get_or_insert_with(|| pixl_text::Probes::new(&patient.basics.known));
                deidentify(text, probes, &patient.basics.known, counts).map_or(Value::Null, Value::Text)
            }
        };
    }
}

fn read_text(path: &Path, counts: &mut ReadCounts) -> Option<String> {
    let Ok(bytes) = std::fs::read(path) else {
        *counts.deviations.entry("unreadable_file").or_default() += 1;
        return None;
    };
    let (text, had_errors) = decode(&bytes);
    if had_errors {
        counts.decode_errors += 1;
    }
    Some(text)
}

/// Reads every patient of the storage at `root`.
pub fn read_storage(root: &Path) -> std::io::Result<(Vec<PatientRecords>, ReadCounts)> {
    let mut counts = ReadCounts::default();
    let dirs = storage::patients(root, &mut counts.deviations)?;
    let mut patients = Vec::new();
    for path in dirs {
        let dir = storage::read_patient(&path, &mut counts.deviations);
        patients.push(read_patient(&dir, &mut counts));
    }
    Ok((patients, counts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Basics, Record, Table};

    fn resolved(text: &str, known: pixl_text::Patient) -> (Value, FreeTextCounts) {
        let record = Record { table: Table::LabResults, values: vec![Value::FreeText(text.to_owned())] };
        let basics = Basics { known, ..Basics::default() };
        let mut patient = PatientRecords { pid: "1".to_owned(), basics, date_folders: Vec::new(), records: vec![record] };
        let mut counts = FreeTextCounts::default();
        resolve_free_text(&mut patient, FreeText::Deidentify, &mut counts);
        (patient.records.remove(0).values.remove(0), counts)
    }

    #[test]
    fn japanese_runs_are_masked_whole_digits_and_names_with_them() {
        let known = pixl_text::Patient { surnames: vec!["日本".to_owned()], first_names: vec!["太郎".to_owned()], ..Default::default() };
        let (value, counts) = resolved("日本太郎様は2022年1月10日に来院。Repeat test advised.", known);
        let Value::Text(out) = value else { panic!("{counts:?}") };
        assert!(out.starts_with('[') && out.ends_with("]。Repeat test advised."), "{out}");
        assert!(!out.chars().any(|c| c.is_numeric() || ('\u{3040}'..='\u{9FFF}').contains(&c) && c != '。'), "{out}");
        assert_eq!((counts.deidentified, counts.withheld), (1, 0));
    }

    #[test]
    fn the_patients_own_name_is_masked_where_no_word_list_would() {
        // Names that are also English words: only the probes know them here.
        let known = pixl_text::Patient { surnames: vec!["Bishop".to_owned()], first_names: vec!["Will".to_owned()], ..Default::default() };
        let (value, _) = resolved("Result discussed with Will Bishop today.", known);
        let Value::Text(out) = value else { panic!("withheld") };
        assert!(!out.contains("Will") && !out.contains("Bishop") && out.starts_with("Result discussed with "), "{out}");
    }
}
