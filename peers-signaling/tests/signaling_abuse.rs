//! Cheap clients against the real `peers-signaling` binary: each abuse is
//! refused or contained, the server's memory stays bounded (read from
//! `/proc`), and a legitimate pair on another address keeps its service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::wire::{WireClient, metric};
use common::{keys, start_binary};
use peers_signaling::{SignalingClient, SignalingClientOptions};
use serde_json::json;

const ATTACKER: [u8; 4] = [127, 0, 0, 2];

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// Issue 13, finding 2 (connections): one address holds at most
/// `max_connections_per_address` TCP connections, counted from accept
/// whether or not they ever send a byte; another address still connects and
/// registers, and the address gets its connections back when it closes some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_fill_the_server_with_connections() {
    let (child, url) = start_binary(&["--memory", "true", "--bind", "127.0.0.1:0"]).await;
    let server = addr_of(&url);
    let source = IpAddr::from(ATTACKER);
    let default_cap = peers_signaling::ServerConfig::default().max_connections_per_address;
    let mut idle = Vec::new();
    for _ in 0..default_cap {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        idle.push(socket.connect(server).await.unwrap());
    }
    // Let the server accept them all before the next one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(WireClient::dial(server, source).await.is_err(), "one connection over the address's limit");
    let legit = SignalingClient::connect(&url, &keys("legit"), SignalingClientOptions::default()).await;
    assert!(legit.is_ok(), "another address connects and registers: {:?}", legit.err());
    idle.truncate(default_cap - 4);
    let reconnected = async {
        loop {
            if let Ok((mut client, challenge)) = WireClient::dial(server, source).await {
                let register = peers_signaling::protocol::answer_challenge(&keys("back"), &challenge, &url).unwrap();
                return client.request("register", serde_json::to_value(register).unwrap()).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let reply = tokio::time::timeout(Duration::from_secs(5), reconnected).await.expect("the address connects again");
    assert_eq!(reply["ok"], json!(true), "{reply}");
    drop(child);
}

/// Issue 12 item 6: every metric `docs/signaling.md` lists is on `/metrics`
/// from the start, and the gauges follow what happens: three registered
/// devices are three connections and three devices online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exist_from_the_start_and_count_registered_devices() {
    let (child, url) = start_binary(&["--memory", "true", "--bind", "127.0.0.1:0"]).await;
    let server = addr_of(&url);
    let (status, text) = common::http(server, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    for name in [
        "signaling_registrations_total",
        "signaling_registration_failures_total{code=\"bad_signature\"}",
        "signaling_replaced_total",
        "signaling_signals_total{outcome=\"delivered_from_queue\"}",
        "signaling_rejections_total{code=\"rate_limited\"}",
        "signaling_expired_total",
        "signaling_notices_dropped_total",
        "signaling_store_errors_total",
        "signaling_queue_messages",
        "signaling_queue_bytes",
        "signaling_notices_pending",
        "signaling_connections",
        "signaling_devices_online",
        "signaling_sessions",
        "signaling_relays_open",
        "signaling_session_events_total{event=\"join_failed\"}",
        "signaling_slow_clients_total{reason=\"stalled\"}",
    ] {
        assert!(text.lines().any(|line| line.starts_with(&format!("{name} 0"))), "{name} at zero in:\n{text}");
    }
    let mut clients = Vec::new();
    for n in 0..3 {
        clients.push(
            SignalingClient::connect(&url, &keys(&format!("metered-{n}")), SignalingClientOptions::default())
                .await
                .unwrap(),
        );
    }
    assert_eq!(metric(server, "signaling_devices_online").await, 3.0);
    assert_eq!(metric(server, "signaling_connections").await, 3.0);
    assert_eq!(metric(server, "signaling_registrations_total").await, 3.0);
    let gone = clients.pop().unwrap();
    gone.close().await;
    let mut online = 0.0;
    for _ in 0..50 {
        online = metric(server, "signaling_devices_online").await;
        if online == 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(online, 2.0, "a device that left is not online");
    drop(child);
}

/// Issue 13, finding 2 (queue): one address cannot fill the offline queue.
/// Each sending device and each address has a quota of queued messages
/// (`quota_exceeded`), a sender on another address keeps queueing, and a
/// delivered message gives its sender's quota back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_fill_the_offline_queue() {
    let per_sender = common::quota::PER_SENDER.to_string();
    let per_address = common::quota::PER_ADDRESS.to_string();
    let args = ["--memory", "true", "--bind", "127.0.0.1:0", "--queue-per-sender", &per_sender];
    let (child, url) = start_binary(&[&args[..], &["--queue-per-address", &per_address]].concat()).await;
    let server = addr_of(&url);
    common::quota::run(server, server).await;
    drop(child);
}

/// Issue 13, finding 2 (sessions): one address cannot fill the session
/// table. Its devices hold a few live sessions and create a few a minute;
/// closed sessions never count against the live cap; a device on another
/// address keeps creating.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_fill_the_session_table() {
    use common::quota::*;
    let values = [
        SESSION_CREATES_PER_DEVICE.to_string(),
        SESSION_CREATES_PER_ADDRESS.to_string(),
        SESSIONS_LIVE_PER_ADDRESS.to_string(),
        MAX_SESSIONS.to_string(),
    ];
    let args = [
        "--memory",
        "true",
        "--bind",
        "127.0.0.1:0",
        "--session-creates-per-minute-per-device",
        &values[0],
        "--session-creates-per-minute-per-ip",
        &values[1],
        "--session-per-address",
        &values[2],
        "--max-sessions",
        &values[3],
    ];
    let (child, url) = start_binary(&args).await;
    let server = addr_of(&url);
    common::quota::sessions(server, server).await;
    drop(child);
}

/// Issue 13, finding 2 (relays): two self-made keys cannot open every relay.
/// A device and an address are parties of a few relays at most; a pair on
/// another address still opens one; ended relays give the quota back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_open_every_relay() {
    use common::quota::*;
    let values = [RELAYS_PER_DEVICE.to_string(), RELAYS_PER_ADDRESS.to_string()];
    let args = [
        "--memory",
        "true",
        "--bind",
        "127.0.0.1:0",
        "--relay-per-device",
        &values[0],
        "--relay-per-address",
        &values[1],
    ];
    let (child, url) = start_binary(&args).await;
    let server = addr_of(&url);
    common::quota::relays(server, server).await;
    drop(child);
}

/// Issue 13, finding 2 (presence): subscriptions, to made-up ids too, are
/// bounded per connection (so per device) and per address; another address
/// keeps watching.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_watch_without_bound() {
    use common::quota::*;
    let values = [SUBSCRIPTIONS_PER_CONNECTION.to_string(), SUBSCRIPTIONS_PER_ADDRESS.to_string()];
    let args = [
        "--memory",
        "true",
        "--bind",
        "127.0.0.1:0",
        "--max-subscriptions",
        &values[0],
        "--max-subscriptions-per-address",
        &values[1],
    ];
    let (child, url) = start_binary(&args).await;
    let server = addr_of(&url);
    common::quota::subscriptions(server).await;
    drop(child);
}
