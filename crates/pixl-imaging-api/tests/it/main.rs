//! imaging-api against real archives (Orthanc as the VNA, dcmqrscp as the PACS), with
//! anon-node and hasher-api running, on the real Postgres and RabbitMQ.

mod crash;
mod peers;
mod pipeline;
mod retrieval;
