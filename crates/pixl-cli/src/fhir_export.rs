//! `pixl fhir export`: a Bulk Data `$export` from a FHIR server with SMART Backend
//! Services authorisation, into a folder that `pixl fhir convert` reads; and `pixl fhir
//! keygen`, which creates the client's signing key in the secret store and prints the
//! public key set to register with the server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use pixl_fhir_bulk::export::{Event, ExportOptions, ExportSummary};
use pixl_fhir_bulk::http::RetryPolicy;
use pixl_fhir_bulk::{Alg, BulkClient, SigningKey, TokenSource};
use pixl_secrets::SecretStore;
use secrecy::{ExposeSecret, SecretString};

/// The secret that holds the client's private key unless `--key-secret` names another.
pub const DEFAULT_KEY_SECRET: &str = "fhir-bulk-client-key";

/// Where the client's private key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A secret of the store (`PIXL_SECRETS_FILE` or Azure Key Vault).
    Secret(String),
    /// A file (JWK or PEM), for trying things out.
    File(PathBuf),
}

/// Authorisation settings; `None` client id means an open server.
#[derive(Debug, Clone)]
pub struct AuthArgs {
    pub client_id: Option<String>,
    pub key: KeySource,
    pub kid: Option<String>,
    pub scope: String,
}

async fn secret_store() -> anyhow::Result<Arc<dyn SecretStore>> {
    let config = pixl_secrets::SecretsConfig::from_env_prefix("HASHER_API")?;
    Ok(config.open()?)
}

async fn load_key(auth: &AuthArgs) -> anyhow::Result<SigningKey> {
    let text: SecretString = match &auth.key {
        KeySource::Secret(name) => {
            secret_store().await?.get(name).await?.with_context(|| format!("the secret store has no secret {name:?} (create one with `pixl fhir keygen`)"))?
        }
        KeySource::File(path) => SecretString::from(std::fs::read_to_string(path).with_context(|| format!("cannot read the key file {}", path.display()))?),
    };
    SigningKey::from_text(text.expose_secret(), auth.kid.as_deref()).context("the client's private key")
}

/// Runs (or, with `options.status_url`, resumes) an export into `out`.
pub async fn run(options: ExportOptions, auth: &AuthArgs, extra_ca_file: Option<&Path>, out: &Path) -> anyhow::Result<ExportSummary> {
    // No downgrade from https to http on a redirect, and no request that waits forever.
    let redirects = reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() == "http" && attempt.previous().last().is_some_and(|u| u.scheme() == "https");
        if downgrade {
            attempt.error("a redirect from https to http was refused")
        } else if attempt.previous().len() >= 5 {
            attempt.stop()
        } else {
            attempt.follow()
        }
    });
    let http = pixl_core::http_client::builder(extra_ca_file)?
        .redirect(redirects)
        .connect_timeout(std::time::Duration::from_secs(30))
        .read_timeout(std::time::Duration::from_secs(300))
        .build()
        .context("HTTP client")?;
    let tokens = match &auth.client_id {
        Some(client_id) => {
            let key = load_key(auth).await?;
            let config = pixl_fhir_bulk::discover(&http, &options.base, key.alg(), &RetryPolicy::default()).await?;
            Some(Arc::new(TokenSource::new(http.clone(), &config, client_id, &auth.scope, Arc::new(key), RetryPolicy::default())))
        }
        None => None,
    };
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let shown = bar.clone();
    let files = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let client = BulkClient::new(http, tokens).on_event(move |event| match event {
        // Printed whether or not stderr is a terminal (the bar is hidden when it is not).
        Event::KickedOff { status_url } => shown.suspend(|| eprintln!("export started; if interrupted, resume with --status {status_url}")),
        Event::Progress(progress) => shown.set_message(format!("server: {}", progress.as_deref().unwrap_or("working"))),
        Event::FileDone { file, lines } => {
            let n = files.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            shown.set_message(format!("{n} files downloaded; last {} ({lines} resources)", file.file_name().unwrap_or_default().to_string_lossy()));
        }
        Event::FileSkipped { file } => shown.suspend(|| eprintln!("already complete: {}", file.file_name().unwrap_or_default().to_string_lossy())),
    });
    let result = client.export(&options, out).await;
    bar.finish_and_clear();
    Ok(result?)
}

/// Prints what an export did (counts, never data).
pub fn print_summary(summary: &ExportSummary, out: &Path) {
    let printable = |text: &str| pixl_fhir_bulk::http::printable(text, 40);
    println!(
        "export complete: transactionTime {}, {} files downloaded, {} already complete, {} MB in {}",
        summary.transaction_time.as_deref().map(printable).unwrap_or_else(|| "(none)".to_owned()),
        summary.files_downloaded,
        summary.files_skipped,
        summary.bytes / 1_000_000,
        out.display()
    );
    for (resource_type, count) in &summary.resources {
        println!("  {:<24} {count:>10} resources", printable(resource_type));
    }
    if summary.deleted_entries > 0 {
        println!("  deleted since _since: {} (in deleted/)", summary.deleted_entries);
    }
    if !summary.outcome_issues.is_empty() {
        println!("  server messages (in error/): {}", pixl_fhir_bulk::manifest::summarise(&summary.outcome_issues));
    }
    println!(
        "  job {}",
        if summary.job_deleted { "deleted on the server" } else { "not deleted on the server (--keep-job, or the DELETE failed: see the warnings)" }
    );
    println!("next: pixl fhir convert {} --project <slug> --out <tables>", out.display());
}

/// `pixl fhir keygen`: a new key in the secret store (never replacing one), and its public
/// JWKS on stdout.
pub async fn keygen(alg: Alg, kid: &str, secret: &str) -> anyhow::Result<serde_json::Value> {
    let store = secret_store().await?;
    if store.get(secret).await?.is_some() {
        anyhow::bail!("the secret store already holds {secret:?}: the server knows its public key; delete it first to replace it");
    }
    let key = SigningKey::generate(alg, kid);
    store.set(secret, &SecretString::from(key.to_pkcs8_pem().to_string())).await?;
    // The PEM has no kid: record it beside the key so that `export` finds it.
    store.set(&format!("{secret}-kid"), &SecretString::from(kid.to_owned())).await?;
    Ok(serde_json::json!({"keys": [key.public_jwk()]}))
}

/// The key id stored by `keygen` beside a PEM key, when `--kid` is not given.
pub async fn stored_kid(secret: &str) -> anyhow::Result<Option<String>> {
    Ok(secret_store().await?.get(&format!("{secret}-kid")).await?.map(|kid| kid.expose_secret().to_owned()))
}
