//! Men in the middle of the signaling path.
//!
//! - One that only swaps the DTLS fingerprint in relayed SDP is stopped by DTLS:
//!   the certificate no longer matches, and no socket opens.
//! - One that terminates WebRTC on both sides (its own certificate toward each
//!   device, its own fingerprints in the SDP each sees) and bridges the data
//!   channels carries bytes faithfully, yet our handshake refuses, because the
//!   two devices see different channel bindings.

mod common;

use std::sync::Arc;
use std::time::Duration;

use peers_sdk::HandshakeError;
use peers_sdk::{Connection, ConnectionConfig, DeviceInfo, DeviceKeys, Error as SdkError, Socket, TrustLevel};
use peers_transport_webrtc::{
    Error, MemorySignalingHub, SignalPayload, WebRtcConfig, WebRtcEndpoint, WebRtcSocket, format_fingerprint,
    sha256_fingerprint,
};

fn trust_all(_: &DeviceInfo) -> TrustLevel {
    TrustLevel::Trusted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_fingerprint_in_relayed_sdp_stops_dtls() {
    let config = WebRtcConfig { connect_timeout: Duration::from_secs(6), ..WebRtcConfig::loopback() };
    let pair = common::Pair::new(config);
    let forged = format_fingerprint(&[0x42; 32]);
    pair.hub.set_interceptor(Arc::new(move |_, _, mut signal| {
        if let SignalPayload::Offer { sdp } | SignalPayload::Answer { sdp } = &mut signal.payload {
            let real = format_fingerprint(&sha256_fingerprint(sdp).unwrap());
            *sdp = sdp.replace(&real, &forged);
        }
        Some(signal)
    }));
    let (dialed, accepted) = tokio::join!(
        pair.dialer.connect(pair.bob.device_id()),
        tokio::time::timeout(Duration::from_secs(8), pair.listener.accept()),
    );
    let err = dialed.expect_err("a socket opened although the fingerprints were forged");
    // The library's own DTLS check fails the peer connection (one side sees the
    // failure, the other its cancel) before any channel opens; our second check
    // after the open (`Error::Fingerprint`) is never reached.
    assert!(matches!(err, Error::ConnectFailed { .. } | Error::Refused { .. }), "{err}");
    assert!(accepted.is_err(), "the acceptor got a socket although the fingerprints were forged");
}

/// Mallory's two endpoints: one posing as bob to alice, one posing as alice to bob.
async fn bridge(toward_alice: WebRtcSocket, toward_bob: WebRtcSocket) {
    let (a, b) = (Arc::new(toward_alice), Arc::new(toward_bob));
    let pump = |from: Arc<WebRtcSocket>, to: Arc<WebRtcSocket>| async move {
        while let Ok(frame) = from.recv().await {
            if to.send(frame).await.is_err() {
                break;
            }
        }
        if let peers_sdk::SocketState::Closed(reason) = from.state() {
            to.close(peers_sdk::CloseReason::new(reason.code, reason.message)).await;
        }
    };
    tokio::join!(pump(a.clone(), b.clone()), pump(b, a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_man_in_the_middle_is_refused_by_the_handshake() {
    let alice = Arc::new(DeviceKeys::generate("alice").unwrap());
    let bob = Arc::new(DeviceKeys::generate("bob").unwrap());
    // Mallory controls the signaling path: alice's hub delivers "bob" to mallory,
    // bob's hub delivers "alice" to mallory.
    let (alice_side, bob_side) = (MemorySignalingHub::new(), MemorySignalingHub::new());
    let config = WebRtcConfig::loopback();
    let alice_endpoint = WebRtcEndpoint::new(Arc::new(alice_side.join(alice.device_id())), config.clone());
    let mallory_as_bob = WebRtcEndpoint::new(Arc::new(alice_side.join(bob.device_id())), config.clone());
    let mallory_as_alice = WebRtcEndpoint::new(Arc::new(bob_side.join(alice.device_id())), config.clone());
    let bob_endpoint = WebRtcEndpoint::new(Arc::new(bob_side.join(bob.device_id())), config);

    let (to_mallory, from_alice) = tokio::join!(alice_endpoint.connect(bob.device_id()), mallory_as_bob.accept());
    let (to_bob, from_mallory) = tokio::join!(mallory_as_alice.connect(bob.device_id()), bob_endpoint.accept());
    let (alice_socket, mallory_a) = (to_mallory.unwrap(), from_alice.unwrap());
    let (mallory_b, bob_socket) = (to_bob.unwrap(), from_mallory.unwrap());
    let alice_binding = alice_socket.info().security.channel_binding.clone().unwrap();
    let bob_binding = bob_socket.info().security.channel_binding.clone().unwrap();
    // Each device sees mallory's certificate as the remote one.
    assert_ne!(alice_binding.remote, bob_binding.local);
    assert_ne!(bob_binding.remote, alice_binding.local);
    tokio::spawn(bridge(mallory_a, mallory_b));

    // The bridge carries bytes both ways: without the binding, a handshake would
    // go through.
    alice_socket.send("probe from alice".into()).await.unwrap();
    assert_eq!(bob_socket.recv().await.unwrap(), "probe from alice");
    bob_socket.send("probe from bob".into()).await.unwrap();
    assert_eq!(alice_socket.recv().await.unwrap(), "probe from bob");

    let (dialed, accepted) = tokio::time::timeout(common::PROMPT, async {
        tokio::join!(
            Connection::connect(
                Box::new(alice_socket),
                ConnectionConfig::new(alice.clone(), trust_all),
                Some(bob.device_id())
            ),
            Connection::accept(Box::new(bob_socket), ConnectionConfig::new(bob.clone(), trust_all)),
        )
    })
    .await
    .expect("handshake through the bridge hung");
    match accepted {
        Err(SdkError::Handshake(HandshakeError::ChannelBindingMismatch)) => {}
        other => panic!("bob must refuse with a channel binding mismatch, got {:?}", other.map(|c| c.remote().clone())),
    }
    assert!(dialed.is_err(), "alice must not get a connection through the man in the middle");
}
