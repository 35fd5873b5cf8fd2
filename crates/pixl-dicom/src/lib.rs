//! Pure DICOM de-identification: PIXL's tag-operation schemes applied to in-memory DICOM
//! objects, and the series filters of a project. No I/O, no queue, no database: services
//! read and write files and networks, and give this crate the keyed pseudonyms it needs
//! (computed by the hasher-api) through [`deid::Pseudonyms`]. Also the DIMSE command codec
//! ([`dimse`]) that the DICOM nodes share: pure encoding, the sockets are theirs.

pub mod deid;
pub mod dimse;
pub mod filters;
pub mod scheme;
