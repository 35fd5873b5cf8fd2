//! `pixl-anon-node`: the storage SCP (the archive's C-MOVE destination), the `anonymise`
//! consumer and the HTTP routes, configured from the environment (`.env.sample`).

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pixl_core::config::load_dotenv()?;
    pixl_core::telemetry::init(pixl_core::telemetry::LogFormat::from_env()?, pixl_core::telemetry::SERVICE_FILTER);
    let settings = pixl_core::config::Settings::from_env()?;
    let config = pixl_anon_node::AnonNodeConfig::from_lookup(pixl_core::pixl_env::process_lookup)?;
    let dicom = match config.scp {
        true => Some(tokio::net::TcpListener::bind(config.dicom_bind).await.with_context(|| format!("cannot listen on {}", config.dicom_bind))?),
        false => None,
    };
    let http = tokio::net::TcpListener::bind(config.http_bind).await.with_context(|| format!("cannot listen on {}", config.http_bind))?;
    tracing::info!(ae_title = %config.ae_title, scp = config.scp, http = %http.local_addr()?, "anon-node listening");
    let shutdown = pixl_core::shutdown::on_signals();
    let hasher = pixl_core::hasher_client::HasherClientConfig::from_env();
    Ok(pixl_anon_node::service::run(config, &settings, hasher, dicom, http, shutdown).await?)
}
