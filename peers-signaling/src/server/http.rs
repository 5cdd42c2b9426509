//! `/healthz` and `/metrics`.
//!
//! The `metrics` crate has one recorder per process. The first server
//! installs a Prometheus recorder; later servers in the same process share
//! it. If the application installed a recorder of its own first, `/metrics`
//! answers 503 and the application exports the metrics its own way.

use std::sync::OnceLock;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::info;

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's Prometheus recorder, once.
pub(super) fn install_recorder() {
    RECORDER.get_or_init(|| match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => Some(handle),
        Err(err) => {
            info!(%err, "a metrics recorder is already installed; /metrics will not serve");
            None
        }
    });
}

pub(super) fn routes() -> Router {
    Router::new().route("/healthz", get(|| async { "ok" })).route(
        "/metrics",
        get(|| async {
            match RECORDER.get().and_then(Option::as_ref) {
                Some(handle) => (StatusCode::OK, handle.render()),
                None => (StatusCode::SERVICE_UNAVAILABLE, "metrics are exported elsewhere\n".to_owned()),
            }
        }),
    )
}
