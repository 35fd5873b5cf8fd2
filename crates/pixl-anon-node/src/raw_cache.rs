//! The raw cache: instances as received, in the identifiable zone, as Part 10 files under
//! `<root>/<study instance uid>/<sop instance uid>.dcm`. Files are written to a temporary
//! name and renamed, so a reader never sees half an instance.
//!
//! The cache is bounded (`ANON_NODE_RAW_CACHE_MAX_SIZE_MB`): when a store takes it over
//! the bound, the studies written least recently are evicted, except those in progress:
//! pinned by an association still receiving them or by a de-identification reading them.
//! If everything left is in progress the cache stays over its bound (and says so) rather
//! than lose an instance.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use std::io::{Read, Write};

use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{OpenFileOptions, file::ReadPreamble};

/// Where an instance was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub path: PathBuf,
    /// Original StudyInstanceUID (identifiable).
    pub study_uid: String,
}

/// Why an instance was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data set cannot be read: the sender gets "cannot understand".
    #[error("unreadable data set: {0}")]
    Unreadable(String),
    /// The cache cannot be written: the sender gets "out of resources".
    #[error("cannot write to the raw cache: {0}")]
    Io(#[from] std::io::Error),
}

/// The cache directory and its size bookkeeping. Clones share one index.
#[derive(Debug, Clone)]
pub struct RawCache {
    root: PathBuf,
    max_bytes: u64,
    index: Arc<Mutex<Index>>,
}

#[derive(Debug, Default)]
struct Index {
    studies: HashMap<String, StudyEntry>,
    total: u64,
    over_bound_warned: bool,
}

#[derive(Debug)]
struct StudyEntry {
    bytes: u64,
    last_write: SystemTime,
    pins: usize,
}

/// Keeps a study from eviction while held.
#[derive(Debug)]
pub struct Pin {
    index: Arc<Mutex<Index>>,
    study_uid: String,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut index = self.index.lock().expect("raw cache index");
        if let Some(entry) = index.studies.get_mut(&self.study_uid) {
            entry.pins = entry.pins.saturating_sub(1);
        }
    }
}

