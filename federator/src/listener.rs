//! The self-metrics listener (`[metrics] listen`): `/metrics` in the Prometheus
//! text format, `/healthz` (200 while the process runs) and `/readyz` (200 once
//! migrated and scheduling with the database up, else 503).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use crate::telemetry::Telemetry;

/// The content type of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The listener's routes.
pub fn router(telemetry: Arc<Telemetry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(telemetry)
}

async fn metrics(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)], t.render())
}

async fn readyz(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    if t.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting, or the database is unavailable\n",
        )
    }
}

/// Binds `listen` and serves until `stop` turns true.
pub async fn serve(
    listen: &str,
    telemetry: Arc<Telemetry>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "self-metrics on /metrics, /healthz, /readyz");
    axum::serve(listener, router(telemetry))
        .with_graceful_shutdown(async move {
            let _stopped = stop.wait_for(|s| *s).await;
        })
        .await
}
