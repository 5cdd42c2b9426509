//! `/healthz` and `/metrics`.
//!
//! The `metrics` crate has one recorder per process. The first server
//! installs a Prometheus recorder; later servers in the same process share
//! it. If the application installed a recorder of its own first, `/metrics`
//! answers 503 and the application exports the metrics its own way.
//!
//! `/metrics` is served on the server's own address, or, with
//! [`ServerConfig::metrics_listen`](super::ServerConfig::metrics_listen), only
//! on that other address. With
//! [`ServerConfig::metrics_token`](super::ServerConfig::metrics_token) it
//! answers only requests with `Authorization: Bearer <token>` (401 otherwise),
//! wherever it is served.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sha2::{Digest, Sha256};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::info;

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// A configured CORS origin as browsers send it in `Origin`
/// (`scheme://host` plus the port when it is not the scheme's default), or
/// `*`.
pub(super) fn cors_origin(origin: &str) -> Result<String, String> {
    if origin == "*" {
        return Ok(origin.to_owned());
    }
    let url = url::Url::parse(origin).map_err(|err| format!("{origin:?} is not an origin: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.path() != "/" || url.query().is_some() {
        return Err(format!("{origin:?} is not an origin (http or https, a host, no path)"));
    }
    Ok(url.origin().ascii_serialization())
}

/// The CORS layer for `origins` (none when the list is empty): it answers
/// preflights and adds `Access-Control-Allow-Origin` for the listed origins.
pub(super) fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        let values = origins.iter().filter_map(|o| cors_origin(o).ok()).filter_map(|o| HeaderValue::from_str(&o).ok());
        AllowOrigin::list(values)
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([header::CONTENT_TYPE])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

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

/// `/healthz` alone.
pub(super) fn health() -> Router {
    Router::new().route("/healthz", get(|| async { "ok" }))
}

/// `/metrics`, behind `token` when there is one.
pub(super) fn metrics(token: Option<&str>) -> Router {
    let routes = Router::new().route(
        "/metrics",
        get(|| async {
            match RECORDER.get().and_then(Option::as_ref) {
                Some(handle) => (StatusCode::OK, handle.render()),
                None => (StatusCode::SERVICE_UNAVAILABLE, "metrics are exported elsewhere\n".to_owned()),
            }
        }),
    );
    match token {
        Some(token) => {
            let expected: Arc<[u8]> = Arc::from(Sha256::digest(token.as_bytes()).as_slice());
            routes.layer(axum::middleware::from_fn_with_state(expected, bearer))
        }
        None => routes,
    }
}

/// Lets a request through only with the bearer token (whose SHA-256 is
/// `expected`; comparing digests takes the same time whatever the token).
async fn bearer(State(expected): State<Arc<[u8]>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| Sha256::digest(token.as_bytes()));
    if presented.is_some_and(|digest| digest.as_slice() == &*expected) {
        return next.run(request).await;
    }
    let mut refused = (StatusCode::UNAUTHORIZED, "a bearer token is required\n").into_response();
    refused.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"metrics\""));
    refused
}
