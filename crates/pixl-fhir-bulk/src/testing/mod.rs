//! A Bulk Data server for tests and the download benchmark, on loopback.
//!
//! It follows the Bulk Data Access IG (STU3) and SMART Backend Services strictly where a
//! client could get something wrong: no token → 401 with `WWW-Authenticate: Bearer`; the
//! token endpoint verifies the client assertion (registered key by `kid`, RS384/ES384
//! only, `iss` = `sub` = a known client, `aud` = the token URL, `exp` in the future and at
//! most five minutes ahead, `jti` not seen before); kick-off needs `Accept:
//! application/fhir+json` and `Prefer: respond-async` and refuses unknown parameters
//! unless the client asked for lenient handling; a token sent for files that do not
//! require one is refused (the client SHALL NOT send it); after DELETE the job and its
//! files are 404. The [`Script`] adds the behaviours a client must survive: polls
//! before completion with `Retry-After` and `X-Progress`, 429 for polling too fast,
//! transient and fatal errors, partial and paged manifests, gzip, 503s, truncated
//! bodies, slow files and tokens that expire.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::jose;

/// How `Retry-After` is sent with a 202.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfterStyle {
    None,
    Seconds(u64),
    /// An HTTP-date this many seconds ahead.
    HttpDate(u64),
}

/// Faults of one output file (by index in the manifest, from 0).
#[derive(Debug, Clone, Default)]
pub struct FileFault {
    /// The first n requests get 503 with `Retry-After: 1`.
    pub unavailable: u32,
    /// The first n requests get a body cut off mid-line (the connection closes early).
    pub truncated: u32,
    /// One line is of another resource type than the manifest says.
    pub wrong_type: bool,
    /// The manifest's `count` is one more than the lines.
    pub wrong_count: bool,
}

/// The server's behaviour.
#[derive(Debug, Clone)]
pub struct Script {
    /// Registered clients: id → public JWKs. Empty means an open server (no tokens).
    pub clients: BTreeMap<String, Vec<Value>>,
    /// `expires_in` announced with each token, and how long tokens really last.
    pub expires_in: u64,
    pub token_lifetime: Duration,
    /// 202s before the manifest.
    pub polls_before_done: u32,
    pub retry_after: RetryAfterStyle,
    /// A poll sooner than this after the previous one gets 429.
    pub min_poll_interval: Option<Duration>,
    /// Polls (1-based) that get 500 with a `transient` OperationOutcome.
    pub transient_at: Vec<u32>,
    /// The poll (1-based) that gets 500 with a `processing` (fatal) OperationOutcome.
    pub fatal_at: Option<u32>,
    pub requires_access_token: bool,
    /// Gzip files when the client accepts it.
    pub gzip: bool,
    pub lines_per_file: usize,
    /// With `allowPartialManifests`: output files per manifest page (`link` next).
    pub files_per_page: Option<usize>,
    /// With `allowPartialManifests`: the 202s carry a partial manifest of the files ready.
    pub partial_in_202: bool,
    pub faults: BTreeMap<usize, FileFault>,
    /// Bytes per second for each file's body (throttled in 64 KiB chunks).
    pub throttle: Option<u64>,
    /// An `error` file (an OperationOutcome with a warning) and a `deleted` file in the manifest.
    pub error_and_deleted: bool,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            clients: BTreeMap::new(),
            expires_in: 300,
            token_lifetime: Duration::from_secs(300),
            polls_before_done: 1,
            retry_after: RetryAfterStyle::Seconds(1),
            min_poll_interval: None,
            transient_at: Vec::new(),
            fatal_at: None,
            requires_access_token: true,
            gzip: true,
            lines_per_file: 1000,
            files_per_page: None,
            partial_in_202: false,
            faults: BTreeMap::new(),
            throttle: None,
            error_and_deleted: false,
        }
    }
}

/// A request the server saw.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: bool,
    pub accept_encoding: Option<String>,
    pub status: u16,
    pub at: Instant,
}

#[derive(Debug)]
struct OutputFile {
    resource_type: String,
    name: String,
    body: String,
    count: u64,
    fault: FileFault,
    requests: u32,
}

#[derive(Debug)]
struct Job {
    id: String,
    lenient_ignored: Vec<String>,
    allow_partial: bool,
    polls: u32,
    last_poll: Option<Instant>,
    done: bool,
    deleted: bool,
    files: Vec<OutputFile>,
    request: String,
}

