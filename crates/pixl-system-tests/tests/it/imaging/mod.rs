//! imaging-api against real archives (Orthanc as the VNA, dcmqrscp as the PACS), with
//! anon-node and hasher-api running.

mod backpressure;
mod crash;
mod restart;
pub mod peers;
pub mod pipeline;
pub mod retrieval;
