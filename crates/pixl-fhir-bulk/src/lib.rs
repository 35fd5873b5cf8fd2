//! FHIR Bulk Data `$export` (Bulk Data Access IG STU3; STU2 servers work as a subset) with
//! SMART Backend Services authorisation: discovery, RS384/ES384 client assertions, a
//! cached token renewed before it expires, kick-off (system, Patient, Group; GET or POST),
//! polling that honours `Retry-After`, partial and paged manifests, checked parallel
//! downloads (gzip), and resume from a state file.
//!
//! No network module of pixl-fhir: this crate fetches NDJSON; `pixl fhir convert` turns it
//! into tables. `testing` (feature `test-support`) is a strict Bulk Data server for tests.

pub mod export;
pub mod http;
pub mod jose;
pub mod manifest;
pub mod smart;

#[cfg(feature = "test-support")]
pub mod testing;

pub use export::{BulkClient, Event, ExportError, ExportOptions, ExportParams, ExportSummary, Level};
pub use jose::{Alg, SigningKey};
pub use smart::{TokenSource, discover};
