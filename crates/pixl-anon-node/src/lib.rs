//! anon-node: the DICOM node that is the archive's C-MOVE destination. This first part is
//! the storage SCP and the raw cache; the de-identification consumer and the HTTP archive
//! endpoint build on it.

pub mod dimse;
pub mod raw_cache;
pub mod scp;
