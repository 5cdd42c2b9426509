//! Two Rust devices through the real signaling server on loopback: a WebRTC
//! connection, the peers handshake bound to its DTLS fingerprints, RPCs both ways,
//! a 16 MiB message, and a clean close seen by both sides.

use std::time::Duration;

use peers_sdk::rpc::RemoteError;
use peers_sdk::socket::{ClosedBy, TransportKind};
use peers_sdk::{CloseCode, CloseReason, Connection, ConnectionConfig, DeviceInfo, Socket, TrustLevel};
use peers_tests::webrtc::{Device, signaling_server};
use peers_transport_webrtc::WebRtcConfig;

const PROMPT: Duration = Duration::from_secs(30);

fn trust_all(_: &DeviceInfo) -> TrustLevel {
    TrustLevel::Trusted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_connect_authenticate_and_talk_through_the_server() {
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let alice = Device::register(&url, "alice", WebRtcConfig::loopback()).await;
    let bob = Device::register(&url, "bob", WebRtcConfig::loopback()).await;

    let (dialed, accepted) =
        tokio::time::timeout(PROMPT, async { tokio::join!(alice.endpoint.connect(bob.id()), bob.endpoint.accept()) })
            .await
            .expect("webrtc connect through the server timed out");
    let (dialed, accepted) = (dialed.expect("dial"), accepted.expect("accept"));
    assert_eq!(accepted.remote_device(), alice.id(), "the acceptor must see the server-authenticated sender");
    assert_eq!(dialed.info().transport, TransportKind::WebRtc);

    let (a, b) = tokio::join!(
        Connection::connect(Box::new(dialed), ConnectionConfig::new(alice.keys.clone(), trust_all), Some(bob.id())),
        Connection::accept(Box::new(accepted), ConnectionConfig::new(bob.keys.clone(), trust_all)),
    );
    let (a, b) = (a.expect("dialer handshake"), b.expect("acceptor handshake"));
    assert_eq!(a.remote().device_id, bob.id());
    assert_eq!(b.remote().device_id, alice.id());
    assert!(!a.is_encrypted(), "DTLS is bound, so both sides skip the inner AEAD");

    a.expose_rpc("name", |(): ()| async { Ok::<_, RemoteError>("alice".to_string()) });
    b.expose_rpc("len", |data: serde_bytes::ByteBuf| async move { Ok::<_, RemoteError>(data.len() as u64) });
    b.expose_rpc("reverse", |mut data: serde_bytes::ByteBuf| async move {
        data.reverse();
        Ok::<_, RemoteError>(data)
    });
    let name: String = b.emit("name", &()).await.expect("bob → alice");
    assert_eq!(name, "alice");
    let small: u64 = a.emit("len", &serde_bytes::ByteBuf::from(vec![1u8; 10])).await.expect("alice → bob");
    assert_eq!(small, 10);

    let big: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let reversed: serde_bytes::ByteBuf = a
        .emit_with_timeout("reverse", &serde_bytes::ByteBuf::from(big.clone()), Duration::from_secs(120))
        .await
        .expect("16 MiB round trip");
    assert_eq!(reversed.len(), big.len());
    assert!(reversed.iter().rev().eq(big.iter()), "16 MiB message damaged");

    b.close(CloseReason::normal("bob is done")).await;
    let seen = tokio::time::timeout(PROMPT, a.closed()).await.expect("alice never saw the close");
    assert_eq!((seen.code, seen.message.as_str(), seen.by), (CloseCode::Normal, "bob is done", ClosedBy::Remote));
    // The closer's own view carries its reason, as its own.
    let own = b.closed().await;
    assert_eq!((own.code, own.message.as_str(), own.by), (CloseCode::Normal, "bob is done", ClosedBy::Local));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_signals_through_the_server_are_refused_and_harmless() {
    use peers_signaling::{SignalKind, SignalingClient, SignalingClientOptions};
    use peers_transport_webrtc::{Error, SignalRefusal};

    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let alice = Device::register(&url, "alice", WebRtcConfig::loopback()).await;
    let bob = Device::register(&url, "bob", WebRtcConfig::loopback()).await;
    let mallory_keys = peers_sdk::DeviceKeys::generate("mallory").unwrap();
    let mallory = SignalingClient::connect(&url, &mallory_keys, SignalingClientOptions::default()).await.unwrap();
    let mut refusals = bob.endpoint.refusals();

    // Bodies the server relays (it checks sizes, not our session fields) but our
    // adapter and endpoint must refuse.
    let hostile = [
        (SignalKind::Offer, serde_json::json!({ "sdp": "v=0" })),
        (SignalKind::Offer, serde_json::json!({ "session": "no spaces allowed", "sdp": "v=0" })),
        (
            SignalKind::IceCandidate,
            serde_json::json!({ "session": "abc", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host" }),
        ),
        (SignalKind::Answer, serde_json::json!({ "session": "abc", "sdp": "v=0\r\nm=application 9\r\n" })),
    ];
    for (kind, body) in &hostile {
        mallory.send(&bob.id(), *kind, body.clone()).await.unwrap();
        let refusal = tokio::time::timeout(PROMPT, refusals.recv()).await.expect("not refused").unwrap();
        assert!(
            matches!(&*refusal, Error::InvalidSignal { from, reason } if *from == mallory_keys.device_id()
                && !matches!(reason, SignalRefusal::Flooded)),
            "{kind:?} {body}: {refusal}"
        );
    }
    assert_eq!(bob.endpoint.sessions_in_progress(), 0, "a refused signal left a session behind");

    // Bob still accepts alice.
    let (dialed, accepted) =
        tokio::time::timeout(PROMPT, async { tokio::join!(alice.endpoint.connect(bob.id()), bob.endpoint.accept()) })
            .await
            .expect("connect after the attack timed out");
    let (dialed, accepted) = (dialed.unwrap(), accepted.unwrap());
    dialed.send("after".into()).await.unwrap();
    assert_eq!(accepted.recv().await.unwrap(), "after");
}
