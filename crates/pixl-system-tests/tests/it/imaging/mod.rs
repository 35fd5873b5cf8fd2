//! imaging-api against real archives (Orthanc as the VNA, dcmqrscp as the PACS), with
//! anon-node and hasher-api running.

mod backpressure;
mod crash;
mod logs;
pub mod peers;
pub mod pipeline;
mod replicas;
mod restart;
pub mod retrieval;