#[derive(Debug)]
struct Inner {
    script: Script,
    data: BTreeMap<String, Vec<String>>,
    base: String,
    token_url: String,
    tokens: Mutex<HashMap<String, Instant>>,
    seen_jti: Mutex<HashSet<String>>,
    jobs: Mutex<Vec<Job>>,
    log: Mutex<Vec<Logged>>,
    active_downloads: Arc<AtomicUsize>,
    peak_downloads: Arc<AtomicUsize>,
}

/// Counts a file body being sent, from the handler until the body's last byte.
struct InFlight {
    active: Arc<AtomicUsize>,
}

impl InFlight {
    fn start(active: &Arc<AtomicUsize>, peak: &AtomicUsize) -> Self {
        let now = active.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        Self { active: active.clone() }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running server.
#[derive(Debug)]
pub struct BulkServer {
    /// The FHIR base URL (`http://127.0.0.1:<port>/fhir`).
    pub base: url::Url,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BulkServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BulkServer {
    /// Serves `data` (NDJSON lines per resource type) on 127.0.0.1 with `script`.
    pub async fn start(data: BTreeMap<String, Vec<String>>, script: Script) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let address = listener.local_addr().expect("local address");
        let root = format!("http://{address}");
        let inner = Arc::new(Inner {
            script,
            data,
            base: format!("{root}/fhir"),
            token_url: format!("{root}/auth/token"),
            tokens: Mutex::default(),
            seen_jti: Mutex::default(),
            jobs: Mutex::default(),
            log: Mutex::default(),
            active_downloads: Arc::default(),
            peak_downloads: Arc::default(),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        Self { base: url::Url::parse(&inner.base).expect("base URL"), inner, task }
    }

    pub fn token_url(&self) -> &str {
        &self.inner.token_url
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.inner.log.lock().expect("log lock").clone()
    }

    /// The exact bytes of output file `index` (before gzip), for comparisons.
    pub fn file_body(&self, index: usize) -> Option<String> {
        self.inner.jobs.lock().expect("jobs lock").last().and_then(|job| job.files.get(index).map(|f| f.body.clone()))
    }

    /// How many output files the latest job has.
    pub fn file_count(&self) -> usize {
        self.inner.jobs.lock().expect("jobs lock").last().map(|job| job.files.len()).unwrap_or(0)
    }

    /// The most output files being sent at the same moment (throttled files only).
    pub fn peak_concurrent_downloads(&self) -> usize {
        self.inner.peak_downloads.load(Ordering::SeqCst)
    }

    pub fn reset_peak(&self) {
        self.inner.peak_downloads.store(0, Ordering::SeqCst);
    }

    /// Whether the latest job was deleted.
    pub fn job_deleted(&self) -> bool {
        self.inner.jobs.lock().expect("jobs lock").last().is_some_and(|job| job.deleted)
    }
}

/// Patients and Observations, `patients` of each and three Observations per patient.
pub fn sample_data(patients: usize) -> BTreeMap<String, Vec<String>> {
    let mut data = BTreeMap::new();
    let patient_lines = (0..patients)
        .map(|i| json!({"resourceType": "Patient", "id": format!("p{i}"), "gender": if i % 2 == 0 { "female" } else { "male" }, "birthDate": format!("19{:02}-0{}-1{}", 30 + i % 60, 1 + i % 9, i % 10)}).to_string())
        .collect();
    let observation_lines = (0..patients * 3)
        .map(|i| {
            json!({"resourceType": "Observation", "id": format!("o{i}"), "status": "final", "subject": {"reference": format!("Patient/p{}", i / 3)},
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "valueQuantity": {"value": 60 + i % 40, "unit": "/min"},
                "effectiveDateTime": format!("2024-0{}-1{}T08:30:00Z", 1 + i % 9, i % 10)})
            .to_string()
        })
        .collect();
    data.insert("Patient".to_owned(), patient_lines);
    data.insert("Observation".to_owned(), observation_lines);
    data
}

fn outcome(status: StatusCode, severity: &str, code: &str, diagnostics: &str) -> Response {
    let body = json!({"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]});
    (status, [(header::CONTENT_TYPE, "application/fhir+json")], body.to_string()).into_response()
}

fn unauthorised() -> Response {
    let mut response = outcome(StatusCode::UNAUTHORIZED, "error", "login", "a valid bearer token is required");
    response.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("header value"));
    response
}

fn token_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], json!({"error": error}).to_string())
        .into_response()
}

async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap_or_default();
    let response = route(&inner, &method, &path, &query, &headers, &body).await;
    inner.log.lock().expect("log lock").push(Logged {
        method: method.to_string(),
        path,
        query,
        authorization: headers.contains_key(header::AUTHORIZATION),
        accept_encoding: headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).map(str::to_owned),
        status: response.status().as_u16(),
        at: Instant::now(),
    });
    response
}

