//! The Bulk Data `$export` flow: kick-off, status polling, manifests (partial and paged),
//! downloads, and the state file that lets an interrupted run resume.
//!
//! Everything the run learns is saved to `<out>/bulk-state.json` as soon as it is known
//! (the polling URL right after the 202, each manifest page, each completed file), written
//! to a temporary name and renamed. Files are downloaded to `<name>.part` and renamed when
//! every line has been checked; a rerun skips files already complete.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::http::{self, HttpError, RetryPolicy};
use crate::manifest::{Manifest, OutputFile, is_transient, outcome_issues};
use crate::smart::{AuthError, TokenSource};

/// The state file's name in the output folder.
pub const STATE_FILE: &str = "bulk-state.json";

/// The longest line accepted by default (as `pixl fhir convert`).
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 20;

/// Which resources the export covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    /// `[base]/$export`: every resource.
    System,
    /// `[base]/Patient/$export`: every patient's compartment.
    Patient,
    /// `[base]/Group/[id]/$export`: the group's members.
    Group(String),
}

impl Level {
    fn path(&self) -> String {
        match self {
            Level::System => "$export".to_owned(),
            Level::Patient => "Patient/$export".to_owned(),
            Level::Group(id) => format!("Group/{id}/$export"),
        }
    }
}

/// The kick-off parameters (Bulk Data STU3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportParams {
    pub output_format: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub types: Vec<String>,
    pub type_filters: Vec<String>,
    pub elements: Vec<String>,
    /// Patient references (`Patient/123`): POST only.
    pub patients: Vec<String>,
    pub include_associated_data: Vec<String>,
    pub organize_output_by: Option<String>,
    pub allow_partial_manifests: bool,
}

impl ExportParams {
    /// GET query pairs. Lists that are comma-separated in every version of the IG
    /// (`_type`, `_elements`, `includeAssociatedData`) are joined; `_typeFilter` values
    /// are FHIR queries that may hold commas themselves, so each is its own parameter.
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        let mut one = |name: &'static str, value: Option<&String>| {
            if let Some(value) = value {
                query.push((name, value.clone()));
            }
        };
        one("_outputFormat", self.output_format.as_ref());
        one("_since", self.since.as_ref());
        one("_until", self.until.as_ref());
        one("organizeOutputBy", self.organize_output_by.as_ref());
        for (name, values) in [("_type", &self.types), ("_elements", &self.elements), ("includeAssociatedData", &self.include_associated_data)] {
            if !values.is_empty() {
                query.push((name, values.join(",")));
            }
        }
        for filter in &self.type_filters {
            query.push(("_typeFilter", filter.clone()));
        }
        if self.allow_partial_manifests {
            query.push(("allowPartialManifests", "true".to_owned()));
        }
        query
    }

    /// The POST body: a `Parameters` resource, one parameter per value.
    fn parameters(&self) -> Value {
        let mut parameter = Vec::new();
        let mut string = |name: &str, value: &str| parameter.push(json!({"name": name, "valueString": value}));
        if let Some(v) = &self.output_format {
            string("_outputFormat", v);
        }
        for v in &self.types {
            string("_type", v);
        }
        for v in &self.elements {
            string("_elements", v);
        }
        for v in &self.type_filters {
            string("_typeFilter", v);
        }
        if let Some(v) = &self.organize_output_by {
            string("organizeOutputBy", v);
        }
        for (name, value) in [("_since", &self.since), ("_until", &self.until)] {
            if let Some(v) = value {
                parameter.push(json!({"name": name, "valueInstant": v}));
            }
        }
        for v in &self.include_associated_data {
            parameter.push(json!({"name": "includeAssociatedData", "valueCode": v}));
        }
        for v in &self.patients {
            parameter.push(json!({"name": "patient", "valueReference": {"reference": v}}));
        }
        if self.allow_partial_manifests {
            parameter.push(json!({"name": "allowPartialManifests", "valueBoolean": true}));
        }
        json!({"resourceType": "Parameters", "parameter": parameter})
    }
}

/// How the run behaves.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub base: Url,
    pub level: Level,
    pub params: ExportParams,
    /// Kick off with POST and a `Parameters` body (always, when patients are given).
    pub post: bool,
    /// `Prefer: handling=lenient`: the server ignores parameters it does not support.
    pub lenient: bool,
    /// Concurrent downloads.
    pub parallel: usize,
    /// Leave the job on the server (no DELETE) when done.
    pub keep_job: bool,
    /// Resume a job already kicked off.
    pub status_url: Option<Url>,
    pub max_line_bytes: usize,
    pub retry: RetryPolicy,
    /// Polling pauses when the server gives no `Retry-After`, and the bounds for it.
    pub poll: RetryPolicy,
    /// Consecutive transient failures of the status request before the run gives up.
    pub max_transient: u32,
}

