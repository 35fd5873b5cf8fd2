//! Integration tests of the `pixl` command against the real Postgres and RabbitMQ.

mod anon_node;
mod anonymise;
mod bad_input;
mod check_env;
mod demo;
mod dicom_support;
mod populate;
mod support;
