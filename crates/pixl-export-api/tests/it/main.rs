//! export-api against real peers on loopback: an FTPS server (pyftpdlib), Orthanc's
//! DICOMweb plugin, a fake of XNAT's REST API (XNAT cannot run here), the real Postgres
//! and RabbitMQ, and the whole imaging pipeline end to end.

mod api;
mod crash;
mod dicomweb;
mod fake_xnat;
mod invariants;
mod logs;
mod pipeline;
mod ftps;
mod support;
mod xnat;
