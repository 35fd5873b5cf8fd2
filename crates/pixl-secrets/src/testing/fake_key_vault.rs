//! A local HTTPS fake of the parts of Azure that the Key Vault secret store uses: the
//! Entra ID client-credentials token endpoint and Key Vault's get/set secret REST calls,
//! including the 401 challenge a Key Vault answers to an unauthenticated request.
//!
//! It is a fake, not Azure: it checks the request shapes the SDK must send (client id and
//! secret, bearer token, api-version) and keeps secrets in memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};

use pixl_core::testing::tls::TestPki;

const TOKEN: &str = "fake-access-token";

/// What the fake saw and holds.
#[derive(Debug, Default)]
pub struct FakeState {
    pub secrets: Mutex<HashMap<String, String>>,
    pub token_requests: AtomicUsize,
    pub secret_gets: AtomicUsize,
    pub secret_sets: AtomicUsize,
    /// When set, every Key Vault call answers 503, as an unavailable vault does.
    pub unavailable: AtomicBool,
    tenant: String,
    client_id: String,
    client_secret: String,
}

/// A running fake.
#[derive(Debug)]
pub struct FakeKeyVault {
    pub address: SocketAddr,
    pub pki: TestPki,
    pub state: Arc<FakeState>,
    handle: axum_server::Handle<SocketAddr>,
}

impl FakeKeyVault {
    /// Starts on 127.0.0.1 (random port), accepting `client_id`/`client_secret` of
    /// `tenant`.
    pub async fn start(tenant: &str, client_id: &str, client_secret: &str) -> Self {
        let pki = TestPki::new();
        let state =
            Arc::new(FakeState { tenant: tenant.to_owned(), client_id: client_id.to_owned(), client_secret: client_secret.to_owned(), ..Default::default() });
        let router = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/secrets/{name}", get(get_secret).put(set_secret))
            // The SDK asks for the latest version as `/secrets/{name}/` (an empty version).
            .route("/secrets/{name}/", get(get_secret))
            .fallback(|| async { (StatusCode::BAD_REQUEST, "the fake does not implement this call") })
            .with_state(state.clone());

        let (address, handle) = pixl_core::testing::tls::serve_https(router, &pki);
        Self { address, pki, state, handle }
    }

    /// `https://127.0.0.1:<port>`: both the vault URL and the authority host.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.address.port())
    }

    /// Stops answering at all (connection refused), as an unreachable vault.
    pub fn stop(&self) {
        self.handle.shutdown();
    }
}

async fn token(State(state): State<Arc<FakeState>>, Path(tenant): Path<String>, Form(form): Form<HashMap<String, String>>) -> Response {
    state.token_requests.fetch_add(1, Ordering::SeqCst);
    let field = |name: &str| form.get(name).map(String::as_str);
    let valid = tenant == state.tenant
        && field("grant_type") == Some("client_credentials")
        && field("client_id") == Some(state.client_id.as_str())
        && field("client_secret") == Some(state.client_secret.as_str())
        && field("scope").is_some_and(|scope| scope.ends_with("/.default"));
    if !valid {
        let body = serde_json::json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    Json(serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": TOKEN})).into_response()
}

/// Key Vault's answer to a call without a valid token.
fn challenge(state: &FakeState, headers: &HeaderMap) -> Option<Response> {
    let authorized = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"));
    if authorized {
        return None;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
    let www = format!(r#"Bearer authorization="https://{host}/{}", resource="https://vault.azure.net""#, state.tenant);
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, www)],
            Json(serde_json::json!({"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}})),
        )
            .into_response(),
    )
}

fn check_api_version(query: &HashMap<String, String>) -> Option<Response> {
    if query.get("api-version").is_some_and(|v| !v.is_empty()) {
        None
    } else {
        Some((StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": {"code": "MissingApiVersionParameter"}}))).into_response())
    }
}

fn unavailable(state: &FakeState) -> Option<Response> {
    state
        .unavailable
        .load(Ordering::SeqCst)
        .then(|| (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"error": {"code": "ServiceUnavailable"}}))).into_response())
}

fn bundle(host: &str, name: &str, value: &str) -> serde_json::Value {
    serde_json::json!({
        "value": value,
        "id": format!("https://{host}/secrets/{name}/0123456789abcdef0123456789abcdef"),
        "attributes": {"enabled": true, "created": 1_700_000_000, "updated": 1_700_000_000, "recoveryLevel": "Recoverable+Purgeable"}
    })
}

async fn get_secret(
    State(state): State<Arc<FakeState>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = check_api_version(&query).or_else(|| challenge(&state, &headers)).or_else(|| unavailable(&state)) {
        return response;
    }
    state.secret_gets.fetch_add(1, Ordering::SeqCst);
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1").to_owned();
    match state.secrets.lock().expect("lock").get(&name) {
        Some(value) => Json(bundle(&host, &name, value)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(
                serde_json::json!({"error": {"code": "SecretNotFound", "message": format!("A secret with (name/id) {name} was not found in this key vault.")}}),
            ),
        )
            .into_response(),
    }
}

async fn set_secret(
    State(state): State<Arc<FakeState>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // Key Vault clients send the first request without a body, to receive the challenge.
    if let Some(response) = check_api_version(&query).or_else(|| challenge(&state, &headers)).or_else(|| unavailable(&state)) {
        return response;
    }
    let json_content = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    let body: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(body) if json_content => body,
        _ => {
            return (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": {"code": "BadParameter", "message": "a JSON body is required"}})))
                .into_response();
        }
    };
    let Some(value) = body.get("value").and_then(|v| v.as_str()) else {
        return (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": {"code": "BadParameter", "message": "value is required"}}))).into_response();
    };
    state.secret_sets.fetch_add(1, Ordering::SeqCst);
    state.secrets.lock().expect("lock").insert(name.clone(), value.to_owned());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1").to_owned();
    Json(bundle(&host, &name, value)).into_response()
}
