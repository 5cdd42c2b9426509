//! Hostile and broken clients: each gets a clear, typed refusal, and a pair of
//! well-behaved devices on the same server keeps working throughout.

mod common;

use std::time::Duration;

use common::*;
use peers_sdk::DeviceKeys;
use peers_signaling::protocol::encode;
use peers_signaling::{
    ClientEvent, Error, ErrorCode, Outcome, ServerConfig, SignalKind, SignalingClient, SignalingClientOptions,
};
use peers_signaling::{DeliveredSignal, SignalingServer};
use serde_json::json;
use tokio::sync::mpsc;

/// Alice and Bob, registered, and Bob's inbox.
struct Bystanders {
    alice: SignalingClient,
    bob_keys: DeviceKeys,
    bob: SignalingClient,
    bob_in: mpsc::Receiver<DeliveredSignal>,
    sent: usize,
}

impl Bystanders {
    async fn new(server: &SignalingServer) -> Bystanders {
        let alice = client(server, &keys("alice")).await;
        let bob_keys = keys("bob");
        let bob = client(server, &bob_keys).await;
        let bob_in = bob.incoming().unwrap();
        Bystanders { alice, bob_keys, bob, bob_in, sent: 0 }
    }

    /// Alice's offer still reaches Bob, from Alice, and nothing else does.
    async fn still_work(&mut self) {
        self.sent += 1;
        let body = json!({"sdp": format!("still {}", self.sent)});
        let sent = self.alice.send(self.bob.device_id(), SignalKind::Offer, body.clone()).await.unwrap();
        assert_eq!(sent.outcome, Outcome::Delivered);
        let got = incoming(&mut self.bob_in).await;
        assert_eq!((got.id, &got.from, got.body), (sent.id, self.alice.device_id(), body));
    }
}

