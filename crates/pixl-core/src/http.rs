//! HTTP plumbing shared by the axum services: `/heart-beat`, `/metrics` (Prometheus text
//! format) and serving with graceful shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::{Json, Router, routing::get};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use. If another recorder is
/// already installed (two services in one test process) the handle still renders ours.
pub fn metrics_handle() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if a global recorder exists already; metrics then go there.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

type Check = Arc<dyn Fn() -> bool + Send + Sync>;

/// What `/heart-beat` checks: the service answers 503 while any check fails (the broker
/// or the database is unreachable), so that an orchestrator sees a process that is up but
/// cannot work.
#[derive(Clone, Default)]
pub struct Health {
    checks: Arc<Mutex<Vec<(&'static str, Check)>>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.checks.lock().expect("health").iter().map(|(name, _)| *name).collect();
        f.debug_struct("Health").field("checks", &names).finish()
    }
}

impl Health {
    pub fn add(&self, name: &'static str, check: impl Fn() -> bool + Send + Sync + 'static) {
        self.checks.lock().expect("health").push((name, Arc::new(check)));
    }

    /// RabbitMQ: healthy while the broker's connection is up.
    pub fn watch_broker(&self, broker: &crate::queues::Broker) {
        let broker = broker.clone();
        self.add("rabbitmq", move || broker.is_connected());
    }

    /// Postgres: pinged every second until `shutdown`.
    pub fn watch_database(&self, pool: &sqlx::PgPool, shutdown: CancellationToken) {
        let up = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&up);
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let ping = tokio::time::timeout(Duration::from_secs(2), sqlx::query("SELECT 1").execute(&pool)).await;
                let reachable = matches!(ping, Ok(Ok(_)));
                if flag.swap(reachable, Ordering::Relaxed) != reachable {
                    if reachable {
                        tracing::info!("Postgres is reachable again");
                    } else {
                        tracing::warn!("Postgres is unreachable");
                    }
                }
            }
        });
        self.add("postgres", move || up.load(Ordering::Relaxed));
    }

    /// The names of the failing checks.
    pub fn failing(&self) -> Vec<&'static str> {
        self.checks.lock().expect("health").iter().filter(|(_, check)| !check()).map(|(name, _)| *name).collect()
    }
}

/// A service's routes, each registered with its OpenAPI description (`routes!(handler)`
/// of a handler annotated `#[utoipa::path]`), so `/openapi.json` cannot miss one.
pub type ApiRouter = utoipa_axum::router::OpenApiRouter;

#[derive(Clone)]
struct Observability {
    service: &'static str,
    health: Health,
    metrics: PrometheusHandle,
}

/// Liveness and readiness (PIXL's path): 200 when the service can work, 503 naming what
/// it cannot reach (RabbitMQ, Postgres).
#[utoipa::path(get, path = "/heart-beat", tag = "operations",
    responses((status = 200, description = "the service can work"), (status = 503, description = "the service cannot reach the servers it names")))]
async fn heart_beat(State(observability): State<Observability>) -> axum::response::Response {
    let failing = observability.health.failing();
    let service = observability.service;
    if failing.is_empty() {
        (axum::http::StatusCode::OK, Json(serde_json::json!({"status": "ok", "service": service}))).into_response()
    } else {
        let body = serde_json::json!({"status": "unhealthy", "service": service, "unreachable": failing});
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// Prometheus metrics, in text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics_text(State(observability): State<Observability>) -> String {
    observability.metrics.render()
}

/// `GET /heart-beat` and `GET /metrics`, documented.
pub fn observability(service: &'static str, health: Health) -> ApiRouter {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(heart_beat)).routes(utoipa_axum::routes!(metrics_text)).with_state(Observability {
        service,
        health,
        metrics: metrics_handle(),
    })
}

/// `GET /heart-beat` (PIXL's liveness path: 200, or 503 naming what is unreachable) and
/// `GET /metrics`, as a plain router (tests, services without an API of their own).
pub fn observability_routes(service: &'static str, health: Health) -> Router {
    documented(observability(service, health), service, "")
}

