//! The real archives of these tests (Orthanc as the VNA, dcmqrscp as the PACS) come from
//! the shared test support.

pub use pixl_core::testing::peers::{Peer, free_port};