impl Inner {
    fn auth_required(&self) -> bool {
        !self.script.clients.is_empty()
    }

    /// Whether the request carries a token this server issued and that has not expired.
    fn authorised(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) else {
            return false;
        };
        self.tokens.lock().expect("token lock").get(token).is_some_and(|expiry| Instant::now() < *expiry)
    }

    fn issue_token(&self, form: &HashMap<String, String>) -> Response {
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return token_error("unsupported_grant_type");
        }
        if form.get("client_assertion_type").map(String::as_str) != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
            return token_error("invalid_request");
        }
        let Some(scope) = form.get("scope").filter(|s| !s.is_empty()) else {
            return token_error("invalid_scope");
        };
        let Some(assertion) = form.get("client_assertion") else {
            return token_error("invalid_request");
        };
        // The issuer names the client whose keys verify the signature.
        let unverified_iss = assertion
            .split('.')
            .nth(1)
            .and_then(|claims| base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).ok())
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|claims| claims.get("iss").and_then(Value::as_str).map(str::to_owned));
        let Some(keys) = unverified_iss.as_ref().and_then(|iss| self.script.clients.get(iss)) else {
            return token_error("invalid_client");
        };
        let Ok((_, claims)) = jose::verify(assertion, keys) else {
            return token_error("invalid_client");
        };
        let now = jose::now_secs();
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let valid = claims.get("sub") == claims.get("iss")
            && claims.get("aud").and_then(Value::as_str) == Some(self.token_url.as_str())
            && exp > now
            && exp <= now + 300;
        let jti = claims.get("jti").and_then(Value::as_str).unwrap_or_default().to_owned();
        if !valid || jti.is_empty() || !self.seen_jti.lock().expect("jti lock").insert(jti) {
            return token_error("invalid_client");
        }
        let mut bytes = [0u8; 24];
        aws_lc_rs::rand::fill(&mut bytes).expect("randomness");
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.tokens.lock().expect("token lock").insert(token.clone(), Instant::now() + self.script.token_lifetime);
        let body = json!({"access_token": token, "token_type": "bearer", "expires_in": self.script.expires_in, "scope": scope});
        (StatusCode::OK, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body.to_string()).into_response()
    }

    fn kick_off(&self, method: &Method, path: &str, query: &str, headers: &HeaderMap, body: &[u8]) -> Response {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if accept != "application/fhir+json" {
            return outcome(StatusCode::BAD_REQUEST, "error", "invalid", "Accept must be application/fhir+json");
        }
        let prefer = headers.get("prefer").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !prefer.split(',').any(|p| p.trim() == "respond-async") {
            return outcome(StatusCode::BAD_REQUEST, "error", "invalid", "Prefer: respond-async is required");
        }
        let lenient = prefer.split(',').any(|p| p.trim() == "handling=lenient");
        let mut params: Vec<(String, String)> = Vec::new();
        if *method == Method::POST {
            let Ok(parameters) = serde_json::from_slice::<Value>(body) else {
                return outcome(StatusCode::BAD_REQUEST, "error", "invalid", "the body is not a Parameters resource");
            };
            if parameters.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
                return outcome(StatusCode::BAD_REQUEST, "error", "invalid", "the body is not a Parameters resource");
            }
            for parameter in parameters.get("parameter").and_then(Value::as_array).into_iter().flatten() {
                let name = parameter.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                let value = ["valueString", "valueInstant", "valueCode", "valueBoolean"]
                    .iter()
                    .find_map(|k| parameter.get(*k))
                    .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
                    .or_else(|| parameter.pointer("/valueReference/reference").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_default();
                params.push((name, value));
            }
        } else {
            params = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
            if params.iter().any(|(k, _)| k == "patient") {
                return outcome(StatusCode::BAD_REQUEST, "error", "invalid", "patient is a POST-only parameter");
            }
        }
        const KNOWN: &[&str] =
            &["_outputFormat", "_since", "_until", "_type", "_elements", "_typeFilter", "patient", "includeAssociatedData", "allowPartialManifests"];
        let mut ignored = Vec::new();
        for (name, _) in &params {
            if !KNOWN.contains(&name.as_str()) {
                if lenient {
                    ignored.push(name.clone());
                } else {
                    return outcome(StatusCode::BAD_REQUEST, "error", "not-supported", "unsupported parameter");
                }
            }
        }
        let mut jobs = self.jobs.lock().expect("jobs lock");
        if jobs.iter().any(|job| !job.done && !job.deleted) {
            let mut response = outcome(StatusCode::TOO_MANY_REQUESTS, "error", "too-costly", "an export is already running");
            response.headers_mut().insert(header::RETRY_AFTER, "1".parse().expect("header value"));
            return response;
        }
        let types: Vec<String> = params.iter().filter(|(k, _)| k == "_type").flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>()).collect();
        let allow_partial = params.iter().any(|(k, v)| k == "allowPartialManifests" && v == "true");
        let id = format!("job{}", jobs.len() + 1);
        let mut files = Vec::new();
        for (resource_type, lines) in &self.data {
            if !types.is_empty() && !types.contains(resource_type) {
                continue;
            }
            for (k, chunk) in lines.chunks(self.script.lines_per_file.max(1)).enumerate() {
                let index = files.len();
                let fault = self.script.faults.get(&index).cloned().unwrap_or_default();
                let mut body = String::new();
                for (i, line) in chunk.iter().enumerate() {
                    if fault.wrong_type && i == chunk.len() / 2 {
                        body.push_str(r#"{"resourceType":"Basic","id":"x"}"#);
                    } else {
                        body.push_str(line);
                    }
                    body.push('\n');
                }
                let count = chunk.len() as u64 + u64::from(fault.wrong_count);
                files.push(OutputFile {
                    resource_type: resource_type.clone(),
                    name: format!("{resource_type}-{}.ndjson", k + 1),
                    body,
                    count,
                    fault,
                    requests: 0,
                });
            }
        }
        let request = format!("{}{path}{}", self.base.trim_end_matches("/fhir"), if query.is_empty() { String::new() } else { format!("?{query}") });
        jobs.push(Job { id: id.clone(), lenient_ignored: ignored, allow_partial, polls: 0, last_poll: None, done: false, deleted: false, files, request });
        let location = format!("{}/jobs/{id}", self.base);
        (StatusCode::ACCEPTED, [(header::CONTENT_LOCATION, location)], "").into_response()
    }

    fn manifest(&self, job: &Job, page: usize, only_ready: Option<usize>) -> Value {
        let file_url = |f: &OutputFile| format!("{}/files/{}/{}", self.base, job.id, f.name);
        let per_page = if job.allow_partial { self.script.files_per_page.unwrap_or(usize::MAX) } else { usize::MAX };
        let start = (page - 1).saturating_mul(per_page);
        let end = start.saturating_add(per_page).min(only_ready.unwrap_or(usize::MAX)).min(job.files.len());
        let output: Vec<Value> =
            job.files[start.min(end)..end].iter().map(|f| json!({"type": f.resource_type, "url": file_url(f), "count": f.count})).collect();
        let mut manifest = json!({
            "transactionTime": "2026-12-01T00:00:00Z",
            "request": job.request,
            "requiresAccessToken": self.script.requires_access_token,
            "output": output,
            "error": [],
        });
        let last_page = end >= job.files.len();
        if page == 1 && (self.script.error_and_deleted || !job.lenient_ignored.is_empty()) {
            manifest["error"] = json!([{"type": "OperationOutcome", "url": format!("{}/files/{}/errors.ndjson", self.base, job.id)}]);
        }
        if page == 1 && self.script.error_and_deleted {
            manifest["deleted"] = json!([{"type": "Bundle", "url": format!("{}/files/{}/deleted.ndjson", self.base, job.id)}]);
        }
        if only_ready.is_none() && !last_page {
            manifest["link"] = json!([{"relation": "next", "url": format!("{}/jobs/{}?page={}", self.base, job.id, page + 1)}]);
        }
        manifest
    }

    fn status(&self, id: &str, query: &str) -> Response {
        let mut jobs = self.jobs.lock().expect("jobs lock");
        let Some(job) = jobs.iter_mut().find(|j| j.id == id) else {
            return outcome(StatusCode::NOT_FOUND, "error", "not-found", "no such job");
        };
        if job.deleted {
            return outcome(StatusCode::NOT_FOUND, "error", "not-found", "the job was deleted");
        }
        let page: usize = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "page").and_then(|(_, v)| v.parse().ok()).unwrap_or(1);
        if page > 1 {
            return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], self.manifest(job, page, None).to_string()).into_response();
        }
        let now = Instant::now();
        if let (Some(min), Some(last)) = (self.script.min_poll_interval, job.last_poll)
            && now.duration_since(last) < min
        {
            job.last_poll = Some(now);
            let mut response = outcome(StatusCode::TOO_MANY_REQUESTS, "error", "throttled", "polling too fast");
            response.headers_mut().insert(header::RETRY_AFTER, min.as_secs().max(1).to_string().parse().expect("header value"));
            return response;
        }
        job.last_poll = Some(now);
        job.polls += 1;
        if self.script.transient_at.contains(&job.polls) {
            return outcome(StatusCode::INTERNAL_SERVER_ERROR, "error", "transient", "try again");
        }
        if self.script.fatal_at == Some(job.polls) {
            return outcome(StatusCode::INTERNAL_SERVER_ERROR, "fatal", "processing", "the export failed for Patient/p1");
        }
        if job.polls <= self.script.polls_before_done {
            let mut response = if job.allow_partial && self.script.partial_in_202 {
                let ready = job.polls as usize;
                (StatusCode::ACCEPTED, [(header::CONTENT_TYPE, "application/json")], self.manifest(job, 1, Some(ready)).to_string()).into_response()
            } else {
                StatusCode::ACCEPTED.into_response()
            };
            let progress = format!("{}% done", job.polls * 100 / (self.script.polls_before_done + 1));
            response.headers_mut().insert("x-progress", progress.parse().expect("header value"));
            match self.script.retry_after {
                RetryAfterStyle::None => {}
                RetryAfterStyle::Seconds(s) => {
                    response.headers_mut().insert(header::RETRY_AFTER, s.to_string().parse().expect("header value"));
                }
                RetryAfterStyle::HttpDate(s) => {
                    let when = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(s));
                    response.headers_mut().insert(header::RETRY_AFTER, when.parse().expect("header value"));
                }
            }
            return response;
        }
        job.done = true;
        let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], self.manifest(job, 1, None).to_string()).into_response();
        response.headers_mut().insert(header::EXPIRES, httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600)).parse().expect("header value"));
        response
    }

    async fn file(&self, id: &str, name: &str, headers: &HeaderMap) -> Response {
        let (body, fault, requests) = {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            let Some(job) = jobs.iter_mut().find(|j| j.id == id) else {
                return outcome(StatusCode::NOT_FOUND, "error", "not-found", "no such job");
            };
            if job.deleted {
                return outcome(StatusCode::NOT_FOUND, "error", "not-found", "the job was deleted");
            }
            match name {
                "errors.ndjson" => {
                    let mut lines = String::new();
                    if self.script.error_and_deleted {
                        lines.push_str(&json!({"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "processing", "diagnostics": "1 Observation skipped"}]}).to_string());
                        lines.push('\n');
                    }
                    for ignored in &job.lenient_ignored {
                        let text = format!("parameter {ignored} was ignored");
                        lines.push_str(
                            &json!({"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "not-supported", "diagnostics": text}]})
                                .to_string(),
                        );
                        lines.push('\n');
                    }
                    (lines, FileFault::default(), 1)
                }
                "deleted.ndjson" => {
                    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "DELETE", "url": "Patient/gone1"}}]});
                    (format!("{bundle}\n"), FileFault::default(), 1)
                }
                _ => {
                    let Some(file) = job.files.iter_mut().find(|f| f.name == name) else {
                        return outcome(StatusCode::NOT_FOUND, "error", "not-found", "no such file");
                    };
                    file.requests += 1;
                    (file.body.clone(), file.fault.clone(), file.requests)
                }
            }
        };
        if requests <= fault.unavailable {
            let mut response = outcome(StatusCode::SERVICE_UNAVAILABLE, "error", "transient", "busy");
            response.headers_mut().insert(header::RETRY_AFTER, "1".parse().expect("header value"));
            return response;
        }
        let accepts_gzip =
            headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
        if requests <= fault.unavailable + fault.truncated {
            // Announce the whole length, send half, close: the client sees a cut-off body.
            let half = body.as_bytes()[..body.len() / 2].to_vec();
            let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(half), Err(std::io::Error::other("connection dropped"))]);
            return Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/fhir+ndjson")
                .header(header::CONTENT_LENGTH, body.len())
                .body(Body::from_stream(stream))
                .expect("response");
        }
        let (bytes, encoding) = if self.script.gzip && accepts_gzip {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut encoder, body.as_bytes()).expect("gzip to memory");
            (encoder.finish().expect("gzip to memory"), Some("gzip"))
        } else {
            (body.into_bytes(), None)
        };
        let mut builder = Response::builder().status(StatusCode::OK).header(header::CONTENT_TYPE, "application/fhir+ndjson");
        if let Some(encoding) = encoding {
            builder = builder.header(header::CONTENT_ENCODING, encoding);
        }
        match self.script.throttle {
            Some(rate) => {
                let chunks: Vec<Vec<u8>> = bytes.chunks(64 << 10).map(<[u8]>::to_vec).collect();
                let in_flight = InFlight::start(&self.active_downloads, &self.peak_downloads);
                let stream = futures_util::stream::unfold((chunks.into_iter(), in_flight), move |(mut chunks, in_flight)| async move {
                    let chunk = chunks.next()?;
                    tokio::time::sleep(Duration::from_secs_f64(chunk.len() as f64 / rate as f64)).await;
                    Some((Ok::<_, std::io::Error>(chunk), (chunks, in_flight)))
                });
                builder.body(Body::from_stream(stream)).expect("response")
            }
            None => builder.body(Body::from(bytes)).expect("response"),
        }
    }
}

