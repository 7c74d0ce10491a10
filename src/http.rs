//! HTTP endpoints: `/metrics` (Prometheus text), `/healthz`
//! (alive), `/readyz` (policy loaded, consent/erasure caught up, consumer
//! running). Serves only what it is given; never touches records.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::health::Health;
use crate::telemetry::Metrics;

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    health: Arc<Health>,
}

/// The router of the three endpoints.
pub fn router(metrics: Metrics, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(AppState { metrics, health })
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

/// 200 `ready`, or 503 with one line per problem (no record content).
async fn ready_handler(State(s): State<AppState>) -> impl IntoResponse {
    let problems = s.health.problems(crate::kafka::now_ms());
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        let mut body = String::from("not ready\n");
        for p in problems {
            body.push_str(p);
            body.push('\n');
        }
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

/// Serves the endpoints on an already bound listener until the process ends
/// (binding first lets `custos run` refuse to start on a port it cannot use).
///
/// # Errors
/// The server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    health: Arc<Health>,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, health)).await
}
