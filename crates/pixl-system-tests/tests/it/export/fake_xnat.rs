//! A local HTTPS fake of the two XNAT REST calls export-api makes. It is a fake, not XNAT
//! (XNAT is a Java web application with its own database and cannot run here); it checks
//! the shape of each request the way XNAT's import service reads it and refuses anything
//! else with 400, so a change in what export-api sends fails the tests:
//!
//! - `POST /data/services/import?import-handler=DICOM-zip&project=&subject=&session=
//!   &overwrite=&dest=` with basic authentication and an `application/zip` body whose every
//!   entry is a DICOM instance of StudyInstanceUID = `session`. A session that exists is
//!   refused (409) when `overwrite=none`, as XNAT does.
//! - `GET /data/projects/{project}/subjects/{subject}/experiments/{session}?format=json`:
//!   200 if the session was imported, else 404.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use pixl_core::testing::tls::{TestPki, serve_https};

/// What the fake saw.
#[derive(Debug, Default)]
pub struct XnatState {
    user: String,
    password: String,
    /// (project, subject, session) → instances imported.
    pub sessions: Mutex<BTreeMap<(String, String, String), usize>>,
    /// Every accepted import's query parameters.
    pub imports: Mutex<Vec<BTreeMap<String, String>>>,
    /// Why requests were refused.
    pub refusals: Mutex<Vec<String>>,
}

pub struct FakeXnat {
    pub address: SocketAddr,
    pub pki: TestPki,
    pub state: Arc<XnatState>,
    handle: axum_server::Handle<SocketAddr>,
}

impl Drop for FakeXnat {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

impl FakeXnat {
    pub fn start(user: &str, password: &str) -> Self {
        let state = Arc::new(XnatState { user: user.to_owned(), password: password.to_owned(), ..Default::default() });
        let router = Router::new()
            .route("/data/services/import", post(import))
            .route("/data/projects/{project}/subjects/{subject}/experiments/{session}", get(experiment))
            .fallback(|| async { (StatusCode::BAD_REQUEST, "the fake does not implement this call") })
            .with_state(Arc::clone(&state));
        let pki = TestPki::new();
        let (address, handle) = serve_https(router, &pki);
        Self { address, pki, state, handle }
    }
}

fn authorised(state: &XnatState, headers: &HeaderMap) -> bool {
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", state.user, state.password)));
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

fn refuse(state: &XnatState, status: StatusCode, why: String) -> Response {
    state.refusals.lock().unwrap().push(why.clone());
    (status, why).into_response()
}

async fn import(State(state): State<Arc<XnatState>>, Query(query): Query<HashMap<String, String>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorised(&state, &headers) {
        return refuse(&state, StatusCode::UNAUTHORIZED, "no valid basic authentication".to_owned());
    }
    let keys: BTreeSet<&str> = query.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = ["import-handler", "project", "subject", "session", "overwrite", "dest"].into();
    if keys != expected {
        return refuse(&state, StatusCode::BAD_REQUEST, format!("query parameters {keys:?}, expected {expected:?}"));
    }
    if query["import-handler"] != "DICOM-zip" {
        return refuse(&state, StatusCode::BAD_REQUEST, "import-handler must be DICOM-zip".to_owned());
    }
    if !["none", "append", "delete"].contains(&query["overwrite"].as_str()) || !["/archive", "/prearchive"].contains(&query["dest"].as_str()) {
        return refuse(&state, StatusCode::BAD_REQUEST, "bad overwrite or dest".to_owned());
    }
    if headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) != Some("application/zip") {
        return refuse(&state, StatusCode::BAD_REQUEST, "the body must be application/zip".to_owned());
    }
    let session = query["session"].clone();
    let instances = match check_zip(&body, &session) {
        Ok(instances) => instances,
        Err(why) => return refuse(&state, StatusCode::BAD_REQUEST, why),
    };
    let key = (query["project"].clone(), query["subject"].clone(), session);
    let mut sessions = state.sessions.lock().unwrap();
    if sessions.contains_key(&key) && query["overwrite"] == "none" {
        drop(sessions);
        return refuse(&state, StatusCode::CONFLICT, "session already exists and overwrite is none".to_owned());
    }
    sessions.insert(key.clone(), instances);
    state.imports.lock().unwrap().push(query.into_iter().collect());
    (StatusCode::OK, format!("/data/archive/projects/{}/subjects/{}/experiments/{}", key.0, key.1, key.2)).into_response()
}

/// Every entry must be a DICOM instance of `session` (a StudyInstanceUID); the count.
pub fn check_zip(body: &[u8], session: &str) -> Result<usize, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(body)).map_err(|e| format!("not a zip: {e}"))?;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(|e| e.to_string())?;
        if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
            return Err(format!("entry {index} is not a DICOM file"));
        }
        let object = dicom_object::from_reader(std::io::Cursor::new(&bytes[128..])).map_err(|e| e.to_string())?;
        let uid = object.element(dicom_dictionary_std::tags::STUDY_INSTANCE_UID).map_err(|e| e.to_string())?.to_str().map_err(|e| e.to_string())?;
        if uid.trim_end_matches('\0') != session {
            return Err(format!("entry {index} belongs to another study than the session"));
        }
    }
    if archive.is_empty() {
        return Err("empty zip".to_owned());
    }
    Ok(archive.len())
}

async fn experiment(State(state): State<Arc<XnatState>>, Path((project, subject, session)): Path<(String, String, String)>, headers: HeaderMap) -> Response {
    if !authorised(&state, &headers) {
        return refuse(&state, StatusCode::UNAUTHORIZED, "no valid basic authentication".to_owned());
    }
    if state.sessions.lock().unwrap().contains_key(&(project, subject, session.clone())) {
        (StatusCode::OK, axum::Json(serde_json::json!({ "items": [{ "data_fields": { "label": session } }] }))).into_response()
    } else {
        (StatusCode::NOT_FOUND, "no such experiment").into_response()
    }
}
