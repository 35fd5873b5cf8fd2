//! The storage tree `<root>/<pid[0:3]>/<pid[3:6]>/<pid>/<YYYYMMDD or ->/<data type>/<file>`
//! and its file names `<pid>_<date or ->_<data type>_<order no>_<event time>_<department
//! or ->_<condition flag>`. Real storages deviate from the guideline; each deviation is
//! counted by kind and never stops a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The condition flag, the last field of a file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flag {
    /// 0: the order was deleted.
    Deleted,
    /// 1: the current version.
    Current,
    /// 2: superseded by a later version (for OML-11, it still gives the first report time).
    Superseded,
}

/// A parsed file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    pub pid: String,
    /// `YYYYMMDD`, or `None` for `-` (data not tied to a day: ADT-00, PPR-01).
    pub date: Option<String>,
    pub data_type: String,
    pub order_number: String,
    pub event_time: String,
    pub department: Option<String>,
    pub flag: Flag,
}

/// Why a file name is not one of the guideline's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    FieldCount,
    Flag,
    Date,
    DataType,
}

impl FileName {
    /// Parses a name; an order number of another length than 15 digits is accepted (real
    /// storages have 13) and reported by [`FileName::order_number_is_standard`].
    pub fn parse(name: &str) -> Result<Self, NameProblem> {
        let fields: Vec<&str> = name.split('_').collect();
        let [pid, date, data_type, order_number, event_time, department, flag] = fields.as_slice() else {
            return Err(NameProblem::FieldCount);
        };
        let flag = match *flag {
            "0" => Flag::Deleted,
            "1" => Flag::Current,
            "2" => Flag::Superseded,
            _ => return Err(NameProblem::Flag),
        };
        let date = match *date {
            "-" => None,
            d if d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()) => Some(d.to_owned()),
            _ => return Err(NameProblem::Date),
        };
        if !is_data_type(data_type) {
            return Err(NameProblem::DataType);
        }
        let department = (*department != "-" && !department.is_empty()).then(|| (*department).to_owned());
        Ok(Self {
            pid: (*pid).to_owned(),
            date,
            data_type: (*data_type).to_owned(),
            order_number: (*order_number).to_owned(),
            event_time: (*event_time).to_owned(),
            department,
            flag,
        })
    }

    pub fn order_number_is_standard(&self) -> bool {
        self.order_number.len() == 15 && self.order_number.bytes().all(|b| b.is_ascii_digit())
    }
}

/// `ADT-00`, `OML-11`, ...: three capitals, a dash, two digits.
fn is_data_type(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 6 && bytes[..3].iter().all(u8::is_ascii_uppercase) && bytes[3] == b'-' && bytes[4..].iter().all(u8::is_ascii_digit)
}

/// One data file of a patient.
#[derive(Debug, Clone)]
pub struct DataFile {
    pub path: PathBuf,
    pub name: FileName,
    /// The date folder it is in (`None` for `-`).
    pub folder_date: Option<String>,
}

/// One patient's folder.
#[derive(Debug, Clone)]
pub struct PatientDir {
    pub pid: String,
    pub path: PathBuf,
    /// The `YYYYMMDD` folders, sorted.
    pub date_folders: Vec<String>,
    pub files: Vec<DataFile>,
}

/// Deviations from the guideline, by kind.
pub type Deviations = BTreeMap<&'static str, u64>;

/// An entry of a folder: its name, path, and whether it is a folder or a file (from the
/// directory listing itself: no `stat` per entry, except through a symbolic link).
struct Entry {
    name: String,
    path: PathBuf,
    dir: bool,
    file: bool,
}