impl ExportOptions {
    pub fn new(base: Url) -> Self {
        Self {
            base,
            level: Level::System,
            params: ExportParams::default(),
            post: false,
            lenient: false,
            parallel: 5,
            keep_job: false,
            status_url: None,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            retry: RetryPolicy::default(),
            poll: RetryPolicy { max_tries: u32::MAX, ..RetryPolicy::default() },
            max_transient: 10,
        }
    }
}

/// What a run reports as it goes.
#[derive(Debug, Clone)]
pub enum Event {
    KickedOff { status_url: String },
    Progress(Option<String>),
    FileDone { file: PathBuf, lines: u64 },
    FileSkipped { file: PathBuf },
}

/// The export failed. Messages name files, URLs' origins and counts, never data.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Http(#[from] HttpError),
    #[error("{0}")]
    Config(String),
    #[error("the server refused the export request: HTTP {status}{}", outcome_text(.issues))]
    KickOffRefused { status: StatusCode, issues: Vec<(String, String)> },
    #[error("the export job failed: HTTP {status}{}", outcome_text(.issues))]
    JobFailed { status: StatusCode, issues: Vec<(String, String)> },
    #[error("the export job is gone (HTTP {0}): it was deleted or has expired")]
    JobGone(StatusCode),
    #[error("the status answer is not a valid manifest")]
    BadManifest,
    #[error("{failed} of {total} files could not be downloaded: {}", .problems.join("; "))]
    Downloads { failed: usize, total: usize, problems: Vec<String> },
    #[error("{path}: {problem}")]
    Io { path: PathBuf, problem: String },
}

fn outcome_text(issues: &[(String, String)]) -> String {
    if issues.is_empty() { String::new() } else { format!(" ({})", issues.iter().map(|(s, c)| format!("{s}/{c}")).collect::<Vec<_>>().join(", ")) }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |e| ExportError::Io { path: path.to_owned(), problem: e.to_string() }
}

/// Which section of the manifest a file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Output,
    Deleted,
    Error,
}

/// One file of the job as the state file keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileState {
    pub kind: FileKind,
    pub resource_type: Option<String>,
    /// Relative to the output folder.
    pub path: String,
    pub count: Option<u64>,
    pub done: bool,
    pub lines: u64,
    pub bytes: u64,
}

/// A manifest page and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPage {
    pub url: String,
    pub manifest: Value,
}

/// A file's identity across manifest pages: its URL without query or fragment (servers
/// may re-sign or refresh a file's URL in later pages).
fn file_key(url: &Url) -> String {
    let mut key = url.clone();
    key.set_query(None);
    key.set_fragment(None);
    key.to_string()
}

/// `<out>/bulk-state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub base: String,
    pub status_url: Option<String>,
    pub request: Option<Value>,
    pub transaction_time: Option<String>,
    pub requires_access_token: Option<bool>,
    pub output_organized_by: Option<String>,
    /// Manifest pages as received, with the URL each came from (relative URLs in a page
    /// resolve against it).
    pub manifests: Vec<SavedPage>,
    /// By file key (URL without query), in the order first seen.
    pub files: Vec<(String, FileState)>,
    pub job_deleted: bool,
    pub complete: bool,
}

impl State {
    pub fn load(dir: &Path) -> Result<Option<Self>, ExportError> {
        let path = dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ExportError::Io { path, problem: format!("not a state file written by pixl ({})", e.classify_name()) }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    fn save(&self, dir: &Path) -> Result<(), ExportError> {
        let path = dir.join(STATE_FILE);
        let temp = dir.join(format!("{STATE_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).expect("state serialises");
        (|| {
            let mut file = std::fs::File::create(&temp)?;
            std::io::Write::write_all(&mut file, &bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)
        })()
        .map_err(io_error(&path))
    }

    fn file_mut(&mut self, url: &str) -> Option<&mut FileState> {
        self.files.iter_mut().find(|(u, _)| u == url).map(|(_, f)| f)
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "unexpected content",
            serde_json::error::Category::Eof => "cut off",
        }
    }
}

/// What a finished run did.
#[derive(Debug, Clone, Default)]
pub struct ExportSummary {
    pub status_url: String,
    pub transaction_time: Option<String>,
    pub files_downloaded: usize,
    pub files_skipped: usize,
    pub resources: BTreeMap<String, u64>,
    pub deleted_entries: u64,
    pub bytes: u64,
    /// (severity, code) of the issues in the manifest's `error` files.
    pub outcome_issues: BTreeMap<(String, String), u64>,
    pub job_deleted: bool,
    pub tokens_requested: u64,
}

/// A Bulk Data client: an HTTP client and, for protected servers, a token source.
#[derive(Clone)]
pub struct BulkClient {
    http: reqwest::Client,
    auth: Option<Arc<TokenSource>>,
    on_event: Arc<dyn Fn(&Event) + Send + Sync>,
}

impl std::fmt::Debug for BulkClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkClient").field("auth", &self.auth).finish_non_exhaustive()
    }
}

