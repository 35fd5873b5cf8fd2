//! Client of the hasher-api, used by every service that pseudonymises: timeouts, retries
//! with exponential backoff on transient failures, a bounded in-process cache, and batch
//! calls. Messages are identifiers: they are sent in the body of POST requests (never in a
//! URL that a proxy might log) and never appear in errors or logs.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::ids::ProjectSlug;

/// A hash request that failed.
#[derive(Debug, thiserror::Error)]
pub enum HasherError {
    /// The request was refused (4xx); retrying will not help.
    #[error("hasher-api refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// The hasher-api or its secret store stayed unavailable through every retry.
    #[error("hasher-api unavailable after {attempts} attempts: {problem}")]
    Unavailable { attempts: u32, problem: String },
    #[error("hasher-api answered with {got} hashes for {expected} messages")]
    BadAnswer { expected: usize, got: usize },
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct HasherClientConfig {
    /// `HASHER_API_URL`, e.g. `http://127.0.0.1:8000`.
    pub base_url: String,
    /// `HASHER_API_TOKEN`, sent as a bearer token when set.
    pub token: Option<SecretString>,
    pub timeout: Duration,
    /// Attempts per call, including the first.
    pub attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub first_backoff: Duration,
    /// Entries kept in the in-process cache.
    pub cache_entries: usize,
}

impl HasherClientConfig {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            token: None,
            timeout: Duration::from_secs(10),
            attempts: 5,
            first_backoff: Duration::from_millis(100),
            cache_entries: 100_000,
        }
    }

    /// `HASHER_API_URL` (default `http://127.0.0.1:8000`) and `HASHER_API_TOKEN`.
    pub fn from_env() -> Self {
        let get = |name: &str| crate::pixl_env::process_lookup(name);
        let mut config = Self::new(get("HASHER_API_URL").unwrap_or_else(|| "http://127.0.0.1:8000".to_owned()));
        config.token = get("HASHER_API_TOKEN").map(SecretString::from);
        config
    }
}

#[derive(Serialize)]
struct BatchRequest<'a> {
    project_slug: &'a str,
    messages: &'a [&'a str],
    length: usize,
}

#[derive(Deserialize)]
struct BatchResponse {
    hashes: Vec<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

type CacheKey = (ProjectSlug, usize, String);

/// Talks to one hasher-api.
#[derive(Debug)]
pub struct HasherClient {
    http: reqwest::Client,
    config: HasherClientConfig,
    cache: Mutex<lru::LruCache<CacheKey, String>>,
}

/// Largest batch sent in one request (the server accepts up to 10,000).
const MAX_BATCH: usize = 5_000;

impl HasherClient {
    pub fn new(config: HasherClientConfig) -> Result<Self, HasherError> {
        let http = reqwest::Client::builder().timeout(config.timeout).build().map_err(|e| HasherError::Unavailable { attempts: 0, problem: e.to_string() })?;
        let capacity = NonZeroUsize::new(config.cache_entries.max(1)).expect("at least one");
        Ok(Self { http, cache: Mutex::new(lru::LruCache::new(capacity)), config })
    }

    /// The pseudonym of one identifier.
    pub async fn hash(&self, project: &ProjectSlug, message: &str, length: usize) -> Result<String, HasherError> {
        Ok(self.hash_batch(project, &[message], length).await?.remove(0))
    }

    /// Pseudonyms of many identifiers, in order. Cached values are not asked for again.
    pub async fn hash_batch(&self, project: &ProjectSlug, messages: &[&str], length: usize) -> Result<Vec<String>, HasherError> {
        let mut results: Vec<Option<String>> = {
            let mut cache = self.cache.lock().expect("cache lock");
            messages.iter().map(|m| cache.get(&(project.clone(), length, (*m).to_owned())).cloned()).collect()
        };
        let missing: Vec<usize> = (0..messages.len()).filter(|&i| results[i].is_none()).collect();
        for chunk in missing.chunks(MAX_BATCH) {
            let chunk_messages: Vec<&str> = chunk.iter().map(|&i| messages[i]).collect();
            let hashes = self.request(project, &chunk_messages, length).await?;
            let mut cache = self.cache.lock().expect("cache lock");
            for (&index, hash) in chunk.iter().zip(hashes) {
                cache.put((project.clone(), length, messages[index].to_owned()), hash.clone());
                results[index] = Some(hash);
            }
        }
        Ok(results.into_iter().map(|r| r.expect("every message answered")).collect())
    }

    async fn request(&self, project: &ProjectSlug, messages: &[&str], length: usize) -> Result<Vec<String>, HasherError> {
        let url = format!("{}/hash", self.config.base_url.trim_end_matches('/'));
        let body = BatchRequest { project_slug: project.as_str(), messages, length };
        let mut backoff = self.config.first_backoff;
        let mut problem = String::new();
        for attempt in 1..=self.config.attempts.max(1) {
            let mut request = self.http.post(&url).json(&body);
            if let Some(token) = &self.config.token {
                request = request.bearer_auth(token.expose_secret());
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    let answer: BatchResponse =
                        response.json().await.map_err(|e| HasherError::Unavailable { attempts: attempt, problem: format!("unreadable answer: {e}") })?;
                    if answer.hashes.len() != messages.len() {
                        return Err(HasherError::BadAnswer { expected: messages.len(), got: answer.hashes.len() });
                    }
                    return Ok(answer.hashes);
                }
                Ok(response) if response.status().is_client_error() => {
                    let status = response.status().as_u16();
                    let message = response.json::<ErrorBody>().await.map(|b| b.error).unwrap_or_else(|_| "no reason given".to_owned());
                    return Err(HasherError::Rejected { status, message });
                }
                Ok(response) => problem = format!("status {}", response.status()),
                // reqwest's error names the URL and the kind of failure, not the body.
                Err(error) => problem = error.without_url().to_string(),
            }
            if attempt < self.config.attempts {
                tracing::debug!(attempt, %problem, "hasher-api call failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
        }
        Err(HasherError::Unavailable { attempts: self.config.attempts, problem })
    }
}
