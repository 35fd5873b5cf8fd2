//! hasher-api tests: the service in-process on port 0 (and as a process for the log
//! check), with the local secret file or the HTTPS Key Vault fake.

mod api;
mod client;
mod harness;
mod logs;
