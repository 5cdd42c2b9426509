//! Two devices over a real socket.io server and client on loopback: handshake,
//! RPCs both ways, a 16 MiB message, 1,000 concurrent calls.

use std::time::Duration;

use peers_sdk::Connection;
use peers_sdk::conformance::connect_trusting;
use peers_sdk::rpc::RemoteError;
use peers_sdk::socket::{Locality, TransportKind};
use peers_transport_socketio::{ClientOptions, ServerOptions, SocketIoServer, connect};
use serde_bytes::ByteBuf;

/// Alice dials Bob's server; returns (server, Alice's connection, Bob's).
async fn two_devices() -> (SocketIoServer, Connection, Connection) {
    let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
    let url = server.url();
    let (dialed, accepted) = tokio::join!(connect(&url, ClientOptions::default()), server.accept());
    let (dialer, listener) = connect_trusting(Box::new(dialed.unwrap()), Box::new(accepted.unwrap())).await;
    (server, dialer, listener)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_and_rpcs_both_ways() {
    let (_server, alice, bob) = two_devices().await;
    assert_eq!(alice.remote().user_id, "bob");
    assert_eq!(bob.remote().user_id, "alice");
    for connection in [&alice, &bob] {
        let info = connection.socket_info();
        assert_eq!(info.transport, TransportKind::SocketIo);
        assert_eq!(info.locality, Locality::Loopback);
        assert!(info.peer_addr.as_deref().is_some_and(|addr| addr.starts_with("127.0.0.1:")), "{info:?}");
    }
    bob.expose_rpc("add", |(x, y): (i64, i64)| async move { Ok::<_, RemoteError>(x + y) });
    alice.expose_rpc("greet", |name: String| async move { Ok::<_, RemoteError>(format!("hello, {name}")) });
    assert_eq!(alice.emit::<_, i64>("add", &(2, 40)).await.unwrap(), 42);
    assert_eq!(bob.emit::<_, String>("greet", "bob").await.unwrap(), "hello, bob");
    let err = alice.emit::<_, ()>("missing", &()).await.unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

fn digest(data: &[u8]) -> (usize, u64) {
    (data.len(), data.iter().fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_16_mib_message_arrives_intact_both_ways() {
    let (_server, alice, bob) = two_devices().await;
    for side in [&alice, &bob] {
        side.expose_rpc("digest", |data: ByteBuf| async move { Ok::<_, RemoteError>(digest(&data)) });
    }
    // Incompressible, and full of 0x1e bytes (the separator rust_socketio splits at).
    let mut state = 0x1234_5678_u32;
    let data: Vec<u8> = (0..16 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    let data = ByteBuf::from(data);
    let timeout = Duration::from_secs(25);
    let at_bob: (usize, u64) = alice.emit_with_timeout("digest", &data, timeout).await.unwrap();
    assert_eq!(at_bob, digest(&data), "client → server message damaged");
    let at_alice: (usize, u64) = bob.emit_with_timeout("digest", &data, timeout).await.unwrap();
    assert_eq!(at_alice, digest(&data), "server → client message damaged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_rpcs_get_their_own_replies() {
    let (_server, alice, bob) = two_devices().await;
    bob.expose_rpc("square", |x: u64| async move { Ok::<_, RemoteError>(x * x) });
    alice.expose_rpc("negate", |x: i64| async move { Ok::<_, RemoteError>(-x) });
    let calls = (0..1000u64).map(|i| {
        let (alice, bob) = (alice.clone(), bob.clone());
        tokio::spawn(async move {
            let square: u64 = alice.emit("square", &i).await.unwrap();
            assert_eq!(square, i * i);
            if i % 10 == 0 {
                let negated: i64 = bob.emit("negate", &(i as i64)).await.unwrap();
                assert_eq!(negated, -(i as i64));
            }
        })
    });
    let calls: Vec<_> = calls.collect();
    for call in calls {
        call.await.unwrap();
    }
    assert_eq!(alice.pending_calls(), 0);
}
