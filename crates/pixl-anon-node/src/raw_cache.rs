//! The raw cache: instances as received, in the identifiable zone, as Part 10 files under
//! `<root>/<study instance uid>/<sop instance uid>.dcm`.
//!
//! - **Acknowledged means on disk**: an instance is written to a temporary name, fsynced,
//!   renamed and its directory fsynced before [`RawCache::store`] returns (and so before
//!   the SCP answers C-STORE success).
//! - **Work in progress is never evicted**: a study is *in progress* from its first
//!   instance until anon-node has de-identified it ([`RawCache::release`]). Released
//!   studies are deleted at once, or (with a retention) kept, marked `.deidentified` on
//!   disk, and are the only ones eviction takes, oldest release first.
//! - **Backpressure, not loss**: when the cache is over its bound
//!   (`ANON_NODE_RAW_CACHE_MAX_SIZE_MB`) and nothing can be evicted, [`RawCache::accepting`]
//!   is false: the SCP refuses instances of studies it is not already receiving ("out of
//!   resources"; the rest of a study in progress is still taken, so it can complete and be
//!   de-identified), and imaging-api, which asks before it moves a study, waits.
//!
//! A restart recounts the disk, removes partial writes and knows released studies by
//! their marker.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{OpenFileOptions, file::ReadPreamble};
use pixl_core::ids::{SopInstanceUid, StudyUid};

/// The marker of a released (de-identified) study kept for its retention.
const RELEASED_MARKER: &str = ".deidentified";

/// Where an instance was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub path: PathBuf,
    /// Original StudyInstanceUID (identifiable).
    pub study_uid: StudyUid,
}

/// Why an instance was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data set cannot be read: the sender gets "cannot understand".
    #[error("unreadable data set: {0}")]
    Unreadable(&'static str),
    /// The cache is full of studies waiting for de-identification: "out of resources".
    #[error("the raw cache is full of studies waiting for de-identification")]
    Full,
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
    /// By original StudyInstanceUID (the directory name).
    studies: HashMap<String, StudyEntry>,
    total: u64,
    full_warned: bool,
    /// When the index was last rebuilt from the disk.
    counted_at: Option<std::time::Instant>,
}

#[derive(Debug)]
struct StudyEntry {
    bytes: u64,
    /// When de-identification released it; `None` while in progress.
    released: Option<SystemTime>,
}

/// Sizes for `pixl status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct CacheUse {
    pub bytes: u64,
    pub max_bytes: u64,
    pub studies: usize,
    /// Studies received and not yet de-identified.
    pub in_progress: usize,
    pub accepting: bool,
}

impl RawCache {
    /// Opens the cache at `root` (created if missing), counting what is already there.
    /// `max_bytes` 0 means unbounded.
    pub fn open(root: impl Into<PathBuf>, max_bytes: u64) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        let index = scan(&root)?;
        Ok(Self { root, max_bytes, index: Arc::new(Mutex::new(index)) })
    }

    /// When full, recounts the disk (at most every five seconds): another process on this
    /// host sharing the cache (a consumer replica) may have deleted studies it
    /// de-identified.
    fn recount_if_full(&self) {
        let stale = {
            let index = self.lock();
            !self.has_room(&index) && index.counted_at.is_none_or(|at| at.elapsed() > std::time::Duration::from_secs(5))
        };
        if stale && let Ok(fresh) = scan(&self.root) {
            let mut index = self.lock();
            let warned = index.full_warned;
            *index = fresh;
            index.full_warned = warned;
        }
    }
}

/// The index of what `root` holds, removing partial writes of a crash.
fn scan(root: &Path) -> std::io::Result<Index> {
    {
        let mut index = Index { counted_at: Some(std::time::Instant::now()), ..Index::default() };
        for entry in std::fs::read_dir(root)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let mut bytes = 0;
            let mut released = None;
            for file in std::fs::read_dir(entry.path())? {
                let file = file?;
                let name = file.file_name();
                let name = name.to_string_lossy();
                if name == RELEASED_MARKER {
                    released = Some(file.metadata()?.modified().unwrap_or(SystemTime::now()));
                } else if name.starts_with('.') {
                    // A partial write from a crash: the sender got no success for it.
                    let _ = std::fs::remove_file(file.path());
                } else {
                    bytes += file.metadata()?.len();
                }
            }
            index.total += bytes;
            index.studies.insert(entry.file_name().to_string_lossy().into_owned(), StudyEntry { bytes, released });
        }
        Ok(index)
    }
}

