//! Faults on the wire, through a TCP proxy between two devices: the transport
//! drops mid-stream (pending calls fail at once and the manager dials again),
//! the path goes silent after a network change (the manager's probe closes the
//! connection and dials again), and a byte is flipped in transit (the
//! connection closes with an integrity error and the corrupted message is
//! never delivered).

use std::sync::Arc;
use std::time::{Duration, Instant};

use peers_device::transports::{SocketIoDialer, SocketIoListener};
use peers_device::{ConnectionManager, ManagerConfig};
use peers_sdk::rpc::RemoteError;
use peers_sdk::{CloseCode, Connection, ConnectionConfig, DeviceId, DeviceInfo, DeviceKeys, TrustLevel};
use peers_tests::proxy::Proxy;
use peers_transport_socketio::{ClientOptions, ServerOptions, SocketIoServer, connect};
use serde_bytes::ByteBuf;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);

fn config(name: &str) -> ConnectionConfig {
    let keys = Arc::new(DeviceKeys::generate(name).unwrap());
    ConnectionConfig::new(keys, |_: &DeviceInfo| TrustLevel::Trusted)
}

/// `server`'s URL with the proxy's address in place of the server's.
fn through(proxy: &Proxy, server: &SocketIoServer) -> String {
    server.url().replace(&server.local_addr().to_string(), &proxy.addr().to_string())
}

/// Device a keeps device b connected over socket.io through a proxy; b
/// answers `slow` (never in time) and `echo`.
struct ThroughProxy {
    a: ConnectionManager,
    b_id: DeviceId,
    proxy: Proxy,
    listener: SocketIoListener,
}

async fn through_proxy() -> ThroughProxy {
    let (a_config, b_config) = (config("a"), config("b"));
    let b_id = b_config.handshake.keys.device_id();
    let (a, b) =
        (ConnectionManager::new(ManagerConfig::new(a_config)), ConnectionManager::new(ManagerConfig::new(b_config)));
    b.on_connection(|conn, _| {
        conn.expose_rpc("slow", |_: ()| async {
            tokio::time::sleep(Duration::from_secs(120)).await;
            Ok::<_, RemoteError>(())
        });
        conn.expose_rpc("echo", |x: u64| async move { Ok::<_, RemoteError>(x) });
    });
    let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
    let proxy = Proxy::start(server.local_addr()).await;
    let url = through(&proxy, &server);
    let listener = SocketIoListener::start(b, server);
    let dialer = SocketIoDialer::new(ClientOptions::default());
    dialer.set_urls(b_id, vec![url]);
    a.add_dialer(Arc::new(dialer));
    a.keep_connected(b_id);
    ThroughProxy { a, b_id, proxy, listener }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transport_fails_pending_calls_at_once_and_the_manager_dials_again() {
    let ThroughProxy { a, b_id, proxy, listener } = through_proxy().await;
    let first = connected(&a, &b_id).await;
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let conn = first.clone();
            tokio::spawn(async move { conn.emit::<_, ()>("slow", &()).await })
        })
        .collect();
    // The calls are on their way (an echo behind them has come back).
    assert_eq!(first.emit::<_, u64>("echo", &1).await.unwrap(), 1);
    let cut = Instant::now();
    proxy.cut();
    for call in calls {
        let result = tokio::time::timeout(Duration::from_secs(3), call).await.expect("a pending call hung").unwrap();
        assert!(result.is_err(), "a call on a dropped transport succeeded: {result:?}");
    }
    let failed_after = cut.elapsed();

    let second = connected(&a, &b_id).await;
    assert_eq!(second.emit::<_, u64>("echo", &7).await.unwrap(), 7);
    eprintln!("pending calls failed {failed_after:?} after the cut; connected again after {:?}", cut.elapsed());
    a.shutdown().await;
    listener.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_network_change_a_silent_connection_is_closed_and_dialed_again() {
    let ThroughProxy { a, b_id, proxy, listener } = through_proxy().await;
    let first = connected(&a, &b_id).await;
    // The path vanishes without a FIN or RST; the regular pings would take
    // three intervals of 15 s to notice.
    proxy.set_silent(true);
    let changed = Instant::now();
    a.network_changed();
    let reason =
        tokio::time::timeout(Duration::from_secs(8), first.closed()).await.expect("the dead connection stayed");
    assert_eq!(reason.code, CloseCode::TransportFailure, "{reason:?}");
    let closed_after = changed.elapsed();
    proxy.set_silent(false);
    let second = connected(&a, &b_id).await;
    assert_eq!(second.emit::<_, u64>("echo", &9).await.unwrap(), 9);
    eprintln!(
        "silent connection closed {closed_after:?} after the change; connected again after {:?}",
        changed.elapsed()
    );
    a.shutdown().await;
    listener.shutdown().await;
}

/// Waits until `manager` has an open connection to `device`.
async fn connected(manager: &ConnectionManager, device: &DeviceId) -> Connection {
    let started = Instant::now();
    loop {
        if let Some(conn) =
            manager.connection(device).filter(|c| matches!(c.state(), peers_sdk::ConnectionState::Verified))
        {
            return conn;
        }
        assert!(started.elapsed() < WAIT, "no connection to {device} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_closes_the_connection_with_an_integrity_error_and_nothing_corrupt_is_delivered() {
    let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
    let proxy = Proxy::start(server.local_addr()).await;
    // Deep inside the first large message: past the socket.io and Noise
    // handshakes (a few KiB), within the 4 MiB payload.
    proxy.flip_client_byte_at(3 * 1024 * 1024 + 12_345);
    let url = through(&proxy, &server);
    let (dialed, accepted) = tokio::join!(connect(&url, ClientOptions::default()), server.accept());
    let (alice, bob) = (config("alice"), config("bob"));
    let bob_id = bob.handshake.keys.device_id();
    let (alice, bob) = tokio::join!(
        Connection::connect(Box::new(dialed.unwrap()), alice, Some(bob_id)),
        Connection::accept(Box::new(accepted.unwrap()), bob),
    );
    let (alice, bob) = (alice.unwrap(), bob.unwrap());
    let (delivered_tx, mut delivered) = mpsc::unbounded_channel();
    bob.expose_rpc("store", move |data: ByteBuf| {
        let _ = delivered_tx.send(data.into_vec());
        async { Ok::<_, RemoteError>(()) }
    });

    // Incompressible, so it crosses the wire at full size.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let payload: Vec<u8> = (0..4 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let sent = tokio::time::timeout(WAIT, alice.emit::<_, ()>("store", &serde_bytes::Bytes::new(&payload))).await;
    assert_eq!(proxy.flipped(), 1, "the byte was not flipped");
    assert!(matches!(sent, Ok(Err(_))), "the corrupted call did not fail: {sent:?}");
    let reason = tokio::time::timeout(WAIT, bob.closed()).await.expect("bob's connection stayed open");
    assert_eq!(reason.code, CloseCode::ProtocolError, "{reason:?}");
    assert!(reason.message.contains("integrity"), "{reason:?}");
    // Whatever reached the handler is exactly what was sent: nothing corrupt.
    while let Ok(data) = delivered.try_recv() {
        assert!(data == payload, "corrupted data was delivered");
    }
    server.shutdown().await;
}
