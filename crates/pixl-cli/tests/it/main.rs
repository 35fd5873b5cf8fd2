//! Integration tests of the `pixl` command against the real Postgres and RabbitMQ.

mod anonymise;
mod bad_input;
mod check_env;
mod cli_habits;
mod deid_text;
mod demo;
mod fhir;
mod fhir_export;
mod import_pixl_db;
mod populate;
mod report_parquet;
mod ssmix2;
mod support;