impl RawCache {
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().expect("raw cache index")
    }

    /// Bytes held.
    pub fn size(&self) -> u64 {
        self.lock().total
    }

    /// What the cache holds, for `pixl status`.
    pub fn usage(&self) -> CacheUse {
        let index = self.lock();
        CacheUse {
            bytes: index.total,
            max_bytes: self.max_bytes,
            studies: index.studies.len(),
            in_progress: index.studies.values().filter(|e| e.released.is_none()).count(),
            accepting: self.has_room(&index),
        }
    }

    fn has_room(&self, index: &Index) -> bool {
        self.max_bytes == 0 || index.total < self.max_bytes || index.studies.values().any(|e| e.released.is_some())
    }

    /// Whether new instances can be taken: below the bound, or something released that
    /// eviction can take.
    pub fn accepting(&self) -> bool {
        self.recount_if_full();
        let index = self.lock();
        self.has_room(&index)
    }

    /// Records a write, and evicts released studies while over the bound.
    fn account(&self, study_uid: &str, added: u64, replaced: u64) {
        let mut evict = Vec::new();
        {
            let mut index = self.lock();
            let entry = index.studies.entry(study_uid.to_owned()).or_insert(StudyEntry { bytes: 0, released: None });
            entry.bytes = entry.bytes + added - replaced.min(entry.bytes);
            index.total = index.total + added - replaced.min(index.total);
            if self.max_bytes == 0 || index.total <= self.max_bytes {
                index.full_warned = false;
                return;
            }
            let mut candidates: Vec<(SystemTime, String, u64)> =
                index.studies.iter().filter_map(|(uid, e)| e.released.map(|at| (at, uid.clone(), e.bytes))).collect();
            candidates.sort();
            for (_, uid, bytes) in candidates {
                if index.total <= self.max_bytes {
                    break;
                }
                index.total -= bytes.min(index.total);
                index.studies.remove(&uid);
                evict.push(uid);
            }
            if index.total > self.max_bytes && !index.full_warned {
                index.full_warned = true;
                tracing::warn!(
                    bytes = index.total,
                    bound = self.max_bytes,
                    "raw cache full of studies waiting for de-identification: refusing new instances until some are done"
                );
            }
        }
        for uid in evict {
            self.remove_dir(&uid, "evicted a de-identified study from the raw cache");
        }
    }

    fn remove_dir(&self, uid: &str, done: &'static str) {
        match std::fs::remove_dir_all(self.root.join(uid)) {
            Ok(()) => {
                metrics::counter!("pixl_raw_cache_removed_studies_total").increment(1);
                tracing::info!("{done}");
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::error!(%error, "cannot remove a study from the raw cache"),
        }
    }

    /// Stores a data set received in `transfer_syntax` as a Part 10 file, byte for byte,
    /// under its study, durably (see the module's documentation). Only the elements before
    /// the pixel data are parsed (to find the Study and SOP Instance UIDs).
    pub fn store(&self, sop_class_uid: &str, sop_instance_uid: &SopInstanceUid, transfer_syntax: &str, dataset: &[u8]) -> Result<Stored, StoreError> {
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax(transfer_syntax)
            .media_storage_sop_class_uid(sop_class_uid)
            .media_storage_sop_instance_uid(sop_instance_uid.expose())
            .build()
            .map_err(|_| StoreError::Unreadable("the command's SOP class, instance or transfer syntax is missing"))?;
        let mut head = Vec::with_capacity(128 + 512);
        head.extend_from_slice(&[0u8; 128]);
        head.extend_from_slice(b"DICM");
        meta.write(&mut head).map_err(|_| StoreError::Unreadable("cannot write a file meta group"))?;

        // Declared lengths must fit the bytes received before any parser sees them.
        pixl_dicom::lengths::check(dataset, pixl_dicom::lengths::Encoding::of(transfer_syntax))
            .map_err(|_| StoreError::Unreadable("an element claims more bytes than the data set holds"))?;
        let header = OpenFileOptions::new()
            .read_preamble(ReadPreamble::Never)
            .read_until(tags::PIXEL_DATA)
            .from_reader(std::io::Cursor::new(&head[128..]).chain(dataset))
            .map_err(|_| StoreError::Unreadable("the data set cannot be parsed"))?;
        let text = |tag| pixl_dicom::element_text(&header, tag).unwrap_or_default();
        let (Ok(study_uid), Ok(sop_uid)) = (StudyUid::parse(&text(tags::STUDY_INSTANCE_UID)), SopInstanceUid::parse(&text(tags::SOP_INSTANCE_UID))) else {
            return Err(StoreError::Unreadable("the data set lacks valid Study or SOP Instance UIDs"));
        };
        if sop_uid != *sop_instance_uid {
            return Err(StoreError::Unreadable("the data set's SOP Instance UID differs from the command's"));
        }
        // A full cache still takes the rest of a study it is receiving (so that study can
        // be completed and de-identified), never a new one.
        self.recount_if_full();
        {
            let index = self.lock();
            let receiving = index.studies.get(study_uid.expose()).is_some_and(|e| e.released.is_none());
            if !receiving && !self.has_room(&index) {
                return Err(StoreError::Full);
            }
        }

        let dir = self.root.join(study_uid.expose());
        let new_dir = !dir.is_dir();
        std::fs::create_dir_all(&dir)?;
        if new_dir {
            sync_dir(&self.root)?;
        }
        let path = dir.join(format!("{}.dcm", sop_uid.expose()));
        let partial = dir.join(format!(".{}.partial", sop_uid.expose()));
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(&head)?;
        file.write_all(dataset)?;
        file.sync_all()?;
        drop(file);
        let replaced = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        std::fs::rename(&partial, &path)?;
        // A study that was released and is received again (another project asked for it)
        // is in progress again.
        match std::fs::remove_file(dir.join(RELEASED_MARKER)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error.into()),
            _ => {}
        }
        sync_dir(&dir)?;
        if let Some(entry) = self.lock().studies.get_mut(study_uid.expose()) {
            entry.released = None;
        }
        self.account(study_uid.expose(), (head.len() + dataset.len()) as u64, replaced);
        Ok(Stored { path, study_uid })
    }

    /// The study has been de-identified: with `retention` zero its instances are deleted
    /// now; otherwise they are marked released, kept that long, and evictable meanwhile.
    pub fn release(&self, study_uid: &StudyUid, retention: Duration) -> std::io::Result<()> {
        let uid = study_uid.expose();
        if retention.is_zero() {
            {
                let mut index = self.lock();
                if let Some(entry) = index.studies.remove(uid) {
                    index.total -= entry.bytes.min(index.total);
                }
            }
            self.remove_dir(uid, "deleted the raw instances of a de-identified study");
            return Ok(());
        }
        let dir = self.root.join(uid);
        if !dir.is_dir() {
            return Ok(());
        }
        std::fs::write(dir.join(RELEASED_MARKER), b"")?;
        if let Some(entry) = self.lock().studies.get_mut(uid) {
            entry.released = Some(SystemTime::now());
        }
        Ok(())
    }

    /// Deletes released studies older than `retention`; returns how many.
    pub fn sweep(&self, retention: Duration) -> usize {
        let now = SystemTime::now();
        let expired: Vec<String> = {
            let mut index = self.lock();
            let expired: Vec<String> = index
                .studies
                .iter()
                .filter(|(_, e)| e.released.is_some_and(|at| now.duration_since(at).unwrap_or_default() >= retention))
                .map(|(uid, _)| uid.clone())
                .collect();
            for uid in &expired {
                if let Some(entry) = index.studies.remove(uid) {
                    index.total -= entry.bytes.min(index.total);
                }
            }
            expired
        };
        for uid in &expired {
            self.remove_dir(uid, "deleted the raw instances of a de-identified study (retention passed)");
        }
        expired.len()
    }

    /// Instances cached per series of a study (reads each instance's header).
    pub fn series_counts(&self, study_uid: &StudyUid) -> std::io::Result<std::collections::BTreeMap<String, usize>> {
        let mut counts = std::collections::BTreeMap::new();
        for path in self.instances(study_uid)? {
            let Ok(header) = OpenFileOptions::new().read_until(tags::PIXEL_DATA).open_file(&path) else { continue };
            if let Some(series) = pixl_dicom::element_text(&header, tags::SERIES_INSTANCE_UID) {
                *counts.entry(series).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// Instances cached for a study.
    pub fn instances(&self, study_uid: &StudyUid) -> std::io::Result<Vec<PathBuf>> {
        let dir = self.root.join(study_uid.expose());
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "dcm")).collect();
        files.sort();
        Ok(files)
    }
}

/// Makes a directory's entries (a rename, a new file) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
