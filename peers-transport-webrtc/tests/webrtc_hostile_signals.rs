//! Hostile signals: each is refused with a typed error, leaves no session behind,
//! and does not disturb a legitimate connection made at the same time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use peers_sdk::{DeviceKeys, Socket};
use peers_transport_webrtc::signal::MAX_SDP_LEN;
use peers_transport_webrtc::{
    Error, IceCandidate, SessionId, SignalPayload, SignalRefusal, Signaling, WebRtcConfig, WebRtcSignal,
    format_fingerprint,
};

/// (name, signal, the refusal expected, whether the sender hears back).
type Case = (&'static str, WebRtcSignal, fn(&SignalRefusal) -> bool, bool);

fn offer(sdp: String) -> WebRtcSignal {
    WebRtcSignal { session: SessionId::random(), payload: SignalPayload::Offer { sdp } }
}

/// Shaped like a data channel offer, with a fingerprint, but not SDP the library
/// can use.
fn broken_offer_sdp() -> String {
    format!(
        "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=fingerprint:sha-256 {}\r\nx=nonsense\r\n",
        format_fingerprint(&[7; 32])
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_signals_are_refused_without_side_effects() {
    let pair = common::Pair::new(WebRtcConfig::loopback());
    let mallory = DeviceKeys::generate("mallory").unwrap();
    let mallory_inbox = pair.hub.join(mallory.device_id());
    let mut refusals = pair.listener.refusals();
    let bob = pair.bob.device_id();
    let from = mallory.device_id();

    // A legitimate connection is opened while the attack runs.
    let pair = Arc::new(pair);
    let connecting = {
        let pair = pair.clone();
        tokio::spawn(async move { pair.connect().await })
    };

    let huge = format!("v=0\r\nm=application 9\r\n{}", "a".repeat(MAX_SDP_LEN));
    let cases: Vec<Case> = vec![
        ("garbage sdp", offer("hello".into()), |r| matches!(r, SignalRefusal::BadSdp(_)), true),
        ("oversized sdp", offer(huge), |r| matches!(r, SignalRefusal::TooLarge { field: "sdp", .. }), true),
        ("unusable sdp", offer(broken_offer_sdp()), |r| matches!(r, SignalRefusal::BadSdp(_)), true),
        (
            "candidate for an unknown session",
            WebRtcSignal {
                session: SessionId::random(),
                payload: SignalPayload::Candidate(IceCandidate {
                    candidate: "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host".into(),
                    sdp_mid: Some("0".into()),
                    sdp_mline_index: Some(0),
                }),
            },
            |r| matches!(r, SignalRefusal::UnknownSession),
            false,
        ),
        (
            "answer without an offer",
            WebRtcSignal { session: SessionId::random(), payload: SignalPayload::Answer { sdp: broken_offer_sdp() } },
            |r| matches!(r, SignalRefusal::UnknownSession),
            true,
        ),
    ];
    for (name, signal, expected, replied) in cases {
        pair.hub.inject(from, bob, signal).unwrap();
        let refusal = tokio::time::timeout(common::PROMPT, refusals.recv())
            .await
            .unwrap_or_else(|_| panic!("{name}: not refused"))
            .unwrap();
        match &*refusal {
            Error::InvalidSignal { from: sender, reason } => {
                assert_eq!(*sender, from, "{name}: refusal names the wrong sender");
                assert!(expected(reason), "{name}: refused for the wrong reason: {reason}");
            }
            other => panic!("{name}: unexpected refusal {other}"),
        }
        if replied {
            let reply = tokio::time::timeout(common::PROMPT, mallory_inbox.recv())
                .await
                .unwrap_or_else(|_| panic!("{name}: sender never told"))
                .unwrap()
                .unwrap();
            assert!(matches!(reply.signal.payload, SignalPayload::Error { .. }), "{name}: got {reply:?}");
        }
        // No state left behind from mallory (the legitimate session may be in
        // the table until it opens).
        wait_until(|| pair.listener.sessions_in_progress() <= 1).await;
    }

    let (dialed, accepted) = connecting.await.unwrap();
    dialed.send("still fine".into()).await.unwrap();
    assert_eq!(accepted.recv().await.unwrap(), "still fine");
    wait_until(|| pair.listener.sessions_in_progress() == 0 && pair.dialer.sessions_in_progress() == 0).await;
}

async fn wait_until(condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + common::PROMPT;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "state left behind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
