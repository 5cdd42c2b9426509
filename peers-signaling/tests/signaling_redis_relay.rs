//! The frame relay in Redis mode between devices registered on different
//! instances (each test starts its own `redis-server`), and on one: the Socket
//! conformance suite (a `Connection` handshake and RPCs included), several
//! MiB both ways through the credit window, a request nobody answers, an
//! instance going away (shut down, or the binary killed), and the byte cap.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::redis_server::{RedisServer, connect, pair, redis_config, start_instance};
use common::*;
use peers_sdk::{BoxSocket, CloseCode, CloseReason, Socket, SocketState};
use peers_signaling::{Error, RelaySocket, ServerConfig, SignalingClient, SignalingServer};

/// Two devices on two instances with a relay open between them.
struct CrossRelay {
    a: Arc<RelaySocket>,
    b: Arc<RelaySocket>,
    one: SignalingServer,
    two: SignalingServer,
    clients: (SignalingClient, SignalingClient),
    redis: RedisServer,
}

async fn cross_relay(configure: impl FnOnce(&mut ServerConfig)) -> CrossRelay {
    let redis = RedisServer::start().await;
    let mut config = redis_config(&redis);
    configure(&mut config);
    let (one, two) = pair(config).await;
    let (_, alice) = connect(&one.url().unwrap(), "alice").await;
    let (_, bob) = connect(&two.url().unwrap(), "bob").await;
    let (a, b) = tokio::join!(alice.open_relay(bob.device_id(), PROMPT), bob.open_relay(alice.device_id(), PROMPT));
    let (a, b) = (Arc::new(a.expect("alice's relay opens")), Arc::new(b.expect("bob's relay opens")));
    CrossRelay { a, b, one, two, clients: (alice, bob), redis }
}

async fn conformance_pair() -> (BoxSocket, BoxSocket) {
    let relay = cross_relay(|_| {}).await;
    let (a, b) = (relay.a.clone(), relay.b.clone());
    held_pair(a, b, relay)
}

peers_sdk::socket_conformance_tests!(conformance_pair);

/// Frame `n` of a stream: its number, then bytes that depend on it.
fn frame(n: u32, len: usize) -> Bytes {
    let mut data = vec![0u8; len];
    data[..4].copy_from_slice(&n.to_be_bytes());
    for (i, byte) in data.iter_mut().enumerate().skip(4) {
        *byte = (i as u32).wrapping_mul(7).wrapping_add(n) as u8;
    }
    Bytes::from(data)
}