fn names(dir: &Path) -> Vec<Entry> {
    let mut entries: Vec<Entry> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| {
                    let path = e.path();
                    let (dir, file) = match e.file_type() {
                        Ok(kind) if !kind.is_symlink() => (kind.is_dir(), kind.is_file()),
                        _ => (path.is_dir(), path.is_file()),
                    };
                    Entry { name: e.file_name().to_string_lossy().into_owned(), path, dir, file }
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

/// The patient folders under `root` (the three levels of the tree), in id order.
/// Anything else found on the way is counted, not fatal.
pub fn patients(root: &Path, deviations: &mut Deviations) -> std::io::Result<Vec<PathBuf>> {
    std::fs::read_dir(root)?;
    let mut found = Vec::new();
    for Entry { name: first, path: first_path, dir, .. } in names(root) {
        if !dir {
            *deviations.entry("junk_file").or_default() += 1;
            continue;
        }
        for Entry { name: second, path: second_path, dir, .. } in names(&first_path) {
            if !dir {
                *deviations.entry("junk_file").or_default() += 1;
                continue;
            }
            for Entry { name: pid, path, dir, .. } in names(&second_path) {
                if !dir {
                    *deviations.entry("junk_file").or_default() += 1;
                    continue;
                }
                if !pid.starts_with(&format!("{first}{second}")) || first.len() != 3 || second.len() != 3 {
                    *deviations.entry("patient_folder_misplaced").or_default() += 1;
                }
                found.push(path);
            }
        }
    }
    Ok(found)
}

/// Reads one patient's folder: date folders and data files. A file whose name is not the
/// guideline's is counted and skipped; one in a folder its name does not match (another
/// patient, day or data type) is counted and read with what its name says.
pub fn read_patient(path: &Path, deviations: &mut Deviations) -> PatientDir {
    let pid = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut patient = PatientDir { pid: pid.clone(), path: path.to_owned(), date_folders: Vec::new(), files: Vec::new() };
    for Entry { name: day, path: day_path, dir, .. } in names(path) {
        if !dir {
            *deviations.entry("junk_file").or_default() += 1;
            continue;
        }
        let folder_date = match day.as_str() {
            "-" => None,
            d if d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()) => Some(d.to_owned()),
            _ => {
                *deviations.entry("junk_folder").or_default() += 1;
                continue;
            }
        };
        if let Some(date) = &folder_date {
            patient.date_folders.push(date.clone());
        }
        for Entry { name: data_type, path: type_path, dir, .. } in names(&day_path) {
            if !dir {
                *deviations.entry("junk_file").or_default() += 1;
                continue;
            }
            for Entry { name: file, path: file_path, file: is_file, .. } in names(&type_path) {
                if !is_file {
                    *deviations.entry("junk_file").or_default() += 1;
                    continue;
                }
                let name = match FileName::parse(&file) {
                    Ok(name) => name,
                    Err(_) => {
                        *deviations.entry("junk_file").or_default() += 1;
                        continue;
                    }
                };
                if !name.order_number_is_standard() {
                    *deviations.entry("order_number_not_15_digits").or_default() += 1;
                }
                if name.pid != pid || name.date != folder_date || name.data_type != data_type {
                    *deviations.entry("file_in_wrong_folder").or_default() += 1;
                }
                patient.files.push(DataFile { path: file_path, name, folder_date: folder_date.clone() });
            }
        }
    }
    patient
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_the_guideline_with_real_deviations_accepted() {
        let name = FileName::parse("2024647717_20220110_OML-11_000071774642026_20220110123151000_102_1").unwrap();
        assert_eq!(name.date.as_deref(), Some("20220110"));
        assert_eq!((name.data_type.as_str(), name.department.as_deref(), name.flag), ("OML-11", Some("102"), Flag::Current));
        assert!(name.order_number_is_standard());
        let undated = FileName::parse("2024647717_-_PPR-01_000071774642021_20220110100500000_-_1").unwrap();
        assert_eq!((undated.date, undated.department), (None, None));
        let short = FileName::parse("1_20220110_OMP-01_1234567890123_20220110123151000_01_2").unwrap();
        assert_eq!(short.flag, Flag::Superseded);
        assert!(!short.order_number_is_standard());
        assert_eq!(FileName::parse("1_20220110_OMP-01_1_2_3_0").unwrap().flag, Flag::Deleted);
        assert_eq!(FileName::parse("readme.txt"), Err(NameProblem::FieldCount));
        assert_eq!(FileName::parse("1_20220110_OMP-01_1_2_3_9"), Err(NameProblem::Flag));
        assert_eq!(FileName::parse("1_2022011_OMP-01_1_2_3_1"), Err(NameProblem::Date));
        assert_eq!(FileName::parse("1_20220110_omp01_1_2_3_1"), Err(NameProblem::DataType));
    }
}
