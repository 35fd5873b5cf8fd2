//! imaging-api: takes studies off the `imaging-primary` (VNA) and `imaging-secondary`
//! (PACS) queues at a controlled rate, finds them in the archive (C-FIND) and has the
//! archive send them to anon-node (C-MOVE), then queues their de-identification.
//! [`scu`] speaks DICOM, [`rate`] and [`window`] decide when to work, [`service`] does
//! the work per study, [`api`] is the REST face (`/token-bucket-refresh-rate`).

pub mod api;
pub mod rate;
pub mod scu;
pub mod service;
pub mod window;

use std::time::Duration;

use scu::Archive;
use window::Window;

/// Configuration, from the environment (`.env.sample` documents each variable).
#[derive(Debug, Clone)]
pub struct ImagingConfig {
    /// `IMAGING_API_HOST`:`IMAGING_API_PORT` (default 127.0.0.1:8001).
    pub http_bind: std::net::SocketAddr,
    /// `IMAGING_API_AE_TITLE` (default `PIXL_QR`): the calling AE title of queries/moves.
    pub calling_ae_title: String,
    /// `PRIMARY_DICOM_SOURCE_AE_TITLE`/`_HOST`/`_PORT`: the VNA (required).
    pub primary: Archive,
    /// `SECONDARY_DICOM_SOURCE_AE_TITLE`/`_HOST`/`_PORT`: the PACS (optional).
    pub secondary: Option<Archive>,
    /// `SECONDARY_DICOM_SOURCE_WINDOW`: when the PACS may be queried.
    pub secondary_window: Window,
    /// `ANON_NODE_AE_TITLE` (default `PIXL_RAW`): the C-MOVE destination.
    pub move_destination: String,
    /// `ANON_NODE_URL` (e.g. `http://127.0.0.1:8002`): anon-node's HTTP address, asked
    /// what it already caches of a study so that only missing series are moved. Unset:
    /// whole studies are moved.
    pub anon_node_url: Option<String>,
    /// `IMAGING_API_RATE` (default 5): studies per second per queue at start.
    pub rate: f64,
    /// `IMAGING_API_MAX_ATTEMPTS` (default 5): tries per study before dead-lettering.
    pub max_attempts: i32,
    /// `PIXL_QUERY_TIMEOUT` seconds (default 10): association and C-FIND.
    pub query_timeout: Duration,
    /// `PIXL_DICOM_TRANSFER_TIMEOUT` seconds (default 600): a whole C-MOVE.
    pub transfer_timeout: Duration,
    /// `IMAGING_API_RETRY_PAUSE` seconds (default 2): first pause before a retry.
    pub retry_pause: Duration,
}

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ImagingConfig {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let invalid = |variable: &'static str, problem: String| ConfigError { variable, problem };
        let number = |variable: &'static str, default: f64| -> Result<f64, ConfigError> {
            match get(variable) {
                None => Ok(default),
                Some(raw) => raw.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| invalid(variable, format!("{raw:?} is not a number ≥ 0"))),
            }
        };
        let ae = |variable: &'static str, value: String| -> Result<String, ConfigError> {
            if value.is_empty() || value.len() > 16 || !value.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(variable, "an AE title is 1-16 printable characters".to_owned()));
            }
            Ok(value)
        };
        let archive = |name: &'static str, prefix: &'static str, ae_var: &'static str, host_var: &'static str, port_var: &'static str| -> Result<Option<Archive>, ConfigError> {
            let Some(ae_title) = get(ae_var) else { return Ok(None) };
            let port = get(port_var).ok_or_else(|| invalid(port_var, format!("set it with {prefix}_AE_TITLE")))?;
            Ok(Some(Archive {
                name,
                ae_title: ae(ae_var, ae_title)?,
                host: get(host_var).unwrap_or_else(|| "127.0.0.1".to_owned()),
                port: port.parse().map_err(|_| invalid(port_var, format!("{port:?} is not a port")))?,
            }))
        };
        let primary = archive("VNA", "PRIMARY_DICOM_SOURCE", "PRIMARY_DICOM_SOURCE_AE_TITLE", "PRIMARY_DICOM_SOURCE_HOST", "PRIMARY_DICOM_SOURCE_PORT")?
            .ok_or_else(|| invalid("PRIMARY_DICOM_SOURCE_AE_TITLE", "the VNA's AE title, host and port are required".to_owned()))?;
        let mut secondary = archive("PACS", "SECONDARY_DICOM_SOURCE", "SECONDARY_DICOM_SOURCE_AE_TITLE", "SECONDARY_DICOM_SOURCE_HOST", "SECONDARY_DICOM_SOURCE_PORT")?;
        // A "PACS" that is the VNA again would only repeat the same query.
        if secondary.as_ref().is_some_and(|s| s.ae_title == primary.ae_title && s.host == primary.host && s.port == primary.port) {
            secondary = None;
        }
        let host = get("IMAGING_API_HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
        let port = get("IMAGING_API_PORT").unwrap_or_else(|| "8001".to_owned());
        Ok(Self {
            http_bind: format!("{host}:{port}").parse().map_err(|_| invalid("IMAGING_API_PORT", format!("{host}:{port} is not an IP address and port")))?,
            calling_ae_title: ae("IMAGING_API_AE_TITLE", get("IMAGING_API_AE_TITLE").unwrap_or_else(|| "PIXL_QR".to_owned()))?,
            primary,
            secondary,
            secondary_window: Window::parse(&get("SECONDARY_DICOM_SOURCE_WINDOW").unwrap_or_else(|| Window::DEFAULT.to_owned()))
                .map_err(|problem| invalid("SECONDARY_DICOM_SOURCE_WINDOW", problem))?,
            anon_node_url: get("ANON_NODE_URL"),
            move_destination: ae("ANON_NODE_AE_TITLE", get("ANON_NODE_AE_TITLE").unwrap_or_else(|| "PIXL_RAW".to_owned()))?,
            rate: number("IMAGING_API_RATE", 5.0)?,
            max_attempts: number("IMAGING_API_MAX_ATTEMPTS", 5.0)?.max(1.0) as i32,
            query_timeout: Duration::from_secs_f64(number("PIXL_QUERY_TIMEOUT", 10.0)?.max(1.0)),
            transfer_timeout: Duration::from_secs_f64(number("PIXL_DICOM_TRANSFER_TIMEOUT", 600.0)?.max(1.0)),
            retry_pause: Duration::from_secs_f64(number("IMAGING_API_RETRY_PAUSE", 2.0)?),
        })
    }
}
