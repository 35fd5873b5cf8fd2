//! HTTP plumbing shared by the axum services: `/heart-beat`, `/metrics` (Prometheus text
//! format) and serving with graceful shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

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

/// `GET /heart-beat` (PIXL's liveness path: 200, or 503 naming what is unreachable) and
/// `GET /metrics`.
pub fn observability_routes(service: &'static str, health: Health) -> Router {
    let handle = metrics_handle();
    Router::new()
        .route(
            "/heart-beat",
            get(move || {
                let failing = health.failing();
                async move {
                    if failing.is_empty() {
                        (axum::http::StatusCode::OK, Json(serde_json::json!({"status": "ok", "service": service})))
                    } else {
                        let body = serde_json::json!({"status": "unhealthy", "service": service, "unreachable": failing});
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(body))
                    }
                }
            }),
        )
        .route("/metrics", get(move || async move { handle.render() }))
}

/// Requires `Authorization: Bearer <token>` on every route of `router` (compared in
/// constant time); anything else gets 401 with a JSON error body.
pub fn require_bearer(router: Router, token: secrecy::SecretString) -> Router {
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
