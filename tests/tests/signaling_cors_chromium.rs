//! CORS in a real browser: a headless Chromium page served from one origin
//! (a small HTTP server in this test) connects with socket.io-client's
//! default transports (long-polling first) to a signaling server that allows
//! its origin, and is refused by one that does not (`tests/js/cors_chromium.mjs`).
//! Needs Node.js with `npm ci` in `tests/` and a Chromium binary
//! (`$CHROMIUM_PATH`, or `chromium` on `$PATH`).

use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use peers_signaling::{ServerConfig, SignalingServer};
use peers_tests::{JsClient, crate_dir};
use serde_json::json;

const PAGE: &str =
    "<!doctype html><html><head><script src=\"/socket.io.min.js\"></script></head><body>page</body></html>";

/// Serves the page and socket.io-client's browser bundle on a free loopback
/// port; returns the page's origin.
async fn page_server() -> String {
    let bundle = std::fs::read(crate_dir().join("node_modules/socket.io-client/dist/socket.io.min.js"))
        .expect("socket.io-client is installed (npm ci in tests/)");
    let app = Router::new().route("/", get(|| async { ([(header::CONTENT_TYPE, "text/html")], PAGE) })).route(
        "/socket.io.min.js",
        get(move || {
            let bundle = bundle.clone();
            async move { ([(header::CONTENT_TYPE, "text/javascript")], bundle) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_connects_only_where_its_origin_is_allowed() {
    let page = page_server().await;
    let mut allowing = ServerConfig::in_memory();
    allowing.cors_origins = vec![page.clone()];
    let allowing = SignalingServer::bind(allowing).await.unwrap();
    let default = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let (allowed_url, default_url) = (allowing.url().unwrap(), default.url().unwrap());
    let mut browser = JsClient::spawn("cors_chromium.mjs", &[&format!("{page}/"), &allowed_url, &default_url]);

    let step = Duration::from_secs(30);
    let allowed = browser.expect_event("result", step).await;
    assert_eq!(allowed["server"], json!(allowed_url));
    assert_eq!(allowed["ok"], json!(true), "the allowing server answers the page: {allowed}");
    let refused = browser.expect_event("result", step).await;
    assert_eq!(refused["server"], json!(default_url));
    assert_eq!(refused["ok"], json!(false), "the default server is refused by the browser: {refused}");
    assert_eq!(refused["error"], json!("xhr poll error"), "{refused}");
    browser.expect_event("finished", step).await;
}