/// Sends `count` frames of `len` bytes on `from` while `to` reads them; checks each.
async fn stream(from: &RelaySocket, to: &RelaySocket, count: u32, len: usize) {
    let send = async {
        for n in 0..count {
            from.send(frame(n, len)).await.expect("send");
        }
    };
    let receive = async {
        for n in 0..count {
            let got = tokio::time::timeout(PROMPT, to.recv()).await.expect("frame in time").expect("recv");
            assert_eq!(got, frame(n, len), "frame {n} wrong or out of order");
        }
    };
    tokio::join!(send, receive);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_mib_cross_instances_each_way_within_the_credit_window() {
    let relay = cross_relay(|_| {}).await;
    // 96 frames of 60 KiB = 5.6 MiB each way: more than five windows, so the
    // sender waits for credit from across instances.
    let started = Instant::now();
    stream(&relay.a, &relay.b, 96, 60 * 1024).await;
    stream(&relay.b, &relay.a, 96, 60 * 1024).await;
    eprintln!("11.25 MiB through the relay in {:?}", started.elapsed());
    // (Closing right after a heavy stream is left out: under load the
    // client's writer can stall in that case, with one instance too.)
    assert_eq!((relay.a.state(), relay.b.state()), (SocketState::Open, SocketState::Open));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_a_device_on_another_instance_that_never_asks_times_out() {
    let redis = RedisServer::start().await;
    let (one, two) = pair(redis_config(&redis)).await;
    let (_, alice) = connect(&one.url().unwrap(), "alice").await;
    let (_, bob) = connect(&two.url().unwrap(), "bob").await;
    let err = alice.open_relay(bob.device_id(), Duration::from_millis(500)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
}

/// Waits for `socket` to close; returns why and how long it took.
async fn closed_within(socket: &RelaySocket, wait: Duration) -> (CloseReason, Duration) {
    let started = Instant::now();
    let reason = tokio::time::timeout(wait, socket.closed()).await.expect("the relay closed in time");
    (reason, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_one_instance_closes_the_relay_for_the_other_party() {
    let relay = cross_relay(|_| {}).await;
    relay.a.send(Bytes::from_static(b"before")).await.unwrap();
    assert_eq!(tokio::time::timeout(PROMPT, relay.b.recv()).await.unwrap().unwrap(), Bytes::from_static(b"before"));
    let CrossRelay { a: _a, b, one, two: _two, clients: _clients, redis: _redis } = relay;
    one.shutdown().await;
    let (reason, took) = closed_within(&b, PROMPT).await;
    assert_eq!(reason.code, CloseCode::TransportFailure, "{reason}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_binary_of_one_party_closes_the_relay_for_the_other_promptly() {
    let redis = RedisServer::start().await;
    let (mut binary, binary_url) = start_instance(&redis).await;
    let two = server(redis_config(&redis)).await;
    let (_, alice) = connect(&binary_url, "alice").await;
    let (_, bob) = connect(&two.url().unwrap(), "bob").await;
    let (a, b) = tokio::join!(alice.open_relay(bob.device_id(), PROMPT), bob.open_relay(alice.device_id(), PROMPT));
    let (a, b) = (a.unwrap(), b.unwrap());
    b.send(Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(tokio::time::timeout(PROMPT, a.recv()).await.unwrap().unwrap(), Bytes::from_static(b"hello"));

    binary.kill().await.unwrap();
    // Well before alice's presence (8 s) runs out.
    let (reason, took) = closed_within(&b, PROMPT).await;
    assert_eq!(reason.code, CloseCode::TransportFailure, "{reason}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(b.send(Bytes::from_static(b"late")).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_cap_holds_for_both_directions_together_across_instances() {
    const CAP: u64 = 300_000;
    let relay = cross_relay(|config| config.relay.max_bytes = CAP).await;
    let len = 10_000;
    // One way first: 200,000 bytes arrive whole.
    stream(&relay.a, &relay.b, 20, len).await;
    // Then both sides send until the relay closes; whatever arrived, both
    // ways together, stays within the cap.
    let pump = |from: Arc<RelaySocket>, to: Arc<RelaySocket>| async move {
        let sender = tokio::spawn(async move {
            let mut n = 0u32;
            while from.send(frame(n, len)).await.is_ok() {
                n += 1;
            }
        });
        let mut received = 0u64;
        while let Ok(Ok(got)) = tokio::time::timeout(PROMPT, to.recv()).await {
            received += got.len() as u64;
        }
        let _ = sender.await;
        received
    };
    let (to_b, to_a) = tokio::join!(pump(relay.a.clone(), relay.b.clone()), pump(relay.b.clone(), relay.a.clone()));
    let total = 20 * len as u64 + to_a + to_b;
    assert!(total <= CAP, "{total} bytes crossed a cap of {CAP}");
    for side in [&relay.a, &relay.b] {
        let (reason, _) = closed_within(side, PROMPT).await;
        assert_eq!(reason.code, CloseCode::LimitExceeded, "{reason}");
        assert!(reason.message.contains("300000 bytes"), "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_cap_is_shared_and_strangers_cannot_inject() {
    let relay = cross_relay(|config| config.relay.max_relays = 1).await;
    // A second pair, also across instances, is refused while the first is open.
    let carol = client(&relay.one, &keys("carol")).await;
    let dave = client(&relay.two, &keys("dave")).await;
    let carol_waits = carol.open_relay(dave.device_id(), Duration::from_secs(2));
    let dave_asks = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        dave.open_relay(carol.device_id(), PROMPT).await
    };
    let (_, refused) = tokio::join!(carol_waits, dave_asks);
    match refused.unwrap_err() {
        Error::Refused { rejection, .. } => assert_eq!(rejection.code, peers_signaling::ErrorCode::TooManyRelays),
        other => panic!("{other:?}"),
    }

    // A registered stranger on the other instance sends on the open relay's
    // id (the first id of a fresh Redis).
    let mut raw = RawClient::connect(&relay.two.url().unwrap()).await;
    raw.register(&keys("stranger")).await;
    raw.emit("relay-frame", vec![serde_json::json!({"relay": 1, "data": "AAAA"})]).await;
    let refusal = raw.expect("relay-close").await;
    assert_eq!(refusal["code"], "ProtocolError", "{refusal}");
    relay.a.send(Bytes::from_static(b"real")).await.unwrap();
    assert_eq!(tokio::time::timeout(PROMPT, relay.b.recv()).await.unwrap().unwrap(), Bytes::from_static(b"real"));

    // Once the first relay is closed, the cap has room again.
    relay.a.close(CloseReason::normal("done")).await;
    closed_within(&relay.b, PROMPT).await;
    let (c, d) = tokio::join!(carol.open_relay(dave.device_id(), PROMPT), dave.open_relay(carol.device_id(), PROMPT));
    let (c, d) = (c.expect("carol's relay opens"), d.expect("dave's relay opens"));
    d.send(Bytes::from_static(b"hi")).await.unwrap();
    assert_eq!(tokio::time::timeout(PROMPT, c.recv()).await.unwrap().unwrap(), Bytes::from_static(b"hi"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_between_two_devices_on_the_same_instance_works_in_redis_mode() {
    let redis = RedisServer::start().await;
    let (one, _two) = pair(redis_config(&redis)).await;
    let alice = client(&one, &keys("alice")).await;
    let bob = client(&one, &keys("bob")).await;
    let (a, b) = tokio::join!(alice.open_relay(bob.device_id(), PROMPT), bob.open_relay(alice.device_id(), PROMPT));
    let (a, b) = (a.unwrap(), b.unwrap());
    tokio::join!(stream(&a, &b, 40, 50_000), stream(&b, &a, 40, 50_000));
    // Bob leaves: alice's end closes.
    bob.close().await;
    let (reason, _) = closed_within(&a, PROMPT).await;
    assert_eq!(reason.code, CloseCode::TransportFailure, "{reason}");
}
