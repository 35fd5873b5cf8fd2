//! FHIR for pixl: a focused FHIRPath engine, SQL on FHIR v2 views, FHIR
//! de-identification, streaming NDJSON → parquet conversion and a Bulk Data client.

pub mod convert;
pub mod deid;
pub mod fhirpath;
pub mod ndjson;
pub mod synth;
pub mod table;
pub mod view;
pub mod views;
