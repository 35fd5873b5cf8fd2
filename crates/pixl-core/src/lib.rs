//! Shared foundation of every pixl binary: configuration, identifier newtypes, the project
//! config model, the queue topology and its wire messages, the database and its outbox,
//! telemetry, HTTP health/metrics plumbing and graceful shutdown.
//!
//! Nothing in here knows about DICOM networking or de-identification; those live in the
//! service crates. The only serializable wire types of the system are in [`messages`].

pub mod config;
pub mod consumer;
pub mod db;
pub mod export_tree;
pub mod hasher_client;
pub mod hashing;
pub mod http;
pub mod http_client;
pub mod ids;
pub mod messages;
pub mod outbox;
pub mod pixl_env;
pub mod project_config;
pub mod queues;
pub mod rest;
pub mod retry;
pub mod review;
pub mod shutdown;
pub mod state;
pub mod telemetry;

#[cfg(feature = "test-support")]
pub mod testing;
