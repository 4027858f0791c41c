//! The operator's HTTP endpoints, for the kubelet's probes and for
//! Prometheus:
//!
//! - `/healthz` answers 200 for as long as the process serves requests;
//! - `/readyz` answers 503 until the operator is initialised, then 200;
//! - `/metrics` is [`Metrics::render`] as OpenMetrics text.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::controller::metrics::Metrics;

/// The content type Prometheus asks for and `Metrics::render` writes.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the handlers read. Clones share the same metrics and readiness.
#[derive(Debug, Clone)]
pub struct ServerState {
    pub metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

impl ServerState {
    /// A state that reports not ready until [`ServerState::set_ready`].
    pub fn new(metrics: Arc<Metrics>) -> ServerState {
        ServerState {
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Marks the process as initialised: `/readyz` answers 200 from now on.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// The routes, without a listener; tests call it directly.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves [`router`] on `addr` until `shutdown` is cancelled, then stops
/// accepting connections and lets requests in flight finish.
///
/// Fails only if the address cannot be bound or the listener breaks.
pub async fn serve(
    addr: SocketAddr,
    state: ServerState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<ServerState>) -> (StatusCode, &'static str) {
    if state.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics(State(state): State<ServerState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(state: &ServerState, path: &str) -> (StatusCode, Option<String>, String) {
        let request = Request::get(path)
            .body(Body::empty())
            .expect("a valid request");
        let response = router(state.clone())
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| value.to_str().expect("an ASCII header").to_owned());
        let body = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a readable body");
        let body = String::from_utf8(body.to_vec()).expect("a UTF-8 body");
        (status, content_type, body)
    }

    fn state() -> ServerState {
        ServerState::new(Arc::new(Metrics::new()))
    }

    #[tokio::test]
    async fn healthz_answers_before_and_after_readiness() {
        let state = state();
        assert_eq!(get(&state, "/healthz").await.0, StatusCode::OK);
        state.set_ready();
        let (status, _, body) = get(&state, "/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    }

    #[tokio::test]
    async fn readyz_is_unavailable_until_set_ready() {
        let state = state();
        let (status, _, body) = get(&state, "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
        );

        state.set_ready();
        let (status, _, body) = get(&state, "/readyz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_text() {
        let state = state();
        state.metrics.set_leader(true);
        state.metrics.set_current_revision("shop", "orders", "42");

        let (status, content_type, body) = get(&state, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some(OPENMETRICS_CONTENT_TYPE));
        assert!(body.lines().any(|l| l == "schemaop_leader 1"), "{body}");
        assert!(
            body.lines().any(|l| l
                == "schemaop_current_revision_info{namespace=\"shop\",name=\"orders\",revision=\"42\"} 1"),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[tokio::test]
    async fn unknown_paths_are_not_found() {
        assert_eq!(get(&state(), "/").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn serve_stops_when_cancelled() {
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(
            "127.0.0.1:0".parse().expect("an address"),
            state(),
            shutdown.clone(),
        ));
        shutdown.cancel();
        let result = tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("the server stops within 5s")
            .expect("the server task does not panic");
        assert!(result.is_ok(), "{result:?}");
    }
}
