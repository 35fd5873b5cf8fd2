//! export-api against real peers on loopback: an FTPS server (pyftpdlib), Orthanc's
//! DICOMweb plugin, a fake of XNAT's REST API (XNAT cannot run here), and the whole
//! imaging pipeline end to end.

mod api;
mod crash;
mod dicomweb;
pub mod fake_tre;
pub mod fake_xnat;
mod ftps;
mod isolation;
mod linker;
mod logs;
mod pipeline;
pub mod support;
mod tre;
mod xnat;