impl BulkClient {
    pub fn new(http: reqwest::Client, auth: Option<Arc<TokenSource>>) -> Self {
        Self { http, auth, on_event: Arc::new(|_| {}) }
    }

    /// Calls `handler` with each [`Event`] of a run.
    pub fn on_event(mut self, handler: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.on_event = Arc::new(handler);
        self
    }

    async fn token(&self, wanted: bool) -> Result<Option<SecretString>, ExportError> {
        match (&self.auth, wanted) {
            (Some(auth), true) => Ok(Some(auth.token().await?)),
            _ => Ok(None),
        }
    }

    /// Sends with the bearer token (when `with_token` and the client has a token source),
    /// retrying transport errors, 429 and 5xx when `retry` is given, and once with a
    /// new token after a 401.
    async fn send(&self, with_token: bool, retry: Option<&RetryPolicy>, make: impl Fn() -> reqwest::RequestBuilder) -> Result<reqwest::Response, ExportError> {
        let once = RetryPolicy { max_tries: 1, ..RetryPolicy::default() };
        let mut refreshed = false;
        loop {
            let token = self.token(with_token).await?;
            let build = || {
                let request = make();
                match &token {
                    Some(token) => request.bearer_auth(token.expose_secret()),
                    None => request,
                }
            };
            let response = http::send_with_retry(retry.unwrap_or(&once), build).await?;
            if response.status() == StatusCode::UNAUTHORIZED
                && let (Some(auth), Some(token), false) = (&self.auth, &token, refreshed)
            {
                auth.invalidate(token).await;
                refreshed = true;
                continue;
            }
            return Ok(response);
        }
    }

    /// Runs (or resumes) an export into `out`.
    pub async fn export(&self, options: &ExportOptions, out: &Path) -> Result<ExportSummary, ExportError> {
        http::check_scheme(&options.base).map_err(ExportError::Config)?;
        if let Level::Group(id) = &options.level
            && (id.is_empty() || id.contains('/'))
        {
            return Err(ExportError::Config("the group id must be a plain FHIR id".to_owned()));
        }
        if !options.params.patients.is_empty() && options.level == Level::System {
            return Err(ExportError::Config("patient references are for Patient- or Group-level exports, not system-level".to_owned()));
        }
        tokio::fs::create_dir_all(out).await.map_err(io_error(out))?;
        let loaded = State::load(out)?;
        if loaded.is_none() && std::fs::read_dir(out).map_err(io_error(out))?.next().is_some() {
            return Err(ExportError::Config(format!(
                "{} is not empty and holds no export: use an empty folder, so that no other file is replaced or read as part of it",
                out.display()
            )));
        }
        let mut state = loaded.unwrap_or_default();
        let status_url = match (&options.status_url, &state.status_url) {
            (Some(given), Some(saved)) if given.as_str() != saved => {
                return Err(ExportError::Config(format!(
                    "{} belongs to another export job; use a new output folder, or --status with the URL saved there",
                    out.join(STATE_FILE).display()
                )));
            }
            (Some(given), _) => given.clone(),
            (None, Some(_)) if !state.complete => {
                return Err(ExportError::Config(format!(
                    "{} holds an export that has not finished: resume it with --status (the URL is in that file), or use a new output folder",
                    out.join(STATE_FILE).display()
                )));
            }
            (None, _) => {
                if state.complete {
                    return Err(ExportError::Config(format!("{} holds a finished export: use a new output folder", out.display())));
                }
                state = State { base: options.base.to_string(), ..State::default() };
                self.kick_off(options, out, &mut state).await?
            }
        };
        http::check_scheme(&status_url).map_err(ExportError::Config)?;
        if state.status_url.is_none() {
            state.base = options.base.to_string();
            state.status_url = Some(status_url.to_string());
            state.save(out)?;
        }
        remove_stale_parts(out)?;
        let state = Arc::new(Mutex::new(state));
        let downloads = Downloads::new(self.clone(), options, out, state.clone());
        let poll_result = self.poll(options, &status_url, out, &state, &downloads).await;
        let (total, failures, counted) = downloads.finish().await;
        if let Err(error) = poll_result {
            if !failures.is_empty() {
                tracing::warn!(failed = failures.len(), "files also failed to download");
                return Err(ExportError::Config(format!(
                    "{error}; besides, {} of {total} files could not be downloaded: {}",
                    failures.len(),
                    failures.join("; ")
                )));
            }
            return Err(error);
        }
        if !failures.is_empty() {
            return Err(ExportError::Downloads { failed: failures.len(), total, problems: failures });
        }
        let mut summary = summarise(out, &state.lock().expect("state lock"))?;
        (summary.files_downloaded, summary.files_skipped) = counted;
        if !options.keep_job && !state.lock().expect("state lock").job_deleted {
            // Every file is here: a DELETE that fails is reported, not a failed export.
            match self.send(true, Some(&options.retry), || self.http.delete(status_url.clone())).await {
                // 404: the server already released the job (its files expired).
                Ok(response) if response.status().is_success() || response.status() == StatusCode::NOT_FOUND => summary.job_deleted = true,
                Ok(response) => tracing::warn!(status = %response.status(), "the export job could not be deleted on the server"),
                Err(error) => tracing::warn!(%error, "the export job could not be deleted on the server"),
            }
        }
        {
            let mut state = state.lock().expect("state lock");
            state.job_deleted = summary.job_deleted;
            state.complete = true;
            state.save(out)?;
        }
        summary.status_url = status_url.to_string();
        summary.tokens_requested = self.auth.as_ref().map(|a| a.tokens_requested()).unwrap_or(0);
        Ok(summary)
    }

