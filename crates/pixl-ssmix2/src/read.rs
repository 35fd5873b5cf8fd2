//! Reading a whole storage into records, patient by patient (one thread for now; the
//! tables, pseudonyms, encryption and report of issue 16 build on this).

use std::collections::BTreeMap;
use std::path::Path;

use crate::decode::decode;
use crate::hl7::prepare;
use crate::records::{self, Basics, Record};
use crate::storage::{self, Deviations, Flag, PatientDir};

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
    for file in &dir.files {
        *counts.files.entry((file.name.data_type.clone(), flag_number(file.name.flag))).or_default() += 1;
        // Only current versions are read (superseded lab reports: not yet).
        if file.name.flag != Flag::Current {
            continue;
        }
        // A file named for another patient is not mixed into this one's records.
        if file.name.pid != dir.pid {
            *counts.deviations.entry("file_of_another_patient_skipped").or_default() += 1;
            continue;
        }
        let Ok(bytes) = std::fs::read(&file.path) else {
            *counts.deviations.entry("unreadable_file").or_default() += 1;
            continue;
        };
        let (text, had_errors) = decode(&bytes);
        if had_errors {
            counts.decode_errors += 1;
        }
        let Ok(prepared) = prepare(&text) else {
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
        if file.name.data_type == "ADT-00" {
            patient.basics = records::basics(&msg);
        } else {
            patient.records.extend(records::records(file, &msg, &mut counts.deviations));
        }
    }
    patient
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
