//! A local HTTPS fake of the UCL ARC TRE API calls export-api makes (the TRE API is a
//! hosted service and cannot run here). It checks the shape of each request as the API
//! documents it and refuses anything else with 400, so a change in what export-api sends
//! fails the tests:
//!
//! - `GET /v0/tokens/info` with `Authorization: Bearer <token>`: 200 for the right token,
//!   401 otherwise.
//! - `POST /v0/airlock/upload/<file name>` with the file as the raw body (not multipart):
//!   the file goes into quarantine. A `.zip` whose name is a DICOM UID must hold only
//!   DICOM instances of that StudyInstanceUID.
//! - `PUT /v0/airlock/flush`: every file in quarantine moves to the project's storage.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use pixl_core::testing::tls::{TestPki, serve_https};

#[derive(Debug, Default)]
pub struct TreState {
    token: String,
    /// Files uploaded and not yet flushed: name → bytes.
    pub quarantine: Mutex<BTreeMap<String, Vec<u8>>>,
    /// Files flushed into the project's storage: name → DICOM instances in the zip.
    pub storage: Mutex<BTreeMap<String, usize>>,
    /// Entry names of flushed zips that are not studies (an extract's parquet files).
    pub parquet_entries: Mutex<BTreeMap<String, Vec<String>>>,
    pub token_checks: Mutex<usize>,
    pub flushes: Mutex<usize>,
    /// Why requests were refused.
    pub refusals: Mutex<Vec<String>>,
}

pub struct FakeTre {
    pub address: SocketAddr,
    pub pki: TestPki,
    pub state: Arc<TreState>,
    handle: axum_server::Handle<SocketAddr>,
}

impl Drop for FakeTre {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

impl FakeTre {
    pub fn start(token: &str) -> Self {
        let state = Arc::new(TreState { token: token.to_owned(), ..Default::default() });
        let router = Router::new()
            .route("/v0/tokens/info", get(token_info))
            .route("/v0/airlock/upload/{name}", post(upload))
            .route("/v0/airlock/flush", put(flush))
            .fallback(|| async { (StatusCode::BAD_REQUEST, "the fake does not implement this call") })
            .with_state(Arc::clone(&state));
        let pki = TestPki::new();
        let (address, handle) = serve_https(router, &pki);
        Self { address, pki, state, handle }
    }

    /// The base URL export-api takes as `TRE_API_URL`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/v0", self.address.port())
    }
}

fn refuse(state: &TreState, status: StatusCode, why: String) -> Response {
    state.refusals.lock().unwrap().push(why.clone());
    (status, axum::Json(serde_json::json!({ "detail": why }))).into_response()
}

fn authorised(state: &TreState, headers: &HeaderMap) -> bool {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(format!("Bearer {}", state.token).as_str())
}

async fn token_info(State(state): State<Arc<TreState>>, headers: HeaderMap) -> Response {
    *state.token_checks.lock().unwrap() += 1;
    if !authorised(&state, &headers) {
        return refuse(&state, StatusCode::UNAUTHORIZED, "invalid token".to_owned());
    }
    (StatusCode::OK, axum::Json(serde_json::json!({ "project": "test", "expires": "2099-01-01T00:00:00Z" }))).into_response()
}

async fn upload(State(state): State<Arc<TreState>>, Path(name): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorised(&state, &headers) {
        return refuse(&state, StatusCode::UNAUTHORIZED, "invalid token".to_owned());
    }
    if headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("multipart/")) {
        return refuse(&state, StatusCode::BAD_REQUEST, "the file must be the raw body, not multipart".to_owned());
    }
    if body.is_empty() || name.contains('/') || !name.ends_with(".zip") {
        return refuse(&state, StatusCode::BAD_REQUEST, format!("bad upload {name:?} ({} bytes)", body.len()));
    }
    state.quarantine.lock().unwrap().insert(name, body.to_vec());
    (StatusCode::OK, axum::Json(serde_json::json!({ "status": "uploaded" }))).into_response()
}

async fn flush(State(state): State<Arc<TreState>>, headers: HeaderMap) -> Response {
    if !authorised(&state, &headers) {
        return refuse(&state, StatusCode::UNAUTHORIZED, "invalid token".to_owned());
    }
    *state.flushes.lock().unwrap() += 1;
    let files = std::mem::take(&mut *state.quarantine.lock().unwrap());
    for (name, bytes) in files {
        let stem = name.trim_end_matches(".zip");
        let is_study = stem.chars().all(|c| c.is_ascii_digit() || c == '.');
        let instances = if is_study {
            match crate::export::fake_xnat::check_zip(&bytes, stem) {
                Ok(n) => n,
                Err(why) => return refuse(&state, StatusCode::BAD_REQUEST, format!("{name}: {why}")),
            }
        } else {
            let entries = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).map_err(|e| e.to_string()).and_then(|mut archive| {
                (0..archive.len())
                    .map(|i| archive.by_index(i).and_then(|entry| entry.name().map(|name| name.into_owned())).map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()
            });
            match entries {
                Ok(mut entries) => {
                    entries.sort();
                    state.parquet_entries.lock().unwrap().insert(name.clone(), entries);
                }
                Err(e) => return refuse(&state, StatusCode::BAD_REQUEST, format!("{name}: not a zip: {e}")),
            }
            0
        };
        state.storage.lock().unwrap().insert(name, instances);
    }
    (StatusCode::OK, axum::Json(serde_json::json!({ "status": "flushed" }))).into_response()
}
