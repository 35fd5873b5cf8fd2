//! ehr-api's HTTP API: `POST /deidentify` for the hospital's other tools (what the
//! external de-identification API of the hospital's plan did), with `/heart-beat`,
//! `/metrics` and `/openapi.json`.
//!
//! `POST /deidentify` takes `{"text", "probes"?: {"first_names", "surnames",
//! "identifiers", "dates_of_birth", "phones", "postcodes"}}` (every probe list optional;
//! dates of birth as `YYYY-MM-DD`) and answers `{"text", "spans": [{"start", "end",
//! "category"}], "flags": [{"start", "end", "reason"}]}`: the text with `[CATEGORY]` tags,
//! the spans removed (character offsets in the original text), and what the second check
//! doubts in the result (character offsets in the answer's text). It needs the bearer
//! token `EHR_API_TOKEN`. Neither the text nor the probes reach a log line or an error.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The largest text accepted, in bytes (a long report is tens of kilobytes).
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// What is known of the patient the text is about. Every list may be absent.
#[derive(Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProbesBody {
    pub first_names: Vec<String>,
    pub surnames: Vec<String>,
    /// MRNs, NHS numbers, other identifiers.
    pub identifiers: Vec<String>,
    /// `YYYY-MM-DD`.
    pub dates_of_birth: Vec<String>,
    pub phones: Vec<String>,
    pub postcodes: Vec<String>,
}

impl std::fmt::Debug for ProbesBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbesBody").finish_non_exhaustive()
    }
}

impl From<ProbesBody> for pixl_text::Patient {
    fn from(body: ProbesBody) -> Self {
        Self {
            first_names: body.first_names,
            surnames: body.surnames,
            identifiers: body.identifiers,
            dates_of_birth: body.dates_of_birth,
            phones: body.phones,
            postcodes: body.postcodes,
        }
    }
}

/// The body of `POST /deidentify`. Its `Debug` shows no text.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeidentifyRequest {
    pub text: String,
    #[serde(default)]
    pub probes: Option<ProbesBody>,
}

/// A span of the original text that was replaced.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct SpanBody {
    /// Character offsets in the request's text.
    pub start: usize,
    pub end: usize,
    /// `NAME`, `DATE`, `ID`, `PHONE`, ...
    pub category: String,
}

/// A place of the answer's text that the second check doubts.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct FlagBody {
    /// Character offsets in the answer's text.
    pub start: usize,
    pub end: usize,
    pub reason: String,
}

/// The answer of `POST /deidentify`. Its `Debug` shows no text.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub struct DeidentifyResponse {
    /// The text with every span replaced by its `[CATEGORY]` tag.
    pub text: String,
    pub spans: Vec<SpanBody>,
    /// Empty when the second check finds nothing; otherwise a person should look.
    pub flags: Vec<FlagBody>,
}

impl std::fmt::Debug for DeidentifyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeidentifyRequest").field("text_bytes", &self.text.len()).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for DeidentifyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeidentifyResponse").field("spans", &self.spans).field("flags", &self.flags).finish_non_exhaustive()
    }
}

/// A request that failed. Names what is wrong, never a value of the request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid body: {0}")]
    Body(String),
    #[error("the text is {0} bytes, more than the {MAX_TEXT_BYTES} accepted")]
    TooLarge(usize),
    #[error("missing or wrong bearer token")]
    Unauthorized,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Body(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
        };
        (status, Json(pixl_core::rest::ErrorBody { error: self.to_string() })).into_response()
    }
}

/// The routes: `POST /deidentify` behind the token, and the open operational ones.
pub fn router(token: Option<SecretString>, health: pixl_core::http::Health) -> Router {
    let routes = utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(deidentify))
        .layer(middleware::from_fn_with_state(Arc::new(token), require_token));
    let api = routes.merge(pixl_core::http::observability("ehr-api", health));
    pixl_core::http::documented(api, "pixl ehr-api", "De-identification of free text (radiology reports, notes) with pixl-text, checked a second time.")
}

async fn require_token(State(token): State<Arc<Option<SecretString>>>, request: Request, next: Next) -> Result<Response, ApiError> {
    if let Some(expected) = token.as_ref()
        && !pixl_core::http::bearer_matches(request.headers(), expected)
    {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}

/// De-identifies one text, with what is known of its patient as probes, and checks the
/// result a second time.
#[utoipa::path(post, path = "/deidentify", tag = "text", security(("bearer" = [])),
    request_body = DeidentifyRequest,
    responses((status = 200, description = "the de-identified text, the spans removed and the second check's flags", body = DeidentifyResponse),
              (status = 400, description = "the body is not a de-identification request"),
              (status = 401, description = "missing or wrong bearer token"),
              (status = 413, description = "the text is too long")))]
#[tracing::instrument(skip_all)]
async fn deidentify(body: axum::body::Bytes) -> Result<Json<DeidentifyResponse>, ApiError> {
    let request: DeidentifyRequest = serde_json::from_slice(&body).map_err(|e| ApiError::Body(pixl_core::http::json_problem(&e)))?;
    if request.text.len() > MAX_TEXT_BYTES {
        return Err(ApiError::TooLarge(request.text.len()));
    }
    let patient: pixl_text::Patient = request.probes.unwrap_or_default().into();
    let response =
        tokio::task::spawn_blocking(move || answer(&request.text, &patient)).await.map_err(|_| ApiError::Body("the text could not be processed".to_owned()))?;
    metrics::counter!("pixl_ehr_api_texts_total").increment(1);
    Ok(Json(response))
}

/// What `POST /deidentify` answers for `text`.
pub fn answer(text: &str, patient: &pixl_text::Patient) -> DeidentifyResponse {
    let probes = pixl_text::Probes::new(patient);
    let detection = pixl_text::detect_with(text, Some(&probes));
    let masked = pixl_text::mask_tags(text, &detection.spans);
    let chars = |byte: usize| text[..byte].chars().count();
    let spans = detection.spans.iter().map(|s| SpanBody { start: chars(s.start), end: chars(s.end), category: s.category.as_str().to_owned() }).collect();
    let flags = crate::second_check(&masked, patient)
        .into_iter()
        .map(|(reason, start, end)| FlagBody { start: start as usize, end: end as usize, reason: reason.to_owned() })
        .collect();
    DeidentifyResponse { text: masked, spans, flags }
}
