//! Integration tests of the `pixl` command against the real Postgres and RabbitMQ.

mod anonymise;
mod bad_input;
mod check_env;
mod demo;
mod populate;
mod support;
