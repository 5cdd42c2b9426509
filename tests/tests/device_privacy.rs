//! Privacy by trust, over the real signaling server: a device that trusts
//! nobody gives a stranger (raw signaling clients written here, and a real
//! device that added it) no presence, no ICE candidate, no WebRTC answer, no
//! relay and no handshake message, while a device it trusts still connects
//! through the relay and over WebRTC. The device gives the server its trust
//! set as its allow list, so the server answers a stranger as if the device
//! did not exist, and the device drops whatever would still come.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peers_device::sync::{EngineOptions, SqliteSyncEngine};
use peers_device::{ConnectionClass, Device, Dialer, GroupId, ManagerEvent};
use peers_sdk::{DeviceId, DeviceInfo, DeviceKeys, TrustLevel};
use peers_signaling::{OutgoingSignal, SignalKind, SignalingClient, SignalingClientOptions};
use peers_tests::device::{TestDevice, WAIT};
use peers_tests::signaling::signaling_server;
use peers_transport_webrtc::WebRtcConfig;
use serde_json::json;

/// How long a stranger waits for anything from the device.
const STRANGER_WAIT: Duration = Duration::from_secs(5);

async fn device(url: &str, name: &str) -> Device {
    let keys = Arc::new(DeviceKeys::generate(name).expect("device keys"));
    Device::builder().keys(keys).signaling(url).watch_network(false).build().await.expect("device")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_trusts_nobody_gives_strangers_nothing_and_a_trusted_device_still_connects() {
    let server = signaling_server().await;
    let url = server.url().unwrap();
    // The loner syncs a group and trusts only the device its policy names,
    // which is nobody until the friend below exists.
    let group = GroupId::new("privacy").unwrap();
    let friend_id: Arc<Mutex<Option<DeviceId>>> = Arc::default();
    let vouched = friend_id.clone();
    let policy = move |info: &DeviceInfo| {
        if *vouched.lock().unwrap() == Some(info.device_id) { TrustLevel::Trusted } else { TrustLevel::Unknown }
    };
    let keys = Arc::new(DeviceKeys::generate("loner").unwrap());
    let engine = SqliteSyncEngine::in_memory(group.clone(), keys.device_id(), EngineOptions::default()).await.unwrap();
    let loner = Device::builder()
        .keys(keys)
        .signaling(&url)
        .group(Arc::new(engine))
        .trust_policy(policy)
        .watch_network(false)
        .build()
        .await
        .expect("device");
    loner.signaling().unwrap().registered(WAIT).await.expect("registered");

    // A raw client: watches the loner's presence, asks for a relay, sends an
    // offer and a candidate, and records everything that comes back.
    let keys = DeviceKeys::generate("raw stranger").unwrap();
    let raw = SignalingClient::connect(&url, &keys, SignalingClientOptions::default()).await.expect("registered");
    let mut incoming = raw.incoming().expect("incoming signals");
    let mut raw_events = raw.events().expect("events");
    let made_up = DeviceKeys::generate("nobody").unwrap().device_id();
    let online = raw.subscribe_presence(&[loner.id(), made_up]).await.expect("subscribed");
    assert!(online.is_empty(), "the stranger sees the loner online: {online:?}");
    let offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00\r\na=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n";
    for (kind, body) in [
        (SignalKind::Ready, json!({ "relay": true })),
        (SignalKind::Offer, json!({ "sdp": offer })),
        (SignalKind::IceCandidate, json!({ "candidate": "candidate:1 1 UDP 1 127.0.0.1 9 typ host" })),
    ] {
        // Answered as a signal to a device that does not exist: queued.
        let sent = raw.send_signal(OutgoingSignal::new(loner.id(), kind, body.clone())).await.expect("sent");
        let to_nobody = raw.send_signal(OutgoingSignal::new(made_up, kind, body)).await.expect("sent");
        assert!(matches!(sent.outcome, peers_signaling::Outcome::Queued { .. }), "{kind}: {:?}", sent.outcome);
        assert!(
            matches!(to_nobody.outcome, peers_signaling::Outcome::Queued { .. }),
            "{kind}: {:?}",
            to_nobody.outcome
        );
    }
    let relay = raw.open_relay(&loner.id(), STRANGER_WAIT).await;
    assert!(relay.is_err(), "the loner opened a relay for a stranger");

    // A stranger's WebRTC endpoint with a real offer: no answer, so it times out.
    let config = WebRtcConfig { connect_timeout: STRANGER_WAIT, ..WebRtcConfig::default() };
    let webrtc_stranger = peers_tests::webrtc::Device::register(&url, "webrtc stranger", config).await;
    let dialed = webrtc_stranger.endpoint.connect(loner.id()).await;
    assert!(dialed.is_err(), "the loner answered a stranger's WebRTC offer");

    // A real device that added the loner keeps dialing it (WebRTC and relay);
    // its relay dialer, asked directly, gets no relay, so no handshake starts.
    let stranger = device(&url, "stranger").await;
    stranger.signaling().unwrap().registered(WAIT).await.expect("registered");
    stranger.add_peer(loner.info(), &[]).await.unwrap();
    let relay = stranger.signaling().unwrap().relay.dial(loner.id()).await;
    assert!(relay.is_err(), "the loner opened a relay for a device that added it");

    // Nothing came back to the raw client, not even an error or a candidate.
    assert!(incoming.try_recv().is_err(), "the loner answered a raw stranger");
    let status = loner.manager().status();
    assert!(status.connections.is_empty(), "{:?}", status.connections);
    // The server kept every stranger's signal and relay request away: the
    // loner had nothing to drop.
    assert_eq!(status.strangers_refused, 0, "a stranger's request reached the loner");
    assert!(stranger.manager().connection(&loner.id()).is_none());

    // A device the loner trusts (its policy vouches for it and it is a
    // member of the loner's group; the loner does not dial it) connects
    // through the relay and over WebRTC, each signaled through the server.
    let mut friend = TestDevice::new("friend");
    friend.go_online(&url).await;
    // (The friend, in turn, answers only devices it trusts.)
    friend.manager.keep_connected(loner.id());
    *friend_id.lock().unwrap() = Some(friend.id());
    loner.manager().add_member(&group, friend.id()).await.unwrap();
    // The loner's allow list at the server now names the friend.
    loner.signaling().unwrap().sync_allow().await;
    assert_eq!(friend.relay_once(loner.id()).await.expect("a relayed handshake"), loner.id());
    assert_eq!(friend.webrtc_once(loner.id()).await.expect("a WebRTC handshake"), loner.id());
    let classes: BTreeSet<ConnectionClass> = loner
        .manager()
        .status()
        .history
        .iter()
        .filter_map(|entry| match &entry.event {
            ManagerEvent::Connected { device, class, .. } if *device == friend.id() => Some(*class),
            _ => None,
        })
        .collect();
    assert_eq!(classes, [ConnectionClass::ServerRelay, ConnectionClass::WebRtcDirect].into());
    assert!(incoming.try_recv().is_err(), "the raw stranger got something later");
    // Through all of it the raw stranger never saw the loner online.
    while let Ok(event) = raw_events.try_recv() {
        if let peers_signaling::ClientEvent::Presence { device, .. } = event {
            assert_ne!(device, loner.id(), "the stranger heard the loner's presence");
        }
    }
    server.shutdown().await;
}
