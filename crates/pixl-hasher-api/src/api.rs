//! HTTP routes and the one place errors become status codes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use pixl_core::hashing::{HashError, MAX_LENGTH, MIN_LENGTH};
use pixl_core::ids::ProjectSlug;
use pixl_secrets::SecretError;
use secrecy::SecretString;
use serde::Deserialize;

use crate::keys::{KeyError, KeyRing};

/// Largest batch accepted by `POST /hash`.
pub const MAX_BATCH: usize = 10_000;

/// A request that failed, with the status it maps to. Messages name parameters, never
/// their values.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing parameter: {0}")]
    Missing(&'static str),
    #[error("invalid parameter {name}: {problem}")]
    Invalid { name: &'static str, problem: String },
    #[error("batch of {0} messages is larger than {MAX_BATCH}")]
    BatchTooLarge(usize),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error(transparent)]
    Keys(#[from] KeyError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Missing(_) | Self::Invalid { .. } | Self::BatchTooLarge(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Keys(KeyError::UnknownProject(_)) => StatusCode::NOT_FOUND,
            Self::Keys(KeyError::Hash(HashError::BadLength(_) | HashError::EmptyMessage)) => StatusCode::BAD_REQUEST,
            Self::Keys(KeyError::Keys(pixl_secrets::pseudonym_keys::KeyError::Store(SecretError::Unavailable { .. }))) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Keys(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, "hash request failed");
        }
        let mut response = (status, Json(serde_json::json!({"error": self.to_string()}))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

pub fn router(keys: Arc<KeyRing>, token: Option<SecretString>) -> Router {
    let hash_routes = utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(hash_one, hash_batch))
        .with_state(keys)
        .layer(middleware::from_fn_with_state(Arc::new(token), require_token));
    let api = hash_routes.merge(pixl_core::http::observability("hasher-api", pixl_core::http::Health::default()));
    pixl_core::http::documented(api, "pixl hasher-api", "Keyed pseudonyms per project. Messages are identifiers: prefer POST, which keeps them out of URLs.")
}

async fn require_token(State(token): State<Arc<Option<SecretString>>>, request: Request, next: Next) -> Result<Response, ApiError> {
    if let Some(expected) = token.as_ref()
        && !pixl_core::http::bearer_matches(request.headers(), expected)
    {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}

fn parse_project(value: Option<&str>) -> Result<ProjectSlug, ApiError> {
    let value = value.filter(|v| !v.is_empty()).ok_or(ApiError::Missing("project_slug"))?;
    ProjectSlug::parse(value).map_err(|e| ApiError::Invalid { name: "project_slug", problem: e.to_string() })
}

fn check_length(length: usize) -> Result<usize, ApiError> {
    if (MIN_LENGTH..=MAX_LENGTH).contains(&length) {
        Ok(length)
    } else {
        Err(ApiError::Invalid { name: "length", problem: format!("must be from {MIN_LENGTH} to {MAX_LENGTH}") })
    }
}

/// PIXL's `GET /hash?project_slug=&message=&length=`: the digest as plain text.
#[utoipa::path(get, path = "/hash", tag = "pseudonyms", security(("bearer" = [])),
    params(("project_slug" = String, Query), ("message" = String, Query, description = "the identifier (prefer POST)"),
           ("length" = Option<usize>, Query, description = "hex characters, 2 to 64 (default 64)")),
    responses((status = 200, description = "the hex digest", content_type = "text/plain"), (status = 400, description = "a parameter is missing or invalid"),
              (status = 401, description = "missing or wrong bearer token"), (status = 404, description = "unknown project"),
              (status = 503, description = "the secret store is unavailable; retry later")))]
#[tracing::instrument(skip_all)]
async fn hash_one(State(keys): State<Arc<KeyRing>>, Query(query): Query<HashMap<String, String>>) -> Result<String, ApiError> {
    let project = parse_project(query.get("project_slug").map(String::as_str))?;
    let message = query.get("message").ok_or(ApiError::Missing("message"))?;
    if message.is_empty() {
        return Err(ApiError::Invalid { name: "message", problem: "is empty".to_owned() });
    }
    let length = match query.get("length") {
        None => MAX_LENGTH,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| ApiError::Invalid { name: "length", problem: format!("must be a whole number from {MIN_LENGTH} to {MAX_LENGTH}") })?,
    };
    let length = check_length(length)?;
    let keys = keys.project(&project).await?;
    metrics::counter!("pixl_hasher_hashes_total").increment(1);
    Ok(keys.hash(message, length).map_err(KeyError::from)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    project_slug: Option<String>,
    messages: Option<Vec<String>>,
    length: Option<usize>,
}

/// `POST /hash` with `{"project_slug", "messages": [...], "length"}`: `{"hashes": [...]}`
/// in the same order.
#[utoipa::path(post, path = "/hash", tag = "pseudonyms", security(("bearer" = [])),
    responses((status = 200, description = "{\"hashes\": [...]} in request order"), (status = 400, description = "a field is missing or invalid"),
              (status = 401, description = "missing or wrong bearer token"), (status = 404, description = "unknown project"),
              (status = 503, description = "the secret store is unavailable; retry later")))]
#[tracing::instrument(skip_all)]
async fn hash_batch(State(keys): State<Arc<KeyRing>>, body: axum::body::Bytes) -> Result<Json<serde_json::Value>, ApiError> {
    let request: BatchRequest = serde_json::from_slice(&body).map_err(|e| ApiError::Invalid {
        name: "body",
        // serde_json names the position and the expected shape, not the values.
        problem: format!("not a batch request ({})", pixl_core::http::json_problem(&e)),
    })?;
    let project = parse_project(request.project_slug.as_deref())?;
    let messages = request.messages.ok_or(ApiError::Missing("messages"))?;
    if messages.len() > MAX_BATCH {
        return Err(ApiError::BatchTooLarge(messages.len()));
    }
    if let Some(index) = messages.iter().position(String::is_empty) {
        return Err(ApiError::Invalid { name: "messages", problem: format!("message {index} is empty") });
    }
    let length = check_length(request.length.unwrap_or(MAX_LENGTH))?;
    let keys = keys.project(&project).await?;
    let hashes = messages.iter().map(|m| keys.hash(m, length)).collect::<Result<Vec<_>, _>>().map_err(KeyError::from)?;
    metrics::counter!("pixl_hasher_hashes_total").increment(hashes.len() as u64);
    Ok(Json(serde_json::json!({"hashes": hashes})))
}
