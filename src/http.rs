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
    let ready = s.health.problems(crate::kafka::now_ms()).is_empty();
    s.metrics.ready.set(i64::from(ready));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }

    #[test]
    fn readiness_is_a_metric_too() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (metrics, health) = (Metrics::new(), Arc::new(Health::default()));
        let h = health.clone();
        std::thread::spawn(move || rt.block_on(serve(listener, metrics, h)));
        assert!(get(addr, "/readyz").starts_with("HTTP/1.1 503"));
        assert!(get(addr, "/metrics").contains("\ncustos_ready 0\n"));
        health.set_started();
        assert!(get(addr, "/readyz").starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/metrics").contains("\ncustos_ready 1\n"));
    }
}
