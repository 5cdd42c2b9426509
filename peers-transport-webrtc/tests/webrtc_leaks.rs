//! Failed and abandoned connection attempts leave nothing behind: after many of
//! them, the process has as many live tokio tasks and open file descriptors as
//! before, and the endpoint tracks no session.

mod common;

use std::sync::Arc;
use std::time::Duration;

use peers_sdk::DeviceKeys;
use peers_transport_webrtc::{Error, MemorySignalingHub, SignalPayload, WebRtcConfig, WebRtcEndpoint};

const ROUNDS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_failed_dials_leak_nothing() {
    let hub = MemorySignalingHub::new();
    let alice = DeviceKeys::generate("alice").unwrap();
    let config = WebRtcConfig { connect_timeout: Duration::from_millis(600), ..WebRtcConfig::loopback() };
    let dialer = WebRtcEndpoint::new(Arc::new(hub.join(alice.device_id())), config.clone());
    // A device that is registered but never answers (its signals pile up unread).
    let silent = DeviceKeys::generate("silent").unwrap();
    let _silent_channel = hub.join(silent.device_id());
    // A device that answers, but no candidate reaches either side: ICE cannot
    // connect, so both its accept and our dial time out.
    let deaf = DeviceKeys::generate("deaf").unwrap();
    let deaf_endpoint = WebRtcEndpoint::new(Arc::new(hub.join(deaf.device_id())), config.clone());
    let deaf_id = deaf.device_id();
    hub.set_interceptor(Arc::new(move |from, to, signal| {
        let candidate = matches!(signal.payload, SignalPayload::Candidate(_));
        (!(candidate && (from == deaf_id || to == deaf_id))).then_some(signal)
    }));
    // A device nobody registered: the offer cannot be delivered.
    let offline = DeviceKeys::generate("offline").unwrap();

    // Warm up once per kind of failure (lazy statics, the runtime's own workers),
    // then measure.
    let _ = dialer.connect(silent.device_id()).await;
    let _ = dialer.connect(deaf_id).await;
    settle().await;
    let before = common::resource_counts();

    for round in 0..ROUNDS {
        let err = dialer.connect(silent.device_id()).await.expect_err("silent peer answered");
        assert!(matches!(err, Error::ConnectTimeout { .. }), "round {round}: {err}");
        let err = dialer.connect(offline.device_id()).await.expect_err("offline peer answered");
        assert!(matches!(err, Error::Signaling(_)), "round {round}: {err}");
        // Both sides time out at about the same moment; whichever is first, the
        // dial fails (our timeout, or the acceptor's cancel).
        let err = dialer.connect(deaf_id).await.expect_err("deaf peer connected");
        assert!(matches!(err, Error::ConnectTimeout { .. } | Error::Refused { .. }), "round {round}: {err}");
        // Abandoned: the caller gives up before the timeout.
        let abandoned = tokio::time::timeout(Duration::from_millis(50), dialer.connect(silent.device_id())).await;
        assert!(abandoned.is_err(), "round {round}: abandoned dial finished");
    }

    // Everything that was started must be gone shortly after.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let after = loop {
        settle().await;
        let now = common::resource_counts();
        if (now.0 <= before.0 && now.1 <= before.1) || tokio::time::Instant::now() > deadline {
            break now;
        }
    };
    assert_eq!(dialer.sessions_in_progress(), 0, "sessions left in the dialer's table");
    assert_eq!(deaf_endpoint.sessions_in_progress(), 0, "sessions left in the acceptor's table");
    assert!(after.0 <= before.0, "tokio tasks leaked: {} before, {} after {ROUNDS} rounds", before.0, after.0);
    assert!(after.1 <= before.1, "file descriptors leaked: {} before, {} after {ROUNDS} rounds", before.1, after.1);
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}
