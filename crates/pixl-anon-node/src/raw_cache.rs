//! The raw cache: instances as received, in the identifiable zone, as Part 10 files under
//! `<root>/<study instance uid>/<sop instance uid>.dcm`. Files are written to a temporary
//! name and renamed, so a reader never sees half an instance.

use std::path::{Path, PathBuf};

use dicom_object::meta::FileMetaTableBuilder;

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

    /// Stores a data set received in `transfer_syntax` as a Part 10 file, byte for byte.
    pub fn store(&self, study_uid: &str, sop_class_uid: &str, sop_instance_uid: &str, transfer_syntax: &str, dataset: &[u8]) -> std::io::Result<PathBuf> {
        let safe = |uid: &str| !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if !safe(study_uid) || !safe(sop_instance_uid) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the instance lacks valid Study or SOP Instance UIDs"));
        }
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax(transfer_syntax)
            .media_storage_sop_class_uid(sop_class_uid)
            .media_storage_sop_instance_uid(sop_instance_uid)
            .build()
            .map_err(std::io::Error::other)?;
        let dir = self.root.join(study_uid);
        std::fs::create_dir_all(&dir)?;
        let target = dir.join(format!("{sop_instance_uid}.dcm"));
        let partial = dir.join(format!(".{sop_instance_uid}.partial"));
        let mut bytes = Vec::with_capacity(dataset.len() + 512);
        bytes.extend_from_slice(&[0u8; 128]);
        bytes.extend_from_slice(b"DICM");
        meta.write(&mut bytes).map_err(std::io::Error::other)?;
        bytes.extend_from_slice(dataset);
        std::fs::write(&partial, &bytes)?;
        std::fs::rename(&partial, &target)?;
        Ok(target)
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
