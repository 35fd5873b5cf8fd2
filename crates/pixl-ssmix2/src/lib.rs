//! SS-MIX2 standardized storages (issue 16): the storage tree and its file names,
//! whole-file ISO-2022-JP decoding before any HL7 splitting, HL7 v2.5 access with
//! ssmixtools' text normalisation, SS-MIX2 timestamps, the records of each data type, free
//! text through pixl-text, the tables with pseudonymous ids (`extract`), ssmixtools'
//! encrypted file format (`crypto`) and a generator of storages (`synth`). Design notes:
//! `docs/ssmix2-design.md`.

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