impl RawCache {
    /// Opens the cache at `root` (created if missing), counting what is already there.
    /// `max_bytes` 0 means unbounded.
    pub fn open(root: impl Into<PathBuf>, max_bytes: u64) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        let mut index = Index::default();
        for entry in std::fs::read_dir(&root)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let mut bytes = 0;
            let mut last_write = SystemTime::UNIX_EPOCH;
            for file in std::fs::read_dir(entry.path())? {
                let file = file?;
                let name = file.file_name();
                if name.to_string_lossy().starts_with('.') {
                    // A partial write from a crash: the sender got no success for it.
                    let _ = std::fs::remove_file(file.path());
                    continue;
                }
                let metadata = file.metadata()?;
                bytes += metadata.len();
                last_write = last_write.max(metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH));
            }
            index.total += bytes;
            index.studies.insert(entry.file_name().to_string_lossy().into_owned(), StudyEntry { bytes, last_write, pins: 0 });
        }
        Ok(Self { root, max_bytes, index: Arc::new(Mutex::new(index)) })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Bytes held.
    pub fn size(&self) -> u64 {
        self.index.lock().expect("raw cache index").total
    }

    /// Keeps `study_uid` from eviction until the pin is dropped.
    pub fn pin(&self, study_uid: &str) -> Pin {
        let mut index = self.index.lock().expect("raw cache index");
        let entry = index.studies.entry(study_uid.to_owned()).or_insert(StudyEntry { bytes: 0, last_write: SystemTime::now(), pins: 0 });
        entry.pins += 1;
        Pin { index: Arc::clone(&self.index), study_uid: study_uid.to_owned() }
    }

    /// Records a write and evicts as needed.
    fn account(&self, study_uid: &str, added: u64, replaced: u64) {
        let mut evict = Vec::new();
        {
            let mut index = self.index.lock().expect("raw cache index");
            let entry = index.studies.entry(study_uid.to_owned()).or_insert(StudyEntry { bytes: 0, last_write: SystemTime::now(), pins: 0 });
            entry.bytes = entry.bytes + added - replaced.min(entry.bytes);
            entry.last_write = SystemTime::now();
            index.total = index.total + added - replaced.min(index.total);
            if self.max_bytes == 0 || index.total <= self.max_bytes {
                index.over_bound_warned = false;
                return;
            }
            let mut candidates: Vec<(SystemTime, String, u64)> =
                index.studies.iter().filter(|(uid, e)| e.pins == 0 && uid.as_str() != study_uid).map(|(uid, e)| (e.last_write, uid.clone(), e.bytes)).collect();
            candidates.sort();
            let mut total = index.total;
            for (_, uid, bytes) in candidates {
                if total <= self.max_bytes {
                    break;
                }
                total -= bytes.min(total);
                index.studies.remove(&uid);
                evict.push(uid);
            }
            index.total = total;
            if total > self.max_bytes && !index.over_bound_warned {
                index.over_bound_warned = true;
                tracing::warn!(bytes = total, bound = self.max_bytes, "raw cache over its bound: every remaining study is in progress");
            }
        }
        for uid in evict {
            match std::fs::remove_dir_all(self.root.join(&uid)) {
                Ok(()) => {
                    metrics::counter!("pixl_raw_cache_evicted_studies_total").increment(1);
                    tracing::info!("evicted a study from the raw cache");
                }
                Err(error) => tracing::error!(%error, "cannot evict a study from the raw cache"),
            }
        }
    }

    /// Stores a data set received in `transfer_syntax` as a Part 10 file, byte for byte,
    /// under its study. Only the elements before the pixel data are parsed (to find the
    /// Study and SOP Instance UIDs); the data set is written as received.
    pub fn store(&self, sop_class_uid: &str, sop_instance_uid: &str, transfer_syntax: &str, dataset: &[u8]) -> Result<Stored, StoreError> {
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax(transfer_syntax)
            .media_storage_sop_class_uid(sop_class_uid)
            .media_storage_sop_instance_uid(sop_instance_uid)
            .build()
            .map_err(|e| StoreError::Unreadable(e.to_string()))?;
        let mut head = Vec::with_capacity(128 + 512);
        head.extend_from_slice(&[0u8; 128]);
        head.extend_from_slice(b"DICM");
        meta.write(&mut head).map_err(|e| StoreError::Unreadable(e.to_string()))?;

        let header = OpenFileOptions::new()
            .read_preamble(ReadPreamble::Never)
            .read_until(tags::PIXEL_DATA)
            .from_reader(std::io::Cursor::new(&head[128..]).chain(dataset))
            .map_err(|e| StoreError::Unreadable(e.to_string()))?;
        let text = |tag| header.element_opt(tag).ok().flatten().and_then(|e| e.to_str().ok().map(|s| s.trim_end_matches(['\0', ' ']).to_owned())).unwrap_or_default();
        let study_uid = text(tags::STUDY_INSTANCE_UID);
        let sop_uid = text(tags::SOP_INSTANCE_UID);
        let safe = |uid: &str| !uid.is_empty() && uid.len() <= 64 && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if !safe(&study_uid) || sop_uid != sop_instance_uid || !safe(&sop_uid) {
            return Err(StoreError::Unreadable("the data set lacks valid Study or SOP Instance UIDs matching the command".to_owned()));
        }

        let dir = self.root.join(&study_uid);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{sop_uid}.dcm"));
        let partial = dir.join(format!(".{sop_uid}.partial"));
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(&head)?;
        file.write_all(dataset)?;
        drop(file);
        let replaced = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        std::fs::rename(&partial, &path)?;
        self.account(&study_uid, (head.len() + dataset.len()) as u64, replaced);
        Ok(Stored { path, study_uid })
    }

    /// Instances cached per series of a study (reads each instance's header).
    pub fn series_counts(&self, study_uid: &str) -> std::io::Result<std::collections::BTreeMap<String, usize>> {
        let mut counts = std::collections::BTreeMap::new();
        for path in self.instances(study_uid)? {
            let Ok(header) = OpenFileOptions::new().read_until(tags::PIXEL_DATA).open_file(&path) else { continue };
            if let Some(series) = header.element_opt(tags::SERIES_INSTANCE_UID).ok().flatten().and_then(|e| e.to_str().ok().map(|s| s.trim_end_matches(['\0', ' ']).to_owned())) {
                *counts.entry(series).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// Instances cached for a study.
    pub fn instances(&self, study_uid: &str) -> std::io::Result<Vec<PathBuf>> {
        let dir = self.root.join(study_uid);
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
            .collect();
        files.sort();
        Ok(files)
    }
}
