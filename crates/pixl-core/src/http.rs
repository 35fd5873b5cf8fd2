//! HTTP plumbing shared by the axum services: `/heart-beat`, `/metrics` (Prometheus text
//! format) and serving with graceful shutdown.

use std::sync::OnceLock;

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

/// `GET /heart-beat` (PIXL's liveness path) and `GET /metrics`.
pub fn observability_routes(service: &'static str) -> Router {
    let handle = metrics_handle();
    Router::new()
        .route("/heart-beat", get(move || async move { Json(serde_json::json!({"status": "ok", "service": service})) }))
        .route("/metrics", get(move || async move { handle.render() }))
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
        let router = observability_routes("unit-test");
        let (status, body) = get_text(router.clone(), "/heart-beat").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, r#"{"service":"unit-test","status":"ok"}"#);

        metrics::counter!("pixl_unit_test_total").increment(3);
        let (status, body) = get_text(router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("pixl_unit_test_total 3"), "{body}");
    }

    #[tokio::test]
    async fn serve_stops_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, observability_routes("t"), shutdown.clone()));
        shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
    }
}