/// The finished router: `routes` plus `GET /openapi.json`, the OpenAPI 3.1 document of
/// every route, with the bearer scheme that protected routes name.
pub fn documented(routes: ApiRouter, title: &str, description: &str) -> Router {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    use utoipa::openapi::{HttpMethod, PathItem, ResponseBuilder, path::OperationBuilder};
    let (router, mut api) = routes.split_for_parts();
    api.info.title = title.to_owned();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api.info.description = (!description.is_empty()).then(|| description.to_owned());
    api.info.license = None;
    let components = api.components.get_or_insert_with(Default::default);
    components.security_schemes.insert("bearer".to_owned(), SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    let operation = OperationBuilder::new()
        .summary(Some("This document"))
        .tag("operations")
        .response("200", ResponseBuilder::new().description("the OpenAPI 3.1 document of this service"))
        .build();
    api.paths.paths.insert("/openapi.json".to_owned(), PathItem::new(HttpMethod::Get, operation));
    let document = Arc::new(api.to_json().expect("an OpenAPI document serializes"));
    router.route(
        "/openapi.json",
        get(move || {
            let document = Arc::clone(&document);
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], document.as_str().to_owned()) }
        }),
    )
}

/// Requires `Authorization: Bearer <token>` on every route of `router` (compared in
/// constant time); anything else gets 401 with a JSON error body.
pub fn require_bearer(router: ApiRouter, token: secrecy::SecretString) -> ApiRouter {
    let token = std::sync::Arc::new(token);
    router.layer(axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
        let token = std::sync::Arc::clone(&token);
        async move {
            if bearer_matches(request.headers(), &token) {
                next.run(request).await
            } else {
                let body = Json(serde_json::json!({"error": "missing or wrong bearer token"}));
                (axum::http::StatusCode::UNAUTHORIZED, [(axum::http::header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
            }
        }
    }))
}

/// Whether the request's bearer token equals `expected`, in constant time.
pub fn bearer_matches(headers: &axum::http::HeaderMap, expected: &secrecy::SecretString) -> bool {
    use secrecy::ExposeSecret;
    use subtle::ConstantTimeEq;
    let given = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
    bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes()))
}

/// What is wrong with a JSON request body, and where, without its values (serde's own
/// messages quote them, and a body may carry an identifier).
pub fn json_problem(error: &serde_json::Error) -> String {
    let kind = match error.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "wrong field or type",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{kind} at line {} column {}", error.line(), error.column())
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets in-flight
/// requests finish.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    async fn get_text(router: Router, path: &str) -> (StatusCode, String) {
        let response = router.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn heart_beat_and_metrics_answer() {
        let router = observability_routes("unit-test", Health::default());
        let (status, document) = get_text(router.clone(), "/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        for path in ["/heart-beat", "/metrics", "/openapi.json"] {
            assert!(document.contains(&format!("\"{path}\"")), "{path} documented: {document}");
        }
        let (status, body) = get_text(router.clone(), "/heart-beat").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, r#"{"service":"unit-test","status":"ok"}"#);

        metrics::counter!("pixl_unit_test_total").increment(3);
        let (status, body) = get_text(router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("pixl_unit_test_total 3"), "{body}");
    }

    #[tokio::test]
    async fn heart_beat_names_what_is_unreachable() {
        let health = Health::default();
        let up = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&up);
        health.add("rabbitmq", move || flag.load(Ordering::Relaxed));
        let router = observability_routes("unit-test", health);
        assert_eq!(get_text(router.clone(), "/heart-beat").await.0, StatusCode::OK);
        up.store(false, Ordering::Relaxed);
        let (status, body) = get_text(router, "/heart-beat").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains(r#""unreachable":["rabbitmq"]"#), "{body}");
    }

    #[tokio::test]
    async fn serve_stops_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, observability_routes("t", Health::default()), shutdown.clone()));
        shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
    }
}
