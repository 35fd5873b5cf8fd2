//! SS-MIX2 standardized storages (issue 16, in progress): the storage tree and its file
//! names, whole-file ISO-2022-JP decoding before any HL7 splitting, HL7 v2.5 access with
//! ssmixtools' text normalisation, SS-MIX2 timestamps, and the records of each data type.
//!
//! Built so far: reading. Not yet: tables on disk, pseudonyms, encryption, the analytics
//! report and `pixl ssmix2 extract` (see docs/ssmix2-design.md).

pub mod crypto;
pub mod decode;
pub mod extract;
pub mod hl7;
pub mod normalise;
pub mod read;
pub mod records;
pub mod storage;
pub mod synth;
pub mod time;
