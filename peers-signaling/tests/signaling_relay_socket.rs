//! The frame relay as a `Socket`: the peers-sdk conformance suite on both
//! sides (including a Connection handshake and RPCs through it), and the
//! relay's caps and failure cases.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use peers_sdk::{BoxSocket, CloseCode, Socket, SocketState};
use peers_signaling::{Error, ErrorCode, RelaySocket, ServerConfig, SignalingClient, SignalingServer};
use serde_json::json;

async fn relay_pair_on(
    config: ServerConfig,
) -> (RelaySocket, RelaySocket, SignalingServer, SignalingClient, SignalingClient) {
    let server = server(config).await;
    let a = client(&server, &keys("a")).await;
    let b = client(&server, &keys("b")).await;
    let (sa, sb) = tokio::join!(a.open_relay(b.device_id(), PROMPT), b.open_relay(a.device_id(), PROMPT));
    (sa.unwrap(), sb.unwrap(), server, a, b)
}

async fn pair() -> (BoxSocket, BoxSocket) {
    let (sa, sb, server, a, b) = relay_pair_on(ServerConfig::in_memory()).await;
    held_pair(Arc::new(sa), Arc::new(sb), (server, a, b))
}

peers_sdk::socket_conformance_tests!(pair);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_needs_both_devices_to_ask() {
    let server = server(ServerConfig::in_memory()).await;
    let a = client(&server, &keys("a")).await;
    let b = client(&server, &keys("b")).await;
    let err = a.open_relay(b.device_id(), Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    // Relaying to yourself is refused.
    match a.open_relay(a.device_id(), PROMPT).await.unwrap_err() {
        Error::Refused { rejection, .. } => assert_eq!(rejection.code, ErrorCode::SelfAddressed),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_cap_closes_both_ends() {
    let mut config = ServerConfig::in_memory();
    config.relay.max_bytes = 100_000;
    let (sa, sb, _server, _a, _b) = relay_pair_on(config).await;
    let frame = Bytes::from(vec![7u8; 30_000]);
    for _ in 0..3 {
        sa.send(frame.clone()).await.unwrap();
        assert_eq!(tokio::time::timeout(PROMPT, sb.recv()).await.unwrap().unwrap(), frame);
    }
    sa.send(frame.clone()).await.unwrap(); // 120,000 bytes: over the cap
    for side in [&sa, &sb] {
        let reason = tokio::time::timeout(PROMPT, side.closed()).await.expect("relay closed");
        assert_eq!(reason.code, CloseCode::LimitExceeded, "{reason}");
        assert!(reason.message.contains("100000 bytes"), "{reason}");
    }
    assert!(sb.recv().await.is_err(), "the frame over the cap was not forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_cap_and_the_relay_cap_hold() {
    let mut config = ServerConfig::in_memory();
    // Long enough for the second pair's attempt below to fall inside the
    // first relay's life even on a loaded machine.
    config.relay.max_duration = Duration::from_millis(1500);
    config.relay.max_relays = 1;
    let server = server(config).await;
    let (a, b) = (client(&server, &keys("a")).await, client(&server, &keys("b")).await);
    let (c, d) = (client(&server, &keys("c")).await, client(&server, &keys("d")).await);
    let (sa, sb) = tokio::join!(a.open_relay(b.device_id(), PROMPT), b.open_relay(a.device_id(), PROMPT));
    let (sa, sb) = (sa.unwrap(), sb.unwrap());
    // A second pair cannot open a relay while the first is open.
    let c_waits = c.open_relay(d.device_id(), PROMPT);
    let d_asks = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        d.open_relay(c.device_id(), PROMPT).await
    };
    let (_, refused) = tokio::join!(tokio::time::timeout(Duration::from_millis(300), c_waits), d_asks);
    match refused.unwrap_err() {
        Error::Refused { rejection, .. } => assert_eq!(rejection.code, ErrorCode::TooManyRelays),
        other => panic!("{other:?}"),
    }
    for side in [&sa, &sb] {
        let reason = tokio::time::timeout(PROMPT, side.closed()).await.expect("relay closed at its time cap");
        assert_eq!(reason.code, CloseCode::LimitExceeded);
        assert!(reason.message.contains("time limit"), "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_going_offline_closes_the_relay_and_strangers_cannot_inject() {
    let (sa, sb, server, a, _b) = relay_pair_on(ServerConfig::in_memory()).await;
    // A registered stranger sends a frame on relay ids it does not belong to.
    let mut raw = RawClient::connect(&server.url().unwrap()).await;
    raw.register(&keys("stranger")).await;
    for relay in 0..4 {
        raw.emit("relay-frame", vec![json!({"relay": relay, "data": "AAAA"})]).await;
    }
    sa.send(Bytes::from_static(b"real")).await.unwrap();
    assert_eq!(tokio::time::timeout(PROMPT, sb.recv()).await.unwrap().unwrap(), Bytes::from_static(b"real"));
    // Device a leaves: b's end closes with a transport failure.
    a.close().await;
    let reason = tokio::time::timeout(PROMPT, sb.closed()).await.expect("relay closed");
    assert_eq!(reason.code, CloseCode::TransportFailure, "{reason}");
    assert!(sa.send(Bytes::from_static(b"late")).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_faster_than_the_servers_rate_is_slowed_not_closed() {
    // 4 requests/s with a burst of 8: 64 units/s and 128 at once, where a
    // 16 KiB frame costs 2 units. 150 frames (2.3 MiB, 300 units) sent as fast
    // as the credit allows would go over it within the first second.
    let mut config = ServerConfig::in_memory();
    config.rate_limits.device_per_second = 4;
    config.rate_limits.device_burst = 8;
    let (sa, sb, _server, _a, _b) = relay_pair_on(config).await;
    let frames = 150u8;
    let reader = tokio::spawn(async move {
        for n in 0..frames {
            let frame =
                tokio::time::timeout(Duration::from_secs(30), sb.recv()).await.expect("in time").expect("frame");
            assert_eq!((frame.len(), frame[0]), (16 * 1024, n), "frames arrive whole and in order");
        }
        sb
    });
    for n in 0..frames {
        sa.send(Bytes::from(vec![n; 16 * 1024])).await.expect("the relay stays open");
    }
    let sb = reader.await.unwrap();
    assert_eq!((sa.state(), sb.state()), (SocketState::Open, SocketState::Open));
}
