//! The admin server: `/healthz`, `/readyz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    ready: watch::Receiver<bool>,
}

/// Serves until the process ends. `ready` is what `/readyz` reports. Metrics and health may
/// share one address.
pub async fn serve(
    metrics: SocketAddr,
    health: SocketAddr,
    registry: Arc<Registry>,
    ready: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let state = AdminState { registry, ready };
    let metrics_app = Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(state.clone());
    let health_app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    // Dual-stack on `[::]`: kubelet probes the Pod's address, IPv6 on an IPv6-only cluster.
    let bind = |address: SocketAddr, flag: &'static str| {
        crate::dual_stack::tcp_listener(address)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{flag} {address}: {e}")))
    };
    if metrics == health {
        let listener = bind(metrics, "--metrics-bind-address")?;
        return axum::serve(listener, metrics_app.merge(health_app)).await;
    }
    let metrics_listener = bind(metrics, "--metrics-bind-address")?;
    let health_listener = bind(health, "--health-bind-address")?;
    tokio::try_join!(
        axum::serve(metrics_listener, metrics_app),
        axum::serve(health_listener, health_app)
    )?;
    Ok(())
}

async fn render_metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if *state.ready.borrow() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}
