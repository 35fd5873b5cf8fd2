//! `pixl-hasher-api`: reads configuration, starts telemetry, serves until SIGTERM.

use anyhow::Context;
use pixl_core::telemetry::{LogFormat, SERVICE_FILTER};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pixl_core::config::load_dotenv()?;
    pixl_core::telemetry::init(LogFormat::from_env()?, SERVICE_FILTER);
    let config = pixl_hasher_api::HasherConfig::from_env()?;
    let listener = tokio::net::TcpListener::bind(config.bind).await.with_context(|| format!("cannot listen on {}", config.bind))?;
    tracing::info!(address = %listener.local_addr()?, "hasher-api listening");
    pixl_hasher_api::run(config, listener, pixl_core::shutdown::on_signals()).await?;
    Ok(())
}
