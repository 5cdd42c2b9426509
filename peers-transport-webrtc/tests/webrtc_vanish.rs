//! A peer that vanishes mid-transfer: the other side sees the close within a
//! bounded time, and its pending RPCs fail instead of hanging.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use peers_sdk::rpc::RemoteError;
use peers_sdk::{CloseCode, Connection, ConnectionConfig, DeviceInfo, Error as SdkError, TrustLevel};
use peers_transport_webrtc::{PeerState, WebRtcConfig};

fn trust_all(_: &DeviceInfo) -> TrustLevel {
    TrustLevel::Trusted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_vanishing_mid_transfer_fails_pending_calls() {
    let pair = common::Pair::new(WebRtcConfig::loopback());
    let (dialed, accepted) = pair.connect().await;
    let bob_socket = Arc::new(accepted);
    let mut alice_state = dialed.watch_peer_state();
    let (alice, bob) = tokio::join!(
        Connection::connect(
            Box::new(dialed),
            ConnectionConfig::new(pair.alice.clone(), trust_all),
            Some(pair.bob.device_id())
        ),
        Connection::accept(
            Box::new(common::SharedSocket(bob_socket.clone())),
            ConnectionConfig::new(pair.bob.clone(), trust_all)
        ),
    );
    let (alice, bob) = (alice.unwrap(), bob.unwrap());
    // Bob reads a large upload slowly and answers a second call never.
    bob.expose_rpc("upload", |data: serde_bytes::ByteBuf| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, RemoteError>(data.len() as u64)
    });
    bob.expose_rpc("stall", |(): ()| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, RemoteError>(())
    });
    let alice = Arc::new(alice);
    let upload = {
        let alice = alice.clone();
        tokio::spawn(async move {
            let data = serde_bytes::ByteBuf::from(vec![0x5a; 32 * 1024 * 1024]);
            alice.emit_with_timeout::<_, u64>("upload", &data, Duration::from_secs(300)).await
        })
    };
    let stall = {
        let alice = alice.clone();
        tokio::spawn(async move { alice.emit_with_timeout::<_, ()>("stall", &(), Duration::from_secs(300)).await })
    };
    // Let the transfer get under way, then bob's peer connection disappears
    // without a close message.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let vanished = Instant::now();
    bob_socket.vanish().await;

    // ICE failure takes disconnected (5 s) + failed (10 s) when no packet arrives;
    // DTLS or SCTP usually notice much sooner. Allow both plus slack.
    let bound = Duration::from_secs(30);
    let reason = tokio::time::timeout(bound, alice.closed()).await.expect("alice never saw bob vanish");
    assert_eq!(reason.code, CloseCode::TransportFailure, "{reason}");
    for (name, call) in [("upload", upload.await.unwrap().map(|_| ())), ("stall", stall.await.unwrap())] {
        match call {
            Err(SdkError::Closed { .. }) => {}
            other => panic!("pending {name} call should fail with Closed, got {other:?}"),
        }
    }
    tokio::time::timeout(bound, alice_state.wait_for(|s| *s == PeerState::Closed || *s == PeerState::Failed))
        .await
        .expect("peer connection state never left connected")
        .unwrap();
    eprintln!("close seen {:?} after the peer vanished", vanished.elapsed());
    drop(bob);
}
