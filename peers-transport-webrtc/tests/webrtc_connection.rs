//! A full `Connection` over WebRTC: handshake bound to the DTLS fingerprints, RPCs
//! both ways, a 16 MiB message, a clean close seen by both sides, and the path
//! reported as data.

mod common;

use std::time::Duration;

use peers_sdk::rpc::RemoteError;
use peers_sdk::socket::{ClosedBy, Locality, TransportKind};
use peers_sdk::{CloseCode, CloseReason, Connection, ConnectionConfig, DeviceInfo, PathKind, Socket, TrustLevel};
use peers_transport_webrtc::{BINDING_KIND, WebRtcConfig};

fn trust_all(_: &DeviceInfo) -> TrustLevel {
    TrustLevel::Trusted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_rpc_both_ways_16_mib_and_clean_close() {
    let pair = common::Pair::new(WebRtcConfig::loopback());
    let (dialed, accepted) = pair.connect().await;

    // The sockets describe a confidential transport bound to both fingerprints, in
    // mirrored order, and frames small enough for the data channel.
    for socket in [&dialed, &accepted] {
        let info = socket.info();
        assert_eq!(info.transport, TransportKind::WebRtc);
        assert!(info.security.confidential);
        assert!(info.max_frame_size <= 256 * 1024 && info.max_frame_size >= 16 * 1024, "{}", info.max_frame_size);
    }
    let (a, b) = (
        dialed.info().security.channel_binding.clone().unwrap(),
        accepted.info().security.channel_binding.clone().unwrap(),
    );
    assert_eq!(a.kind, BINDING_KIND);
    assert_eq!((a.local.len(), a.remote.len()), (32, 32));
    assert_eq!((a.local.clone(), a.remote.clone()), (b.remote, b.local), "each side must see the other's fingerprint");
    assert_ne!(a.local, a.remote);
    assert_eq!(dialed.remote_device(), pair.bob.device_id());
    assert_eq!(accepted.remote_device(), pair.alice.device_id());

    let (alice, bob) = tokio::join!(
        Connection::connect(
            Box::new(dialed),
            ConnectionConfig::new(pair.alice.clone(), trust_all),
            Some(pair.bob.device_id())
        ),
        Connection::accept(Box::new(accepted), ConnectionConfig::new(pair.bob.clone(), trust_all)),
    );
    let (alice, bob) = (alice.expect("dialer handshake"), bob.expect("acceptor handshake"));
    assert_eq!(alice.remote().device_id, pair.bob.device_id());
    assert_eq!(bob.remote().device_id, pair.alice.device_id());
    // Bound and confidential on both sides, and both asked (the default): the
    // inner AEAD layer is skipped.
    assert!(!alice.is_encrypted() && !bob.is_encrypted());

    bob.expose_rpc("echo", |data: serde_bytes::ByteBuf| async move { Ok::<_, RemoteError>(data) });
    alice.expose_rpc("add", |(x, y): (u64, u64)| async move { Ok::<_, RemoteError>(x + y) });
    let sum: u64 = bob.emit("add", &(40u64, 2u64)).await.expect("bob → alice rpc");
    assert_eq!(sum, 42);

    // 16 MiB of incompressible bytes, chunked by the codec into data channel frames.
    let mut big = vec![0u8; 16 * 1024 * 1024];
    let mut x: u32 = 0x1234_5678;
    for byte in big.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *byte = x as u8;
    }
    let big = serde_bytes::ByteBuf::from(big);
    let echoed: serde_bytes::ByteBuf =
        alice.emit_with_timeout("echo", &big, Duration::from_secs(120)).await.expect("16 MiB echo");
    assert!(echoed == big, "16 MiB message damaged");

    alice.close(CloseReason::normal("done")).await;
    let seen = tokio::time::timeout(common::PROMPT, bob.closed()).await.expect("bob never saw the close");
    assert_eq!((seen.code, seen.message.as_str(), seen.by), (CloseCode::Normal, "done", ClosedBy::Remote));
    // Alice's own view carries her reason, as hers, however fast Bob answered.
    let own = tokio::time::timeout(common::PROMPT, alice.closed()).await.unwrap();
    assert_eq!((own.code, own.message.as_str(), own.by), (CloseCode::Normal, "done", ClosedBy::Local));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inner_aead_is_skipped_only_when_both_sides_ask() {
    for (alice_skips, bob_skips) in [(true, false), (false, true), (false, false)] {
        let pair = common::Pair::new(WebRtcConfig::loopback());
        let (dialed, accepted) = pair.connect().await;
        let mut alice_config = ConnectionConfig::new(pair.alice.clone(), trust_all);
        alice_config.handshake.skip_aead_when_bound = alice_skips;
        let mut bob_config = ConnectionConfig::new(pair.bob.clone(), trust_all);
        bob_config.handshake.skip_aead_when_bound = bob_skips;
        let (alice, bob) = tokio::join!(
            Connection::connect(Box::new(dialed), alice_config, Some(pair.bob.device_id())),
            Connection::accept(Box::new(accepted), bob_config),
        );
        let (alice, bob) = (alice.unwrap(), bob.unwrap());
        assert!(alice.is_encrypted() && bob.is_encrypted(), "alice {alice_skips}, bob {bob_skips}: must stay sealed");
        bob.expose_rpc("ping", |(): ()| async { Ok::<_, RemoteError>("pong".to_string()) });
        let pong: String = alice.emit("ping", &()).await.unwrap();
        assert_eq!(pong, "pong");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_is_host_on_loopback_with_a_round_trip_time() {
    let pair = common::Pair::new(WebRtcConfig::loopback());
    let (dialed, accepted) = pair.connect().await;
    for socket in [&dialed, &accepted] {
        assert_eq!(socket.info().locality, Locality::Loopback);
        let path = socket.path().await.expect("no selected candidate pair");
        assert_eq!(path.kind, PathKind::Direct);
        let ends = (path.local.as_deref().unwrap_or_default(), path.remote.as_deref().unwrap_or_default());
        assert!(ends.0.starts_with("127.0.0.1:") && ends.1.starts_with("127.0.0.1:"), "{path:?}");
        // The path the manager reads through the Socket trait is the one just measured.
        assert_eq!(Socket::path(socket), Some(path.clone()));
        let rtt = path.rtt.expect("no round-trip time");
        assert!(rtt > Duration::ZERO && rtt < Duration::from_secs(2), "{rtt:?}");
    }
    // The probe is invisible to the socket's frames.
    dialed.send("after probe".into()).await.unwrap();
    assert_eq!(accepted.recv().await.unwrap(), "after probe");
}