    async fn kick_off(&self, options: &ExportOptions, out: &Path, state: &mut State) -> Result<Url, ExportError> {
        let url = http::join(&options.base, &options.level.path());
        let post = options.post || !options.params.patients.is_empty();
        let prefer = if options.lenient { "respond-async, handling=lenient" } else { "respond-async" };
        let body = options.params.parameters();
        let query = options.params.query();
        // Only 429 (an export already running) is retried: a kick-off that may have reached
        // the server is not sent again, which could start a second job.
        let kick_off_retry = RetryPolicy { max_tries: 1, ..options.retry.clone() };
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let response = self
                .send(true, Some(&kick_off_retry), || {
                    let request = if post {
                        self.http.post(url.clone()).header("Content-Type", "application/fhir+json").body(body.to_string())
                    } else {
                        self.http.get(url.clone()).query(&query)
                    };
                    request.header("Accept", "application/fhir+json").header("Prefer", prefer)
                })
                .await?;
            if response.status() == StatusCode::TOO_MANY_REQUESTS && attempt < options.retry.max_tries {
                tokio::time::sleep(options.retry.pause(Some(response.headers()), attempt)).await;
                continue;
            }
            break response;
        };
        let status = response.status();
        if status != StatusCode::ACCEPTED {
            let issues = response.bytes().await.ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()).map(|v| outcome_issues(&v)).unwrap_or_default();
            return Err(ExportError::KickOffRefused { status, issues });
        }
        let location = response
            .headers()
            .get(reqwest::header::CONTENT_LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ExportError::Config("the server accepted the export but sent no Content-Location".to_owned()))?;
        let status_url = url.join(location).map_err(|_| ExportError::Config("the Content-Location is not a URL".to_owned()))?;
        state.request = Some(json!({"level": options.level, "params": options.params, "post": post, "lenient": options.lenient}));
        state.status_url = Some(status_url.to_string());
        state.save(out)?;
        (self.on_event)(&Event::KickedOff { status_url: status_url.to_string() });
        Ok(status_url)
    }

    async fn poll(&self, options: &ExportOptions, status_url: &Url, out: &Path, state: &Arc<Mutex<State>>, downloads: &Downloads) -> Result<(), ExportError> {
        // Pages already saved (a resumed run) are queued again; their complete files are skipped.
        let saved: Vec<SavedPage> = state.lock().expect("state lock").manifests.clone();
        let mut pages_seen = saved.len();
        let mut next_url = None;
        for page in &saved {
            let manifest: Manifest = serde_json::from_value(page.manifest.clone()).map_err(|_| ExportError::BadManifest)?;
            let page_url = Url::parse(&page.url).map_err(|_| ExportError::BadManifest)?;
            downloads.queue(&manifest, &page_url)?;
            next_url = next_page(&manifest, &page_url)?;
        }
        let mut url = match (saved.is_empty(), next_url) {
            (true, _) => status_url.clone(),
            (false, Some(next)) => next,
            (false, None) => return Ok(()),
        };
        let (mut attempt, mut transient) = (0u32, 0u32);
        loop {
            let response = match self.send(true, None, || self.http.get(url.clone()).header("Accept", "application/json")).await {
                Ok(response) => response,
                Err(ExportError::Http(problem)) => {
                    transient += 1;
                    if transient > options.max_transient {
                        return Err(ExportError::Http(problem));
                    }
                    attempt += 1;
                    tokio::time::sleep(options.poll.pause(None, attempt)).await;
                    continue;
                }
                Err(other) => return Err(other),
            };
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(|e| HttpError::Transport(http::describe(&e)))?;
            match status {
                StatusCode::ACCEPTED => {
                    transient = 0;
                    attempt += 1;
                    let progress = headers.get("x-progress").and_then(|v| v.to_str().ok()).map(|p| http::printable(p, 100));
                    (self.on_event)(&Event::Progress(progress));
                    if !body.is_empty()
                        && let Ok(partial) = serde_json::from_slice::<Manifest>(&body)
                    {
                        // A partial manifest: its files are ready now.
                        downloads.queue(&partial, &url)?;
                    }
                    tokio::time::sleep(options.poll.pause(Some(&headers), attempt)).await;
                }
                StatusCode::OK => {
                    transient = 0;
                    attempt = 0;
                    let page: Value = serde_json::from_slice(&body).map_err(|_| ExportError::BadManifest)?;
                    let manifest: Manifest = serde_json::from_value(page.clone()).map_err(|_| ExportError::BadManifest)?;
                    {
                        let mut state = state.lock().expect("state lock");
                        state.transaction_time = state.transaction_time.clone().or(manifest.transaction_time.clone());
                        state.requires_access_token = manifest.requires_access_token;
                        state.output_organized_by = manifest.output_organized_by.clone();
                        state.manifests.push(SavedPage { url: url.to_string(), manifest: page });
                        state.save(out)?;
                    }
                    pages_seen += 1;
                    downloads.queue(&manifest, &url)?;
                    match next_page(&manifest, &url)? {
                        Some(next) => url = next,
                        None => {
                            tracing::debug!(pages = pages_seen, "manifest complete");
                            return Ok(());
                        }
                    }
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    attempt += 1;
                    tokio::time::sleep(options.poll.pause(Some(&headers), attempt)).await;
                }
                StatusCode::NOT_FOUND | StatusCode::GONE => return Err(ExportError::JobGone(status)),
                _ => {
                    let outcome: Option<Value> = serde_json::from_slice(&body).ok();
                    let retryable = outcome.as_ref().map(is_transient).unwrap_or(status.is_server_error());
                    if retryable && transient < options.max_transient {
                        transient += 1;
                        attempt += 1;
                        tokio::time::sleep(options.poll.pause(Some(&headers), attempt)).await;
                        continue;
                    }
                    return Err(ExportError::JobFailed { status, issues: outcome.as_ref().map(outcome_issues).unwrap_or_default() });
                }
            }
        }
    }
}

