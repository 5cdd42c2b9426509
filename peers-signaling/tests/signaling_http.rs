//! The server's HTTP surface beyond socket.io: who may read `/metrics`
//! (another address, a bearer token).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{http, http_with, server};
use peers_signaling::ServerConfig;

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
