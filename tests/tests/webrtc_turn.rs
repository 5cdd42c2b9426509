//! WebRTC through TURN with the signaling server's time-limited credentials: two
//! devices restricted to relayed candidates get their ICE servers from
//! `peers-signaling` (coturn REST credentials), a real coturn on loopback
//! accepts them, the connection carries a handshake and RPCs, and both sides
//! report the path as relayed.

use peers_sdk::rpc::RemoteError;
use peers_sdk::{Connection, ConnectionConfig, DeviceInfo, PathKind, TrustLevel};
use peers_signaling::{ServerConfig, SignalingServer};
use peers_tests::coturn::{Coturn, CoturnConfig};
use peers_tests::webrtc::Device;
use peers_transport_webrtc::{CandidateScope, WebRtcConfig};

const SECRET: &str = "turn-test-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_devices_connect_through_turn_with_signaling_credentials() {
    let port = peers_tests::coturn::loopback_port();
    let mut coturn = CoturnConfig::new("127.0.0.1", port, "peers", SECRET);
    // Both devices' relayed addresses are on loopback here; coturn refuses
    // loopback peers unless told otherwise.
    coturn.extra.push("allow-loopback-peers".into());
    let turn = Coturn::start(None, &coturn).await;
    let mut config = ServerConfig::in_memory();
    config.ice.turn_urls = vec![turn.turn_url.clone()];
    config.ice.turn_secret = Some(SECRET.into());
    let server = SignalingServer::bind(config).await.unwrap();
    let url = server.url().unwrap();

    let webrtc = WebRtcConfig { candidate_scope: CandidateScope::RelayOnly, ..WebRtcConfig::default() };
    let alice = Device::register(&url, "alice", webrtc.clone()).await;
    let bob = Device::register(&url, "bob", webrtc).await;
    let trust = |_: &DeviceInfo| TrustLevel::Trusted;
    let (dialed, accepted) = tokio::join!(alice.endpoint.connect(bob.id()), bob.endpoint.accept());
    let (dialed, accepted) = (dialed.expect("dial through TURN"), accepted.expect("accept through TURN"));
    for socket in [&dialed, &accepted] {
        let path = socket.path().await.expect("a selected pair");
        assert_eq!(path.kind, PathKind::Relayed, "{path:?}");
    }
    let (a, b) = tokio::join!(
        Connection::connect(Box::new(dialed), ConnectionConfig::new(alice.keys.clone(), trust), Some(bob.id())),
        Connection::accept(Box::new(accepted), ConnectionConfig::new(bob.keys.clone(), trust)),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // The manager classifies the same path as relayed.
    assert_eq!(a.path().map(|p| p.kind), Some(peers_sdk::PathKind::Relayed));
    b.expose_rpc("twice", |n: u64| async move { Ok::<_, RemoteError>(n * 2) });
    assert_eq!(a.emit::<_, u64>("twice", &21).await.unwrap(), 42);
    drop(turn);
    server.shutdown().await;
}