/// The URL of the page after `manifest` (which came from `page_url`), checked like every
/// URL the token goes to.
fn next_page(manifest: &Manifest, page_url: &Url) -> Result<Option<Url>, ExportError> {
    let Some(next) = manifest.next() else { return Ok(None) };
    let url = page_url.join(next).map_err(|_| ExportError::BadManifest)?;
    http::check_scheme(&url).map_err(ExportError::Config)?;
    Ok(Some(url))
}

/// Files left half-written by an interrupted run.
fn remove_stale_parts(out: &Path) -> Result<(), ExportError> {
    for dir in [out.to_owned(), out.join("deleted"), out.join("error")] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".part") {
                std::fs::remove_file(entry.path()).map_err(io_error(&entry.path()))?;
            }
        }
    }
    Ok(())
}

fn summarise(out: &Path, state: &State) -> Result<ExportSummary, ExportError> {
    let mut summary = ExportSummary { transaction_time: state.transaction_time.clone(), ..ExportSummary::default() };
    for (_, file) in &state.files {
        summary.bytes += file.bytes;
        match file.kind {
            FileKind::Output => *summary.resources.entry(file.resource_type.clone().unwrap_or_else(|| "(organized)".to_owned())).or_default() += file.lines,
            FileKind::Deleted => summary.deleted_entries += file.lines,
            FileKind::Error => {
                let path = out.join(&file.path);
                let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    let outcome: Value = serde_json::from_str(line).unwrap_or(Value::Null);
                    for issue in outcome_issues(&outcome) {
                        *summary.outcome_issues.entry(issue).or_default() += 1;
                    }
                }
            }
        }
    }
    Ok(summary)
}

