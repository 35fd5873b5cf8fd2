//! The `pixl` command as a library, so that integration tests drive the same code
//! in-process. `main.rs` only parses arguments, loads configuration and calls in here.

pub mod anonymise;
pub mod bench;
pub mod bench_ehr;
pub mod check_env;
pub mod cohort;
pub mod control;
pub mod dc;
pub mod deid_text;
pub mod deid_text_eval;
pub mod demo;
pub mod demo_data;
pub mod demo_ehr;
pub mod export;
pub mod fhir;
pub mod fhir_export;
pub mod import_pixl_db;
pub mod populate;
pub mod reports;
pub mod secrets;
pub mod ssmix2;
