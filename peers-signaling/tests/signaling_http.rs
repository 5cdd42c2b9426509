//! The server's HTTP surface beyond socket.io: who may read `/metrics`
//! (another address, a bearer token), CORS, and the receive page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{http, http_with, server};
use peers_sdk::DeviceKeys;
use peers_signaling::{ReceivePage, ServerConfig, SessionKind, SignalingClient, SignalingClientOptions};

const TOKEN: &str = "metrics-token-0123456789";

fn has_metrics(response: &str) -> bool {
    response.lines().any(|line| line.starts_with("signaling_connections "))
}

/// With a token, `/metrics` answers 401 (with `WWW-Authenticate: Bearer`)
/// to a request without it or with another, and the metrics to the right
/// one; `/healthz` stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_behind_a_bearer_token() {
    let mut config = ServerConfig::in_memory();
    config.metrics_token = Some(TOKEN.into());
    let server = server(config).await;
    let addr = server.local_addr().unwrap();
    let (status, response) = http(addr, "GET", "/metrics", "").await;
    assert_eq!(status, 401, "{response}");
    assert!(response.to_ascii_lowercase().contains("www-authenticate: bearer"), "{response}");
    assert!(!has_metrics(&response));
    for wrong in
        ["Authorization: Bearer metrics-token-0123456788", "Authorization: Basic bWV0cmljczp4", "Authorization: Bearer"]
    {
        let (status, response) = http_with(addr, "GET", "/metrics", &[wrong], "").await;
        assert_eq!(status, 401, "{wrong}: {response}");
    }
    let header = format!("Authorization: Bearer {TOKEN}");
    let (status, response) = http_with(addr, "GET", "/metrics", &[&header], "").await;
    assert_eq!(status, 200, "{response}");
    assert!(has_metrics(&response), "{response}");
    assert_eq!(http(addr, "GET", "/healthz", "").await.0, 200);
}

/// With `metrics_listen`, `/metrics` is served there (with the token when
/// one is set) and no longer on the signaling address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_their_own_address() {
    let mut config = ServerConfig::in_memory();
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let server = server(config.clone()).await;
    let (main, metrics) = (server.local_addr().unwrap(), server.metrics_addr().unwrap());
    assert_ne!(main.port(), metrics.port());
    assert_eq!(http(main, "GET", "/metrics", "").await.0, 404, "not on the signaling address");
    assert_eq!(http(main, "GET", "/healthz", "").await.0, 200);
    let (status, response) = http(metrics, "GET", "/metrics", "").await;
    assert_eq!(status, 200, "{response}");
    assert!(has_metrics(&response), "{response}");
    // Clients still connect on the signaling address.
    let _client = common::client(&server, &common::keys("metered")).await;
    server.shutdown().await;

    config.metrics_token = Some(TOKEN.into());
    let server = common::server(config).await;
    let metrics = server.metrics_addr().unwrap();
    assert_eq!(http(metrics, "GET", "/metrics", "").await.0, 401);
    let header = format!("Authorization: Bearer {TOKEN}");
    assert_eq!(http_with(metrics, "GET", "/metrics", &[&header], "").await.0, 200);
}

/// A weak token and an attached server with `metrics_listen` are refused
/// with the field's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_settings_are_checked() {
    let mut config = ServerConfig::in_memory();
    config.metrics_token = Some("short".into());
    let err = peers_signaling::SignalingServer::bind(config).await.unwrap_err();
    assert!(err.to_string().contains("metrics_token"), "{err}");
    let mut config = ServerConfig::in_memory();
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let (_layer, io) = socketioxide::SocketIo::builder().build_layer();
    let err = peers_signaling::SignalingServer::attach(&io, config).unwrap_err();
    assert!(err.to_string().contains("metrics_listen"), "{err}");
}

const PAGE: &str = "http://page.example:8080";

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

const HANDSHAKE: &str = "/socket.io/?EIO=4&transport=polling";

/// CORS: by default no CORS headers and no preflight answer; with an allowed
/// origin, its polling requests carry `Access-Control-Allow-Origin` and its
/// preflight is answered, while another origin gets neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_and_preflight_for_allowed_origins_only() {
    let closed = server(ServerConfig::in_memory()).await;
    let mut config = ServerConfig::in_memory();
    config.cors_origins = vec![format!("{PAGE}/")];
    let open = server(config).await;
    let origin = format!("Origin: {PAGE}");
    let preflight =
        [origin.as_str(), "Access-Control-Request-Method: POST", "Access-Control-Request-Headers: content-type"];

    // The engine.io handshake (the first request of socket.io-client's
    // default transports) from the page.
    let (status, response) = http_with(open.local_addr().unwrap(), "GET", HANDSHAKE, &[&origin], "").await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(header(&response, "access-control-allow-origin"), Some(PAGE), "{response}");
    let (status, response) = http_with(open.local_addr().unwrap(), "OPTIONS", HANDSHAKE, &preflight, "").await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(header(&response, "access-control-allow-origin"), Some(PAGE), "{response}");
    let methods = header(&response, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST") && methods.contains("GET"), "{response}");
    let headers = header(&response, "access-control-allow-headers").unwrap_or_default();
    assert!(headers.to_ascii_lowercase().contains("content-type"), "{response}");

    // Another origin: no CORS headers, so its browser refuses the answers.
    let stranger = ["Origin: http://evil.example", "Access-Control-Request-Method: POST"];
    let (_, response) = http_with(open.local_addr().unwrap(), "GET", HANDSHAKE, &stranger[..1], "").await;
    assert_eq!(header(&response, "access-control-allow-origin"), None, "{response}");
    let (_, response) = http_with(open.local_addr().unwrap(), "OPTIONS", HANDSHAKE, &stranger, "").await;
    assert_eq!(header(&response, "access-control-allow-origin"), None, "{response}");

    // The default server: none for anyone.
    let (_, response) = http_with(closed.local_addr().unwrap(), "GET", HANDSHAKE, &[&origin], "").await;
    assert_eq!(header(&response, "access-control-allow-origin"), None, "{response}");
    let (status, response) = http_with(closed.local_addr().unwrap(), "OPTIONS", HANDSHAKE, &preflight, "").await;
    assert_eq!(header(&response, "access-control-allow-origin"), None, "{response}");
    assert_ne!(status, 200, "{response}");
}

