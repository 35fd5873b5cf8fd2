//! Integration tests of the `pixl` command against the real Postgres and RabbitMQ.

mod bad_input;
mod populate;
mod support;
