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
    /// `ANON_NODE_API_TOKEN`: anon-node's bearer token.
    pub anon_node_token: Option<secrecy::SecretString>,
    /// `IMAGING_API_RATE` (default 5): studies per second per queue at start.
    pub rate: f64,
    /// `IMAGING_API_MAX_ATTEMPTS` (default 5): tries per study before dead-lettering.
    pub max_attempts: u32,
    /// `PIXL_QUERY_TIMEOUT` seconds (default 10): association and C-FIND.
    pub query_timeout: Duration,
    /// `PIXL_DICOM_TRANSFER_TIMEOUT` seconds (default 600): a whole C-MOVE.
    pub transfer_timeout: Duration,
    /// `IMAGING_API_RETRY_PAUSE` seconds (default 2): first pause before a retry.
    pub retry_pause: Duration,
}

pub use pixl_core::config::ConfigError;
use pixl_core::config::Env;

impl ImagingConfig {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let invalid = |variable: &'static str, problem: String| ConfigError::Invalid { variable, problem };
        let archive = |name_var: &'static str,
                       default_name: &str,
                       ae_var: &'static str,
                       host_var: &'static str,
                       port_var: &'static str|
         -> Result<Option<Archive>, ConfigError> {
            if env.get(ae_var).is_none() {
                return Ok(None);
            }
            if env.get(port_var).is_none() {
                return Err(invalid(port_var, format!("set it with {ae_var}")));
            }
            Ok(Some(Archive {
                name: env.text(name_var, default_name),
                ae_title: env.ae_title(ae_var, "")?,
                host: env.text(host_var, "127.0.0.1"),
                port: env.number(port_var, 104, 1, u16::MAX)?,
            }))
        };
        let primary = archive("PRIMARY_DICOM_SOURCE_NAME", "VNA", "PRIMARY_DICOM_SOURCE_AE_TITLE", "PRIMARY_DICOM_SOURCE_HOST", "PRIMARY_DICOM_SOURCE_PORT")?
            .ok_or_else(|| invalid("PRIMARY_DICOM_SOURCE_AE_TITLE", "the VNA's AE title, host and port are required".to_owned()))?;
        let mut secondary =
            archive("SECONDARY_DICOM_SOURCE_NAME", "PACS", "SECONDARY_DICOM_SOURCE_AE_TITLE", "SECONDARY_DICOM_SOURCE_HOST", "SECONDARY_DICOM_SOURCE_PORT")?;
        // A "PACS" that is the VNA again would only repeat the same query.
        if secondary.as_ref().is_some_and(|s| s.ae_title == primary.ae_title && s.host == primary.host && s.port == primary.port) {
            secondary = None;
        }
        Ok(Self {
            http_bind: env.socket("IMAGING_API_HOST", "IMAGING_API_PORT", "127.0.0.1", 8001)?,
            calling_ae_title: env.ae_title("IMAGING_API_AE_TITLE", "PIXL_QR")?,
            primary,
            secondary,
            secondary_window: Window::parse(&env.text("SECONDARY_DICOM_SOURCE_WINDOW", Window::DEFAULT))
                .map_err(|problem| invalid("SECONDARY_DICOM_SOURCE_WINDOW", problem))?,
            anon_node_url: env.get("ANON_NODE_URL").map(|_| env.url("ANON_NODE_URL", "")).transpose()?,
            anon_node_token: env.get("ANON_NODE_API_TOKEN").map(secrecy::SecretString::from),
            move_destination: env.ae_title("ANON_NODE_AE_TITLE", "PIXL_RAW")?,
            rate: env.number("IMAGING_API_RATE", 5.0, 0.0, 10_000.0)?,
            max_attempts: env.number("IMAGING_API_MAX_ATTEMPTS", 5, 1, 1000)?,
            query_timeout: env.seconds("PIXL_QUERY_TIMEOUT", 10.0, 86_400.0)?.max(Duration::from_secs(1)),
            transfer_timeout: env.seconds("PIXL_DICOM_TRANSFER_TIMEOUT", 600.0, 86_400.0)?.max(Duration::from_secs(1)),
            retry_pause: env.seconds("IMAGING_API_RETRY_PAUSE", 2.0, 3600.0)?,
        })
    }
}