/// The download pool: files are queued as manifests arrive and fetched `parallel` at a
/// time.
struct Downloads {
    client: BulkClient,
    options: ExportOptions,
    out: PathBuf,
    state: Arc<Mutex<State>>,
    permits: Arc<tokio::sync::Semaphore>,
    tasks: Mutex<tokio::task::JoinSet<Result<(), String>>>,
    queued: Mutex<HashSet<String>>,
    downloaded: Arc<std::sync::atomic::AtomicUsize>,
    skipped: std::sync::atomic::AtomicUsize,
}

impl Downloads {
    fn new(client: BulkClient, options: &ExportOptions, out: &Path, state: Arc<Mutex<State>>) -> Self {
        Self {
            client,
            options: options.clone(),
            out: out.to_owned(),
            state,
            permits: Arc::new(tokio::sync::Semaphore::new(options.parallel.max(1))),
            tasks: Mutex::new(tokio::task::JoinSet::new()),
            queued: Mutex::new(HashSet::new()),
            downloaded: Arc::default(),
            skipped: Default::default(),
        }
    }

    /// Queues every file of `manifest` (which came from `page_url`) not queued before;
    /// files already complete (from an earlier run) are reported as skipped.
    fn queue(&self, manifest: &Manifest, page_url: &Url) -> Result<(), ExportError> {
        let sections = [(FileKind::Output, &manifest.output), (FileKind::Deleted, &manifest.deleted), (FileKind::Error, &manifest.error)];
        let mut new_files = Vec::new();
        {
            let mut state = self.state.lock().expect("state lock");
            for (kind, files) in sections {
                for file in files {
                    let url = page_url.join(&file.url).map_err(|_| ExportError::BadManifest)?;
                    http::check_scheme(&url).map_err(ExportError::Config)?;
                    let key = file_key(&url);
                    if !self.queued.lock().expect("queue lock").insert(key.clone()) {
                        continue;
                    }
                    if state.file_mut(&key).is_none() {
                        let path = file_name(&state, kind, file);
                        state.files.push((
                            key.clone(),
                            FileState { kind, resource_type: file.resource_type.clone(), path, count: file.count, done: false, lines: 0, bytes: 0 },
                        ));
                    }
                    // The token goes with a file only when the manifest says so; a manifest
                    // that does not say (it must) gets it only for files of the server's own origin.
                    let requires_token = manifest.requires_access_token.unwrap_or_else(|| url.origin() == self.options.base.origin());
                    new_files.push((key.clone(), url, requires_token, state.file_mut(&key).expect("just added").clone()));
                }
            }
            if !new_files.is_empty() {
                state.save(&self.out)?;
            }
        }
        for (key, url, requires_token, entry) in new_files {
            if entry.done && self.out.join(&entry.path).is_file() {
                self.skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (self.client.on_event)(&Event::FileSkipped { file: self.out.join(&entry.path) });
                continue;
            }
            let (client, permits, state, out, downloaded) =
                (self.client.clone(), self.permits.clone(), self.state.clone(), self.out.clone(), self.downloaded.clone());
            let retry = self.options.retry.clone();
            let organized = manifest.output_organized_by.is_some();
            let check = LineCheck {
                expected_type: if organized || entry.kind == FileKind::Error { None } else { entry.resource_type.clone() },
                max_line: self.options.max_line_bytes,
                count: if organized { None } else { entry.count },
            };
            self.tasks.lock().expect("task lock").spawn(async move {
                let _permit = permits.acquire_owned().await.expect("the semaphore is never closed");
                let target = out.join(&entry.path);
                // Complete on disk but not recorded (the run stopped between the two): checked again, not fetched again.
                let result = match verify_existing(&target, &check).await {
                    Some(done) => Ok(done),
                    None => client.download(&url, requires_token, &target, &check, &retry).await,
                };
                match result {
                    Ok((lines, bytes)) => {
                        let mut state = state.lock().expect("state lock");
                        let saved = state.file_mut(&key).expect("queued files are in the state");
                        (saved.done, saved.lines, saved.bytes) = (true, lines, bytes);
                        state.save(&out).map_err(|e| e.to_string())?;
                        drop(state);
                        downloaded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        (client.on_event)(&Event::FileDone { file: target, lines });
                        Ok(())
                    }
                    Err(problem) => Err(format!("{}: {problem}", entry.path)),
                }
            });
        }
        Ok(())
    }

