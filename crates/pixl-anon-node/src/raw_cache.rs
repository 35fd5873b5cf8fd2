//! The raw cache: instances as received, in the identifiable zone, as Part 10 files under
//! `<root>/<study instance uid>/<sop instance uid>.dcm`. Files are written to a temporary
//! name and renamed, so a reader never sees half an instance.

use std::path::{Path, PathBuf};

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

/// The cache directory.
#[derive(Debug, Clone)]
pub struct RawCache {
    root: PathBuf,
}

impl RawCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
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
        std::fs::rename(&partial, &path)?;
        Ok(Stored { path, study_uid })
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