/// A CORS origin with a path, or of another scheme, is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_origins_are_checked() {
    for bad in ["http://page.example/app", "ftp://page.example", "page.example"] {
        let mut config = ServerConfig::in_memory();
        config.cors_origins = vec![bad.into()];
        let err = peers_signaling::SignalingServer::bind(config).await.unwrap_err();
        assert!(err.to_string().contains("cors_origins"), "{bad}: {err}");
    }
}

/// The receive page: off by default (404, and no `receive_page` in a session's
/// reply); with a bundle, its three files at `/receive/` with their types and
/// headers, `/receive` redirected, nothing else of the directory, and a `pake`
/// session's creator told where the page is (a `secret` one is not). A bundle
/// with a file missing is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receive_page_is_served_only_when_configured_and_named_to_pake_creators() {
    let off = server(ServerConfig::in_memory()).await;
    assert_eq!(http(off.local_addr().unwrap(), "GET", "/receive/", "").await.0, 404);
    let url = off.url().unwrap();
    let client = SignalingClient::connect(&url, &DeviceKeys::generate("s").unwrap(), SignalingClientOptions::default())
        .await
        .unwrap();
    assert_eq!(client.create_session_of(SessionKind::Pake, None).await.unwrap().receive_page, None);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<!doctype html><title>receive</title>").unwrap();
    std::fs::write(dir.path().join("receive.js"), "export {};").unwrap();
    assert!(ReceivePage::load(dir.path()).is_err(), "a bundle without its WebAssembly is refused");
    std::fs::write(dir.path().join("brotli_wasm_bg.wasm"), b"\0asm").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "not served").unwrap();
    let mut config = ServerConfig::in_memory();
    config.receive_page = Some(ReceivePage::load(dir.path()).unwrap());
    let on = server(config).await;
    let addr = on.local_addr().unwrap();
    let (status, page) = http(addr, "GET", "/receive/", "").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.ends_with("<title>receive</title>"), "{page}");
    assert_eq!(header(&page, "content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(header(&page, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&page, "referrer-policy"), Some("no-referrer"));
    let csp = header(&page, "content-security-policy").expect("a content security policy");
    let directive = |name: &str| -> Vec<&str> {
        let found = csp.split(';').map(|d| d.split_whitespace().collect::<Vec<_>>()).find(|d| d.first() == Some(&name));
        found.unwrap_or_default()
    };
    assert_eq!(directive("script-src"), ["script-src", "'self'", "'wasm-unsafe-eval'"], "no inline script: {csp}");
    assert_eq!(directive("default-src"), ["default-src", "'none'"], "{csp}");
    assert_eq!(directive("frame-ancestors"), ["frame-ancestors", "'none'"], "{csp}");
    let (status, script) = http(addr, "GET", "/receive/receive.js", "").await;
    assert_eq!((status, header(&script, "content-type")), (200, Some("text/javascript; charset=utf-8")));
    let (status, wasm) = http(addr, "GET", "/receive/brotli_wasm_bg.wasm", "").await;
    assert_eq!((status, header(&wasm, "content-type")), (200, Some("application/wasm")));
    let (status, moved) = http(addr, "GET", "/receive", "").await;
    assert_eq!((status, header(&moved, "location")), (308, Some("/receive/")));
    for other in ["/receive/secret.txt", "/receive/../Cargo.toml", "/receive/index.html", "/receive/x/receive.js"] {
        assert_eq!(http(addr, "GET", other, "").await.0, 404, "{other}");
    }

    let client = SignalingClient::connect(
        &on.url().unwrap(),
        &DeviceKeys::generate("s").unwrap(),
        SignalingClientOptions::default(),
    )
    .await
    .unwrap();
    let pake = client.create_session_of(SessionKind::Pake, None).await.unwrap();
    assert_eq!(pake.receive_page.as_deref(), Some(peers_signaling::RECEIVE_PAGE_PATH));
    let secret = client.create_session_of(SessionKind::Secret, None).await.unwrap();
    assert_eq!(secret.receive_page, None, "the page receives pake codes only");
}
