//! `pixl-export-api`: uploads de-identified studies and parquet files to the research
//! environment, configured from the environment (`.env.sample`).

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pixl_core::config::load_dotenv()?;
    pixl_core::telemetry::init(pixl_core::telemetry::LogFormat::from_env()?, pixl_core::telemetry::SERVICE_FILTER);
    let settings = pixl_core::config::Settings::from_env()?;
    let config = pixl_export_api::ExportConfig::from_lookup(pixl_core::pixl_env::process_lookup)?;
    let http = tokio::net::TcpListener::bind(config.http_bind).await.with_context(|| format!("cannot listen on {}", config.http_bind))?;
    tracing::info!(http = %http.local_addr()?, concurrency = config.concurrency, "export-api listening");
    let shutdown = pixl_core::shutdown::on_signals();
    Ok(pixl_export_api::service::run(config, &settings, http, shutdown).await?)
}
