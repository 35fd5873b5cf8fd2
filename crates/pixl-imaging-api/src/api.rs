//! REST: PIXL's `GET/POST /token-bucket-refresh-rate` (`{"rate": <items/s>}`, optionally
//! `"queue": "imaging-primary" | "imaging-secondary"`; without a queue a POST sets both and
//! a GET reports the primary's), plus `/heart-beat` and `/metrics`. Rate 0 pauses.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;

use crate::rate::TokenBucket;

/// The buckets of both queues.
#[derive(Debug, Clone)]
pub struct Buckets {
    pub primary: Arc<TokenBucket>,
    pub secondary: Arc<TokenBucket>,
}

#[derive(Deserialize)]
struct QueueQuery {
    queue: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateBody {
    rate: f64,
    queue: Option<String>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

impl Buckets {
    // The error is the handler's whole answer; boxing it would only move the allocation.
    #[allow(clippy::result_large_err)]
    fn select(&self, queue: Option<&str>) -> Result<Vec<(&'static str, &Arc<TokenBucket>)>, Response> {
        match queue {
            None => Ok(vec![("imaging-primary", &self.primary), ("imaging-secondary", &self.secondary)]),
            Some("imaging-primary") => Ok(vec![("imaging-primary", &self.primary)]),
            Some("imaging-secondary") => Ok(vec![("imaging-secondary", &self.secondary)]),
            Some(_) => Err(error(StatusCode::BAD_REQUEST, "queue must be imaging-primary or imaging-secondary")),
        }
    }
}

/// The rate of a queue (the primary's without `queue`).
#[utoipa::path(get, path = "/token-bucket-refresh-rate", tag = "retrieval",
    params(("queue" = Option<String>, Query, description = "imaging-primary or imaging-secondary")),
    responses((status = 200, description = "{\"queue\": ..., \"rate\": <studies per second>}"), (status = 400, description = "unknown queue")))]
async fn get_rate(State(buckets): State<Buckets>, Query(query): Query<QueueQuery>) -> Response {
    match buckets.select(query.queue.as_deref()) {
        Ok(selected) => {
            let (queue, bucket) = selected[0];
            Json(serde_json::json!({ "queue": queue, "rate": bucket.rate() })).into_response()
        }
        Err(response) => response,
    }
}

/// Sets the rate of a queue (both without `queue`); 0 pauses. Body `{"rate": <studies per
/// second>, "queue": "imaging-primary" | "imaging-secondary"}` (PIXL's endpoint).
#[utoipa::path(post, path = "/token-bucket-refresh-rate", tag = "retrieval",
    responses((status = 200, description = "{\"rate\": ..., \"queues\": [...]}"), (status = 400, description = "unknown queue"),
              (status = 422, description = "not a rate of 0 or more")))]
async fn set_rate(State(buckets): State<Buckets>, body: Result<Json<RateBody>, axum::extract::rejection::JsonRejection>) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "expected {\"rate\": <number of items per second>}");
    };
    if !body.rate.is_finite() || body.rate < 0.0 {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "rate must be a number of items per second, 0 or more (0 pauses)");
    }
    match buckets.select(body.queue.as_deref()) {
        Ok(selected) => {
            for (queue, bucket) in &selected {
                bucket.set_rate(body.rate);
                tracing::info!(queue, rate = body.rate, "rate changed");
            }
            Json(serde_json::json!({ "rate": body.rate, "queues": selected.iter().map(|(q, _)| *q).collect::<Vec<_>>() })).into_response()
        }
        Err(response) => response,
    }
}

/// The REST routes, documented at `/openapi.json`.
pub fn routes(buckets: Buckets, health: pixl_core::http::Health) -> Router {
    let api = utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(get_rate, set_rate))
        .with_state(buckets)
        .merge(pixl_core::http::observability("imaging-api", health));
    pixl_core::http::documented(api, "pixl imaging-api", "Retrieval from the hospital's archives: the rate of each imaging queue.")
}