async fn route(inner: &Inner, method: &Method, path: &str, query: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments.as_slice() == ["auth", "token"] {
        if *method != Method::POST {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
        return inner.issue_token(&form);
    }
    let Some(("fhir", rest)) = segments.split_first().map(|(first, rest)| (*first, rest)) else {
        return outcome(StatusCode::NOT_FOUND, "error", "not-found", "unknown path");
    };
    if rest == [".well-known", "smart-configuration"] {
        let config = json!({
            "token_endpoint": inner.token_url,
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "grant_types_supported": ["client_credentials"],
            "scopes_supported": ["system/*.rs", "system/*.read"],
            "capabilities": ["client-confidential-asymmetric"],
        });
        return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], config.to_string()).into_response();
    }
    let is_file = rest.first() == Some(&"files");
    let token_needed = inner.auth_required() && (!is_file || inner.script.requires_access_token);
    if token_needed && !inner.authorised(headers) {
        return unauthorised();
    }
    if is_file && !inner.script.requires_access_token && headers.contains_key(header::AUTHORIZATION) {
        return outcome(StatusCode::BAD_REQUEST, "error", "security", "requiresAccessToken is false: the client SHALL NOT send a token");
    }
    match (method, rest) {
        (&Method::GET | &Method::POST, ["$export"] | ["Patient", "$export"] | ["Group", _, "$export"]) => inner.kick_off(method, path, query, headers, body),
        (&Method::GET, ["jobs", id]) => inner.status(id, query),
        (&Method::DELETE, ["jobs", id]) => {
            let mut jobs = inner.jobs.lock().expect("jobs lock");
            match jobs.iter_mut().find(|j| j.id == *id && !j.deleted) {
                Some(job) => {
                    job.deleted = true;
                    StatusCode::ACCEPTED.into_response()
                }
                None => outcome(StatusCode::NOT_FOUND, "error", "not-found", "no such job"),
            }
        }
        (&Method::GET, ["files", id, name]) => inner.file(id, name, headers).await,
        _ => outcome(StatusCode::NOT_FOUND, "error", "not-found", "unknown path"),
    }
}
