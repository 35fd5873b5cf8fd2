//! export-api against real peers on loopback: an FTPS server (pyftpdlib), Orthanc's
//! DICOMweb plugin, a fake of XNAT's REST API (XNAT cannot run here), the real Postgres
//! and RabbitMQ, and the whole imaging pipeline end to end.

mod fake_xnat;
mod ftps;
mod support;