    /// Waits for every queued download; returns the number of files and the failures.
    async fn finish(self) -> (usize, Vec<String>, (usize, usize)) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().expect("task lock"));
        let total = self.queued.lock().expect("queue lock").len();
        let mut failures = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(problem)) => failures.push(problem),
                Err(panic) => failures.push(format!("a download task failed: {panic}")),
            }
        }
        let counted = (self.downloaded.load(std::sync::atomic::Ordering::Relaxed), self.skipped.load(std::sync::atomic::Ordering::Relaxed));
        (total, failures, counted)
    }
}

/// `<Type>.<k>.ndjson` in manifest order; `deleted/` and `error/` for the other sections.
fn file_name(state: &State, kind: FileKind, file: &OutputFile) -> String {
    let stem = match kind {
        FileKind::Error => "OperationOutcome".to_owned(),
        _ => file.resource_type.as_deref().filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric())).unwrap_or("Mixed").to_owned(),
    };
    let folder = match kind {
        FileKind::Output => "",
        FileKind::Deleted => "deleted/",
        FileKind::Error => "error/",
    };
    let prefix = format!("{folder}{stem}.");
    let k = state.files.iter().filter(|(_, f)| f.path.starts_with(&prefix)).count() + 1;
    format!("{prefix}{k:03}.ndjson")
}

/// The checks of each downloaded line.
#[derive(Debug, Clone)]
struct LineCheck {
    expected_type: Option<String>,
    max_line: usize,
    /// The manifest's `count`, checked before the file is renamed into place.
    count: Option<u64>,
}

#[derive(Deserialize)]
struct LineHead {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
}

impl LineCheck {
    /// Checks one line (without its terminator); `Ok(true)` for a resource, `Ok(false)` for a blank line.
    fn line(&self, line: &[u8], number: u64) -> Result<bool, String> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.max_line {
            return Err(format!("line {number} is longer than {} bytes", self.max_line));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(false);
        }
        if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(format!("line {number} is not a JSON object"));
        }
        let head: LineHead = serde_json::from_slice(line).map_err(|_| format!("line {number} is not a JSON object"))?;
        let found = head.resource_type.ok_or_else(|| format!("line {number} has no resourceType"))?;
        if let Some(expected) = &self.expected_type
            && &found != expected
        {
            // The value is not repeated: a server's data could put anything there.
            return Err(format!("line {number} is of another resource type than the manifest's {expected}"));
        }
        Ok(true)
    }
}

