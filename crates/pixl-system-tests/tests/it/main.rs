//! The pixl services together, on the real Postgres and RabbitMQ and real peers on
//! loopback (Orthanc, dcmqrscp, dcmtk, an FTPS server, Orthanc's DICOMweb plugin, a fake of
//! XNAT's REST API since XNAT cannot run here). Tests of one service alone live in its
//! crate; these need several, so they live apart from every service crate.

mod anon_node;
mod compose;
mod ehr;
mod export;
pub mod harness;
mod imaging;
mod lifetime;
mod openapi;
