//! `pixl-ehr-api`: per study of a cohort, the patient's EHR fields and radiology report,
//! de-identified and checked twice; and `POST /deidentify`. Configured from the
//! environment (`.env.sample`).

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pixl_core::config::load_dotenv()?;
    pixl_core::telemetry::init(pixl_core::telemetry::LogFormat::from_env()?, pixl_core::telemetry::SERVICE_FILTER);
    let settings = pixl_core::config::Settings::from_env()?;
    let config = pixl_ehr_api::service::EhrConfig::from_lookup(pixl_core::pixl_env::process_lookup)?;
    let http = tokio::net::TcpListener::bind(config.http_bind).await.with_context(|| format!("cannot listen on {}", config.http_bind))?;
    tracing::info!(http = %http.local_addr()?, concurrency = config.concurrency, "ehr-api listening");
    let shutdown = pixl_core::shutdown::on_signals();
    Ok(pixl_ehr_api::service::run(config, &settings, http, shutdown).await?)
}
