//! HTTP plumbing shared by the token, kick-off, status and download requests: retries
//! with backoff (or the server's `Retry-After`, bounded), error text that carries no URL
//! query or response body, and the rule that plain `http://` is only for loopback.

use std::time::{Duration, SystemTime};

use pixl_core::retry::Backoff;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use url::Url;

/// How often and how long to retry a request that failed for a reason that may pass
/// (a transport error, 429, 5xx).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    /// Tries in all, the first included.
    pub max_tries: u32,
    /// `Retry-After` is obeyed within these bounds.
    pub retry_after_min: Duration,
    pub retry_after_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            max_tries: 8,
            retry_after_min: Duration::from_secs(1),
            retry_after_max: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The pause before the next try: the server's `Retry-After` when it gave one
    /// (clamped), else the backoff for `attempt` (1 after the first failure).
    pub fn pause(&self, headers: Option<&HeaderMap>, attempt: u32) -> Duration {
        headers
            .and_then(|h| retry_after(h, SystemTime::now()))
            .map(|d| d.clamp(self.retry_after_min, self.retry_after_max))
            .unwrap_or_else(|| self.backoff.pause(attempt))
    }
}

/// A request failed for good.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Transport(String),
}

/// `Retry-After` as a delay from `now`: delta-seconds or an HTTP-date (all three forms of
/// RFC 9110 §5.6.7). A date in the past is no delay; anything else unreadable is `None`.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A reqwest error's text without its URL (a URL may carry query parameters).
pub fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the response body was cut off or could not be decoded"
    } else if error.is_redirect() {
        "too many redirects"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    // The lowest cause (an I/O or TLS error) names the problem; none of them holds a URL.
    while let Some(inner) = source {
        detail = inner.to_string();
        source = inner.source();
    }
    if detail.is_empty() { kind.to_owned() } else { format!("{kind}: {}", printable(&detail, 200)) }
}

/// `text` cut to `max` characters with control characters removed: for server-supplied
/// strings that go into messages.
pub fn printable(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// `path` under `base` (which is treated as a directory whether or not it ends in `/`).
pub fn join(base: &Url, path: &str) -> Url {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let with_slash = format!("{}/", base.path());
        base.set_path(&with_slash);
    }
    base.join(path).expect("a relative path joins")
}

/// `https`, or `http` to a loopback address only: tokens and health data never cross a
/// network in clear text.
pub fn check_scheme(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(name)) => name == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if loopback { Ok(()) } else { Err(format!("{} uses plain http: only https is allowed except to this machine (loopback)", origin(url))) }
        }
        other => Err(format!("unsupported URL scheme {other:?}")),
    }
}

/// Scheme, host and port of a URL, for messages (never its path or query).
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Whether a response status may pass if tried again.
pub fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT
}

/// Sends the request `make` builds, again after a pause while it fails with a transport
/// error, 408, 429 or a 5xx; returns the first other response (success or not), or the
/// last one when the tries are used up.
pub async fn send_with_retry(policy: &RetryPolicy, mut make: impl FnMut() -> reqwest::RequestBuilder) -> Result<reqwest::Response, HttpError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match make().send().await {
            Ok(response) if is_retryable(response.status()) => {
                if attempt >= policy.max_tries {
                    return Ok(response);
                }
                let pause = policy.pause(Some(response.headers()), attempt);
                tracing::debug!(status = %response.status(), ?pause, "retrying");
                tokio::time::sleep(pause).await;
            }
            Ok(response) => return Ok(response),
            Err(error) => {
                if attempt >= policy.max_tries {
                    return Err(HttpError::Transport(describe(&error)));
                }
                let pause = policy.pause(None, attempt);
                tracing::debug!(problem = %describe(&error), ?pause, "retrying");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    fn headers(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        map
    }

    #[test]
    fn retry_after_reads_seconds_and_all_three_date_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:30 GMT").unwrap();
        assert_eq!(retry_after(&headers("120"), now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(&headers("Sun, 06 Nov 1994 08:49:37 GMT"), now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&headers("Sunday, 06-Nov-94 08:49:37 GMT"), now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&headers("Sun Nov  6 08:49:37 1994"), now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&headers("Sun, 06 Nov 1994 08:00:00 GMT"), now), Some(Duration::ZERO), "a past date is no delay");
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&headers("-5"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn pauses_are_bounded() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.pause(Some(&headers("0")), 1), Duration::from_secs(1));
        assert_eq!(policy.pause(Some(&headers("86400")), 1), Duration::from_secs(600));
        assert_eq!(policy.pause(Some(&headers("garbage")), 3), Duration::from_secs(4), "backoff when unreadable");
        assert_eq!(policy.pause(None, 30), Duration::from_secs(60));
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_scheme(&Url::parse("http://127.0.0.1:8080/fhir").unwrap()).is_ok());
        assert!(check_scheme(&Url::parse("http://localhost/fhir").unwrap()).is_ok());
        assert!(check_scheme(&Url::parse("http://[::1]/fhir").unwrap()).is_ok());
        assert!(check_scheme(&Url::parse("https://fhir.example.org/r4").unwrap()).is_ok());
        let refused = check_scheme(&Url::parse("http://fhir.example.org/r4?patient=123").unwrap()).unwrap_err();
        assert!(refused.contains("http://fhir.example.org") && !refused.contains("patient"));
        assert!(check_scheme(&Url::parse("ftp://x/").unwrap()).is_err());
    }

    #[test]
    fn join_treats_the_base_as_a_directory() {
        let base = Url::parse("https://h/fhir").unwrap();
        assert_eq!(join(&base, "$export").as_str(), "https://h/fhir/$export");
        assert_eq!(join(&Url::parse("https://h/fhir/").unwrap(), "Group/g1/$export").as_str(), "https://h/fhir/Group/g1/$export");
    }
}