impl BulkClient {
    /// Fetches one file to `target` (through `<target>.part`), checking each line; returns
    /// (resources, bytes). Retries transport errors, 429 and 5xx, from the start.
    async fn download(&self, url: &Url, requires_token: bool, target: &Path, check: &LineCheck, retry: &RetryPolicy) -> Result<(u64, u64), String> {
        let part = target.with_extension("ndjson.part");
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| e.to_string())?;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let response = self
                .send(requires_token, Some(retry), || self.http.get(url.clone()).header("Accept", "application/fhir+ndjson"))
                .await
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status()));
            }
            match self.stream_to(response, &part, check).await {
                Ok((lines, bytes)) => {
                    tokio::fs::rename(&part, target).await.map_err(|e| e.to_string())?;
                    return Ok((lines, bytes));
                }
                Err(StreamError::Content(problem)) => {
                    let _ = tokio::fs::remove_file(&part).await;
                    return Err(problem);
                }
                Err(StreamError::Transport(problem)) => {
                    let _ = tokio::fs::remove_file(&part).await;
                    if attempt >= retry.max_tries {
                        return Err(problem);
                    }
                    tokio::time::sleep(retry.pause(None, attempt)).await;
                }
            }
        }
    }

    async fn stream_to(&self, mut response: reqwest::Response, part: &Path, check: &LineCheck) -> Result<(u64, u64), StreamError> {
        let file = tokio::fs::File::create(part).await.map_err(|e| StreamError::Content(e.to_string()))?;
        // Network chunks are small; each tokio file write is a trip to the blocking pool.
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let (mut pending, mut lines, mut number, mut bytes) = (Vec::new(), 0u64, 0u64, 0u64);
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => return Err(StreamError::Transport(http::describe(&e))),
            };
            bytes += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(|e| StreamError::Content(e.to_string()))?;
            let mut rest: &[u8] = &chunk;
            while let Some(end) = rest.iter().position(|&b| b == b'\n') {
                number += 1;
                let counted = if pending.is_empty() {
                    check.line(&rest[..end], number)
                } else {
                    pending.extend_from_slice(&rest[..end]);
                    let result = check.line(&pending, number);
                    pending.clear();
                    result
                };
                lines += u64::from(counted.map_err(StreamError::Content)?);
                rest = &rest[end + 1..];
            }
            pending.extend_from_slice(rest);
            if pending.len() > check.max_line {
                return Err(StreamError::Content(format!("line {} is longer than {} bytes", number + 1, check.max_line)));
            }
        }
        if !pending.is_empty() {
            number += 1;
            lines += u64::from(check.line(&pending, number).map_err(StreamError::Content)?);
        }
        if let Some(count) = check.count
            && count != lines
        {
            return Err(StreamError::Content(format!("{lines} resources, the manifest says {count}")));
        }
        file.flush().await.map_err(|e| StreamError::Content(e.to_string()))?;
        file.get_ref().sync_all().await.map_err(|e| StreamError::Content(e.to_string()))?;
        Ok((lines, bytes))
    }
}

/// (lines, bytes) of a file already at `target` that passes every check, or `None`.
async fn verify_existing(target: &Path, check: &LineCheck) -> Option<(u64, u64)> {
    let (target, check) = (target.to_owned(), check.clone());
    tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(&target).ok()?;
        let mut lines = 0;
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            lines += u64::from(check.line(line, i as u64 + 1).ok()?);
        }
        if check.count.is_some_and(|count| count != lines) {
            return None;
        }
        Some((lines, bytes.len() as u64))
    })
    .await
    .ok()
    .flatten()
}

enum StreamError {
    /// The connection broke: try again.
    Transport(String),
    /// The content is wrong: trying again will not help.
    Content(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_query_and_post_parameters() {
        let params = ExportParams {
            types: vec!["Patient".into(), "Observation".into()],
            type_filters: vec!["Observation?category=laboratory,vital-signs".into(), "Observation?status=final".into()],
            since: Some("2026-01-01T00:00:00Z".into()),
            patients: vec!["Patient/p1".into()],
            allow_partial_manifests: true,
            ..Default::default()
        };
        let query = params.query();
        assert!(query.contains(&("_type", "Patient,Observation".to_owned())));
        assert_eq!(query.iter().filter(|(k, _)| *k == "_typeFilter").count(), 2);
        assert!(query.contains(&("allowPartialManifests", "true".to_owned())));
        let body = params.parameters();
        let names: Vec<&str> = body["parameter"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["_type", "_type", "_typeFilter", "_typeFilter", "_since", "patient", "allowPartialManifests"]);
        assert_eq!(body["parameter"][5]["valueReference"]["reference"], "Patient/p1");
        assert_eq!(body["parameter"][4]["valueInstant"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn lines_are_checked() {
        let check = LineCheck { expected_type: Some("Patient".into()), max_line: 100, count: None };
        assert_eq!(check.line(br#"{"resourceType":"Patient","id":"a"}"#, 1), Ok(true));
        assert_eq!(check.line(b"\r", 2), Ok(false));
        assert_eq!(check.line(br#"{"resourceType":"Observation"}"#, 3), Err("line 3 is of another resource type than the manifest's Patient".into()));
        let error = check.line(br#"{"resourceType":"Patient","name":"Jane Smith""#, 4).unwrap_err();
        assert_eq!(error, "line 4 is not a JSON object");
        let error = check.line(br#"{"resourceType":"9434765919"}"#, 5).unwrap_err();
        assert!(!error.contains("9434765919"), "{error}");
        assert_eq!(check.line(b"[1]", 6), Err("line 6 is not a JSON object".into()));
        assert_eq!(check.line(br#"["Patient"]"#, 7), Err("line 7 is not a JSON object".into()));
        let long = format!(r#"{{"resourceType":"Patient","text":"{}"}}"#, "x".repeat(100));
        assert_eq!(check.line(long.as_bytes(), 8), Err("line 8 is longer than 100 bytes".into()));
    }
}
