//! One place that sets up logging for every binary.
//!
//! Logs go to stderr, as text or (with `PIXL_LOG_FORMAT=json`) one JSON object per line;
//! `RUST_LOG` filters them (default `info`). Handlers use `#[instrument(skip_all, ...)]`
//! and name only database keys and project slugs, so identifiers stay out of logs.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// Reads `PIXL_LOG_FORMAT` (`text` or `json`; default text).
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        match std::env::var("PIXL_LOG_FORMAT").unwrap_or_default().trim() {
            "" | "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(crate::config::ConfigError::Invalid { variable: "PIXL_LOG_FORMAT", problem: format!("{other:?} is neither \"text\" nor \"json\"") }),
        }
    }
}

/// Installs the global subscriber with `default_filter` unless `RUST_LOG` (or PIXL's
/// `LOG_LEVEL`) is set; PIXL's `DEBUG=true` makes the default `debug`. Call once, first
/// thing in `main`. Services use [`SERVICE_FILTER`]; the CLI is quieter.
pub fn init(format: LogFormat, default_filter: &str) {
    let debug = crate::config::Env::new(crate::pixl_env::process_lookup).flag("DEBUG", false).unwrap_or(false);
    let default_filter = if debug { DEBUG_FILTER } else { default_filter };
    let filter = crate::pixl_env::process_lookup("RUST_LOG")
        .and_then(|directives| EnvFilter::try_new(directives.to_ascii_lowercase()).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    // Added last, so they win over whatever RUST_LOG says about these targets.
    let filter = CAPPED_TARGETS.iter().fold(filter, |filter, directive| filter.add_directive(directive.parse().expect("a valid directive")));
    let registry = tracing_subscriber::registry().with(filter);
    // A second call (for example from a test harness) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => {
            // Colours only on a terminal: files and pipes get plain text.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            registry.with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr)).try_init()
        }
        LogFormat::Json => registry.with(fmt::layer().json().with_writer(std::io::stderr)).try_init(),
    };
}

/// Libraries whose verbose logs would carry secrets, capped whatever `RUST_LOG` asks:
/// suppaftp traces every FTP command it sends, `PASS <password>` included.
const CAPPED_TARGETS: &[&str] = &["suppaftp=warn"];

/// `DEBUG=true` or `pixl --debug`.
pub const DEBUG_FILTER: &str = "debug,sqlx=warn,lapin=info,h2=info,hyper=info,rustls=info";

/// Default filter of the services: info, without sqlx's per-statement notices.
pub const SERVICE_FILTER: &str = "info,sqlx=warn";

/// For tests: silent unless `TEST_LOG` is set.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        init(LogFormat::Text, SERVICE_FILTER);
    }
}