fn offer_to(to: &str) -> serde_json::Value {
    json!({"id": "m1", "to": to, "kind": "offer", "body": {"sdp": "v=0"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_before_registration_are_refused() {
    let server = server(ServerConfig::in_memory()).await;
    let mut pair = Bystanders::new(&server).await;
    let mut raw = RawClient::connect(&server.url().unwrap()).await;
    let to = pair.bob.device_id().to_string();
    for (event, payload) in [
        ("signal", offer_to(&to)),
        ("subscribe", json!({"devices": [to]})),
        ("ice-config", json!({})),
        ("session-create", json!({})),
        ("session-join", json!({"code": "1234-ABCDEF"})),
    ] {
        assert_eq!(code(&raw.request(event, payload).await), "not_registered", "{event}");
    }
    pair.still_work().await;
    nothing(&mut pair.bob_in, Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_must_be_fresh_for_the_connection_and_match_the_key() {
    let server = server(ServerConfig::in_memory()).await;
    let mut pair = Bystanders::new(&server).await;
    let url = server.url().unwrap();
    let mallory = keys("mallory");

    // A valid signature over another connection's challenge (a replay).
    let first = RawClient::connect(&url).await;
    let stolen = RawClient::registration(&mallory, &first.nonce, &first.origin);
    let mut second = RawClient::connect(&url).await;
    assert_eq!(code(&second.request("register", stolen).await), "bad_signature");
    second.expect("close").await; // the challenge is spent: disconnected

    // Bob's public key with Mallory's signature: claiming another device.
    let mut third = RawClient::connect(&url).await;
    let mut forged = RawClient::registration(&mallory, &third.nonce, &third.origin);
    forged["public_key"] = json!(encode(pair.bob_keys.signing_public().as_bytes()));
    assert_eq!(code(&third.request("register", forged).await), "bad_signature");

    // The domain string matters: a bare signature of the nonce is refused.
    let mut fourth = RawClient::connect(&url).await;
    let mut bare = RawClient::registration(&mallory, &fourth.nonce, &fourth.origin);
    bare["signature"] = json!(encode(&mallory.sign(&fourth.nonce)));
    assert_eq!(code(&fourth.request("register", bare).await), "bad_signature");

    // Garbage in the fields.
    let mut fifth = RawClient::connect(&url).await;
    let reply = fifth.request("register", json!({"public_key": "!!", "signature": "AAAA"})).await;
    assert_eq!(code(&reply), "bad_request");

    // A good registration on a fresh connection, then a second one on it.
    let mut sixth = RawClient::connect(&url).await;
    assert_eq!(sixth.register(&mallory).await["ok"], json!(true));
    assert_eq!(code(&sixth.register(&mallory).await), "already_registered");
    pair.still_work().await;
}

/// Issue 13, hardening: the registration signature covers the server's
/// origin. A malicious server A that hands a device server B's challenge
/// gets a signature for A's origin, which B refuses, whether it is presented
/// as A's or as B's; B's own origin registers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_for_another_server_is_refused() {
    let a = server(ServerConfig::in_memory()).await;
    let b = server(ServerConfig::in_memory()).await;
    let (a_url, b_url) = (a.url().unwrap(), b.url().unwrap());
    let a_origin = peers_signaling::protocol::server_origin(&a_url).unwrap();
    let victim = keys("victim");

    // What the device signs when it believes it talks to A.
    let mut relayed = RawClient::connect(&b_url).await;
    let for_a = RawClient::registration(&victim, &relayed.nonce, &a_origin);
    let reply = relayed.request("register", for_a.clone()).await;
    assert_eq!(code(&reply), "bad_signature", "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains(&a_origin), "{reply}");
    relayed.expect("close").await;

    // The same signature, claiming B's origin: it does not verify.
    let mut claimed = RawClient::connect(&b_url).await;
    let mut for_a = RawClient::registration(&victim, &claimed.nonce, &a_origin);
    for_a["origin"] = json!(claimed.origin);
    assert_eq!(code(&claimed.request("register", for_a).await), "bad_signature");

    // An origin written another way is refused as malformed.
    let mut loose = RawClient::connect(&b_url).await;
    let request = RawClient::registration(&victim, &loose.nonce, &format!("{}/", loose.origin));
    assert_eq!(code(&loose.request("register", request).await), "bad_request");

    // B's own origin, by any name the Host header carries: registered.
    let mut honest = RawClient::connect(&b_url).await;
    assert_eq!(honest.register(&victim).await["ok"], json!(true));
    let port = b.local_addr().unwrap().port();
    let by_name = format!("http://localhost:{port}");
    let named = SignalingClient::connect(&by_name, &keys("named"), SignalingClientOptions::default()).await;
    assert!(named.is_ok(), "the Host header's origin is accepted by default: {:?}", named.err());
}

/// With `public_origins` configured, only those origins register, whatever
/// the Host header says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_public_origins_are_the_only_ones_accepted() {
    let mut config = ServerConfig::in_memory();
    config.public_origins = vec!["https://signal.example".into(), "http://signal.example:8080".into()];
    let server = server(config).await;
    let url = server.url().unwrap();
    let device = keys("configured");
    let mut dialed = RawClient::connect(&url).await;
    let reply = dialed.register(&device).await;
    assert_eq!(code(&reply), "bad_signature", "the address it dialed is not a public origin: {reply}");
    for origin in ["https://signal.example:443", "http://signal.example:8080"] {
        let mut proxied = RawClient::connect(&url).await;
        let request = RawClient::registration(&device, &proxied.nonce, origin);
        assert_eq!(proxied.request("register", request).await["ok"], json!(true), "{origin}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_forged_signals_are_refused() {
    let server = server(ServerConfig::in_memory()).await;
    let mut pair = Bystanders::new(&server).await;
    let mut raw = RawClient::connect(&server.url().unwrap()).await;
    let mallory = keys("mallory");
    raw.register(&mallory).await;
    let bob = pair.bob.device_id().to_string();

    // A forged sender field is refused, not relayed.
    let mut forged = offer_to(&bob);
    forged["from"] = json!(pair.alice.device_id().to_string());
    let reply = raw.request("signal", forged).await;
    assert_eq!(code(&reply), "bad_request");
    assert!(reply["error"]["message"].as_str().unwrap().contains("from"), "{reply}");
    // A "from" inside the body is just body: the real sender is stamped on top.
    let mut inside = offer_to(&bob);
    inside["body"]["from"] = json!(pair.alice.device_id().to_string());
    assert_eq!(raw.request("signal", inside).await["outcome"], json!("delivered"));
    let got = incoming(&mut pair.bob_in).await;
    assert_eq!(got.from, mallory.device_id());

    let mut oversized = offer_to(&bob);
    oversized["body"]["sdp"] = json!("a".repeat(40 * 1024));
    let reply = raw.request("signal", oversized).await;
    assert_eq!(code(&reply), "too_large");
    assert!(reply["error"]["message"].as_str().unwrap().contains("sdp"), "{reply}");

    let cases = [
        (json!({"id": "m", "to": bob, "kind": "bogus", "body": {}}), "unknown_kind"),
        (json!({"id": "m", "to": bob, "kind": "offer", "body": "v=0"}), "bad_request"),
        (json!({"id": "m", "to": bob, "kind": "offer", "body": {}}), "bad_request"),
        (json!({"id": "m", "to": "not-a-device", "kind": "ready", "body": {}}), "bad_request"),
        (json!({"id": "has spaces", "to": bob, "kind": "ready", "body": {}}), "bad_request"),
        (json!({"id": "m", "kind": "ready", "body": {}}), "bad_request"),
        (json!({"id": "m", "to": bob, "kind": "ice-candidate", "body": {"candidate": 7}}), "bad_request"),
        (json!({"id": "m", "to": mallory.device_id().to_string(), "kind": "ready", "body": {}}), "self_addressed"),
        (json!({"devices": "everyone"}), "bad_request"),
    ];
    for (n, (payload, expected)) in cases.into_iter().enumerate() {
        let event = if payload.get("devices").is_some() { "subscribe" } else { "signal" };
        assert_eq!(code(&raw.request(event, payload).await), expected, "case {n}");
    }
    // Not an object at all, two arguments, an unknown event: refused as notices
    // or replies without a request number.
    raw.emit("signal", vec![json!("just a string")]).await;
    assert_eq!(raw.expect("reply").await["error"]["code"], json!("bad_request"));
    raw.emit("signal", vec![json!({}), json!({})]).await;
    assert_eq!(raw.expect("reply").await["error"]["code"], json!("bad_request"));
    assert_eq!(code(&raw.request("steal-everything", json!({})).await), "unknown_event");

    nothing(&mut pair.bob_in, Duration::from_millis(100)).await;
    pair.still_work().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_rate_limited_without_touching_other_devices() {
    let mut config = ServerConfig::in_memory();
    config.rate_limits.device_per_second = 2;
    config.rate_limits.device_burst = 20;
    let server = server(config).await;
    let mut pair = Bystanders::new(&server).await;
    let flooder = client(&server, &keys("flooder")).await;
    let victim = *pair.bob.device_id();
    let mut limited = 0;
    let mut delivered = 0;
    for n in 0..60 {
        match flooder.send(&victim, SignalKind::Ready, json!({"n": n})).await.unwrap().outcome {
            Outcome::Delivered => delivered += 1,
            Outcome::Rejected { reason } => {
                assert_eq!(reason.code, ErrorCode::RateLimited);
                assert!(reason.message.contains("device"), "{reason}");
                limited += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(limited >= 30, "only {limited} of 60 refused");
    assert!(delivered >= 20, "the burst of 20 was not allowed: {delivered}");
    for _ in 0..delivered {
        assert_eq!(&incoming(&mut pair.bob_in).await.from, flooder.device_id());
    }
    pair.still_work().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_registration_replaces_the_first_cleanly() {
    let server = server(ServerConfig::in_memory()).await;
    let pair = Bystanders::new(&server).await;
    let mut alice_events = pair.alice.events().unwrap();
    pair.alice.subscribe_presence(&[pair.bob_keys.device_id()]).await.unwrap();
    let mut old_events = pair.bob.events().unwrap();

    let new_bob = client(&server, &pair.bob_keys).await;
    let mut new_in = new_bob.incoming().unwrap();
    let notice = event(&mut old_events, |e| match e {
        ClientEvent::Notice(notice) => Some(notice.clone()),
        _ => None,
    })
    .await;
    assert_eq!(notice.code, ErrorCode::Replaced);
    tokio::time::timeout(PROMPT, pair.bob.closed()).await.expect("old connection closed");
    let sent = pair.alice.send(&pair.bob_keys.device_id(), SignalKind::Ready, json!({})).await.unwrap();
    assert_eq!(sent.outcome, Outcome::Delivered);
    assert_eq!(incoming(&mut new_in).await.id, sent.id);
    // Bob never looked offline to his watchers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(event) = alice_events.try_recv() {
        assert!(!matches!(event, ClientEvent::Presence { online: false, .. }), "{event:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_dropped_and_the_connection_cap_holds() {
    let mut config = ServerConfig::in_memory();
    config.registration_timeout = Duration::from_millis(300);
    config.max_connections = 3;
    let server = server(config).await;
    let mut pair = Bystanders::new(&server).await;
    let url = server.url().unwrap();

    let mut silent = RawClient::connect(&url).await;
    let notice = silent.expect("notice").await;
    assert_eq!(notice["code"], json!("registration_timeout"));
    silent.expect("close").await;
    // Wait for the server to count the slot free again.
    let deadline = tokio::time::Instant::now() + PROMPT;
    while server.connections() > 2 {
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let third = client(&server, &keys("carol")).await;
    let refused = SignalingClient::connect(&url, &keys("dave"), SignalingClientOptions::default()).await.unwrap_err();
    let text = refused.to_string();
    assert!(matches!(refused, Error::Closed { .. } | Error::Connect { .. }), "{refused:?}");
    assert!(text.contains("connection limit"), "{text}");
    third.close().await;
    pair.still_work().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_bounded() {
    let mut config = ServerConfig::in_memory();
    config.max_subscriptions = 4;
    let server = server(config).await;
    let watcher = client(&server, &keys("watcher")).await;
    let many: Vec<_> = (0..5).map(|n| keys(&format!("d{n}")).device_id()).collect();
    watcher.subscribe_presence(&many[..4]).await.unwrap();
    match watcher.subscribe_presence(&many[4..]).await.unwrap_err() {
        Error::Refused { rejection, .. } => assert_eq!(rejection.code, ErrorCode::TooManySubscriptions),
        other => panic!("{other:?}"),
    }
    watcher.unsubscribe_presence(&many[..1]).await.unwrap();
    watcher.subscribe_presence(&many[4..]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_that_is_not_json_drops_only_its_own_connection() {
    let server = server(ServerConfig::in_memory()).await;
    let mut pair = Bystanders::new(&server).await;
    let addr = server.local_addr().unwrap();
    let sid = polling_session(addr).await;
    assert_eq!(server.connections(), 3);
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    http(addr, "POST", &path, "42/signaling,[\"signal\",{\"id\":").await;
    // socketioxide drops the client: its session is gone and its slot is free.
    let deadline = tokio::time::Instant::now() + PROMPT;
    while server.connections() > 2 {
        assert!(tokio::time::Instant::now() < deadline, "the broken client is still connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, response) = http(addr, "GET", &path, "").await;
    assert!(status != 200 || response.ends_with('1'), "session still alive: {response}");
    pair.still_work().await;
}
