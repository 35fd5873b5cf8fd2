//! `pixl-anon-node`: for now the storage SCP alone (receiving into the raw cache); the
//! de-identification consumer and HTTP endpoints join it in issue 4.

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pixl_core::config::load_dotenv()?;
    pixl_core::telemetry::init(pixl_core::telemetry::LogFormat::from_env()?, pixl_core::telemetry::SERVICE_FILTER);
    let config = pixl_anon_node::AnonNodeConfig::from_lookup(|name| std::env::var(name).ok())?;
    let listener = tokio::net::TcpListener::bind(config.dicom_bind).await.with_context(|| format!("cannot listen on {}", config.dicom_bind))?;
    tracing::info!(ae_title = %config.ae_title, address = %listener.local_addr()?, "anon-node DICOM listening");
    let shutdown = pixl_core::shutdown::on_signals();
    let scp_config = pixl_anon_node::scp::ScpConfig { ae_title: config.ae_title, allowed_callers: config.allowed_callers };
    pixl_anon_node::scp::serve(listener, scp_config, pixl_anon_node::raw_cache::RawCache::new(config.raw_cache_dir), shutdown).await?;
    Ok(())
}
