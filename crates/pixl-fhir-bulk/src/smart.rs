//! SMART Backend Services authorisation: discovery from
//! `.well-known/smart-configuration`, the `client_credentials` grant with a
//! `private_key_jwt` client assertion, and a token cache that renews before expiry, one
//! request at a time, however many downloads ask at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::http::{self, RetryPolicy};
use crate::jose::{Alg, SigningKey};

/// The default scope: read and search every resource type (SMART v2).
pub const DEFAULT_SCOPE: &str = "system/*.rs";

/// What discovery found.
#[derive(Debug, Clone)]
pub struct SmartConfig {
    pub token_endpoint: Url,
}

/// Authorisation failed in a way that retrying cannot fix, or could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("SMART discovery at {url}: {problem}")]
    Discovery { url: String, problem: String },
    #[error("the token endpoint refused the client: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused { error: String, description: Option<String> },
    #[error("token endpoint: {0}")]
    Http(#[from] http::HttpError),
    #[error("the token endpoint's answer is not a bearer token response")]
    BadResponse,
}

#[derive(Deserialize)]
struct Discovery {
    token_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_signing_alg_values_supported: Option<Vec<String>>,
}

/// `GET [base]/.well-known/smart-configuration`. The methods and algorithms the server
/// lists, when it lists them, must include `private_key_jwt` and the key's algorithm.
pub async fn discover(client: &reqwest::Client, base: &Url, alg: Alg, retry: &RetryPolicy) -> Result<SmartConfig, AuthError> {
    let url = http::join(base, ".well-known/smart-configuration");
    let problem = |problem: String| AuthError::Discovery { url: http::origin(&url), problem };
    let response = http::send_with_retry(retry, || client.get(url.clone()).header("Accept", "application/json")).await.map_err(|e| problem(e.to_string()))?;
    if !response.status().is_success() {
        return Err(problem(format!("HTTP {}", response.status())));
    }
    let body = response.bytes().await.map_err(|e| problem(http::describe(&e)))?;
    let discovery: Discovery = serde_json::from_slice(&body).map_err(|_| problem("not a JSON object with the SMART configuration fields".to_owned()))?;
    if let Some(methods) = &discovery.token_endpoint_auth_methods_supported
        && !methods.iter().any(|m| m == "private_key_jwt")
    {
        return Err(problem(format!("the server does not offer private_key_jwt (it lists {} other methods)", methods.len())));
    }
    if let Some(algs) = &discovery.token_endpoint_auth_signing_alg_values_supported
        && !algs.iter().any(|a| a == alg.name())
    {
        return Err(problem(format!("the server does not accept {} client assertions (it lists {} other algorithms)", alg.name(), algs.len())));
    }
    let token = discovery.token_endpoint.ok_or_else(|| problem("no token_endpoint".to_owned()))?;
    let token_endpoint = base.join(&token).map_err(|_| problem("token_endpoint is not a URL".to_owned()))?;
    http::check_scheme(&token_endpoint).map_err(problem)?;
    Ok(SmartConfig { token_endpoint })
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenErrorResponse {
    error: String,
    error_description: Option<String>,
}

struct CachedToken {
    token: SecretString,
    renew_at: Instant,
}

/// A client of a SMART Backend Services token endpoint with a cached token.
pub struct TokenSource {
    client: reqwest::Client,
    token_endpoint: Url,
    client_id: String,
    scope: String,
    key: Arc<SigningKey>,
    retry: RetryPolicy,
    cached: tokio::sync::Mutex<Option<CachedToken>>,
    requested: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource").field("token_endpoint", &self.token_endpoint.as_str()).field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(client: reqwest::Client, config: &SmartConfig, client_id: &str, scope: &str, key: Arc<SigningKey>, retry: RetryPolicy) -> Self {
        Self {
            client,
            token_endpoint: config.token_endpoint.clone(),
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            key,
            retry,
            cached: tokio::sync::Mutex::new(None),
            requested: Default::default(),
        }
    }

    /// How many tokens were requested so far.
    pub fn tokens_requested(&self) -> u64 {
        self.requested.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A valid token: the cached one unless it is near expiry (less than a fifth of its
    /// lifetime or a minute left, whichever is less).
    pub async fn token(&self) -> Result<SecretString, AuthError> {
        let mut cached = self.cached.lock().await;
        if let Some(current) = cached.as_ref()
            && Instant::now() < current.renew_at
        {
            return Ok(current.token.clone());
        }
        let fresh = self.request().await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// The server refused `token` (401): drop it so that the next call gets a new one.
    pub async fn invalidate(&self, token: &SecretString) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| c.token.expose_secret() == token.expose_secret()) {
            *cached = None;
        }
    }

    async fn request(&self) -> Result<CachedToken, AuthError> {
        let started = Instant::now();
        let response = http::send_with_retry(&self.retry, || {
            // A fresh assertion (new jti) per try: a server that saw the first may refuse a replay.
            let assertion = self.key.client_assertion(&self.client_id, self.token_endpoint.as_str());
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "client_credentials")
                .append_pair("scope", &self.scope)
                .append_pair("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                .append_pair("client_assertion", &assertion)
                .finish();
            self.requested.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.client
                .post(self.token_endpoint.clone())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Accept", "application/json")
                .body(body)
        })
        .await?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| http::HttpError::Transport(http::describe(&e)))?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<TokenErrorResponse>(&body) {
                Ok(error) => {
                    AuthError::Refused { error: http::printable(&error.error, 64), description: error.error_description.map(|d| http::printable(&d, 200)) }
                }
                Err(_) => AuthError::Refused { error: format!("HTTP {status}"), description: None },
            });
        }
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|_| AuthError::BadResponse)?;
        if !token.token_type.eq_ignore_ascii_case("bearer") || token.access_token.is_empty() {
            return Err(AuthError::BadResponse);
        }
        // Without expires_in, assume the specification's recommended maximum of five minutes.
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(300));
        let margin = (lifetime / 5).min(Duration::from_secs(60));
        Ok(CachedToken { token: SecretString::from(token.access_token), renew_at: started + lifetime.saturating_sub(margin) })
    }
}
