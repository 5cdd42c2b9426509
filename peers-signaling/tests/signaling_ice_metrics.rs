//! ICE configuration with coturn REST credentials, and the HTTP endpoints
//! `/healthz` and `/metrics`.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use peers_signaling::ice::turn_credentials;
use peers_signaling::{Outcome, ServerConfig, SignalKind, SignalingServer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn http_get(server: &SignalingServer, path: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr().unwrap()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(PROMPT, tcp.read_to_string(&mut response)).await.unwrap().unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The value of a Prometheus sample line that starts with `series`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_config_hands_out_stun_and_time_limited_turn_credentials() {
    let mut config = ServerConfig::in_memory();
    config.ice.stun_urls = vec!["stun:127.0.0.1:3478".into()];
    config.ice.turn_urls = vec!["turn:127.0.0.1:3478?transport=udp".into()];
    config.ice.turn_secret = Some("shared-secret".into());
    config.ice.credential_ttl = Duration::from_secs(600);
    let server = server(config).await;
    let alice_keys = keys("alice");
    let alice = client(&server, &alice_keys).await;
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let ice = alice.ice_config().await.unwrap();
    assert_eq!(ice.ice_servers.len(), 2);
    assert_eq!(ice.ice_servers[0].urls, ["stun:127.0.0.1:3478"]);
    assert!(ice.ice_servers[0].username.is_none());
    let turn = &ice.ice_servers[1];
    let expiry = ice.expires_at.unwrap();
    assert!((before + 600..=before + 602).contains(&expiry), "expiry {expiry}, now {before}");
    assert_eq!(turn.username.as_deref(), Some(format!("{expiry}:{}", alice_keys.device_id()).as_str()));
    let (_, expected) = turn_credentials(b"shared-secret", &alice_keys.device_id(), expiry);
    assert_eq!(turn.credential.as_deref(), Some(expected.as_str()));

    // A server without ICE settings hands out an empty list.
    let bare = server_default().await;
    let bob = client(&bare, &keys("bob")).await;
    assert!(bob.ice_config().await.unwrap().ice_servers.is_empty());
}

async fn server_default() -> SignalingServer {
    server(ServerConfig::in_memory()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics_report_what_happened() {
    let server = server_default().await;
    let (status, body) = http_get(&server, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    let (_, before) = http_get(&server, "/metrics").await;
    let alice = client(&server, &keys("alice")).await;
    let bob = client(&server, &keys("bob")).await;
    assert_eq!(alice.send(bob.device_id(), SignalKind::Ready, json!({})).await.unwrap().outcome, Outcome::Delivered);
    let refused = alice.send(alice.device_id(), SignalKind::Ready, json!({})).await.unwrap();
    assert!(matches!(refused.outcome, Outcome::Rejected { .. }));
    let queued = alice.send(&keys("carol").device_id(), SignalKind::Ready, json!({})).await.unwrap();
    assert!(matches!(queued.outcome, Outcome::Queued { .. }));

    let (status, after) = http_get(&server, "/metrics").await;
    assert_eq!(status, 200);
    // Other tests in this process may add to the counters too: compare growth.
    let grew = |series: &str, by: f64| {
        let (was, is) = (sample(&before, series), sample(&after, series));
        assert!(is - was >= by, "{series}: {was} → {is}\n{after}");
    };
    grew("signaling_registrations_total", 2.0);
    grew("signaling_signals_total{outcome=\"delivered\"}", 1.0);
    grew("signaling_signals_total{outcome=\"queued\"}", 1.0);
    grew("signaling_rejections_total{code=\"self_addressed\"}", 1.0);
    assert!(after.contains("signaling_queue_messages"), "{after}");
    assert!(after.contains("signaling_connections"), "{after}");
}
