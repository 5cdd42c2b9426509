//! Two registered clients see each other's presence and relay every kind of
//! signal both ways; the sender is the one the server authenticated.

mod common;

use std::time::Duration;

use common::*;
use peers_signaling::{ClientEvent, Outcome, ServerConfig, SignalKind};
use serde_json::json;

fn body(kind: SignalKind, n: usize) -> serde_json::Value {
    match kind {
        SignalKind::Offer | SignalKind::Answer => {
            json!({"sdp": format!("v=0\r\no=- {n} 2 IN IP4 127.0.0.1\r\n"), "type": kind.as_str()})
        }
        SignalKind::IceCandidate => {
            json!({"candidate": format!("candidate:{n} 1 udp 2122260223 127.0.0.1 {n} typ host"), "sdpMid": "0", "sdpMLineIndex": 0})
        }
        SignalKind::Error => json!({"message": format!("failure {n}")}),
        SignalKind::Ready | SignalKind::Cancel => json!({"n": n}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_see_presence_and_relay_every_kind_both_ways() {
    let server = server(ServerConfig::in_memory()).await;
    let (alice_keys, bob_keys) = (keys("alice"), keys("bob"));
    let alice = client(&server, &alice_keys).await;
    let mut alice_events = alice.events().unwrap();
    let mut alice_in = alice.incoming().unwrap();
    assert!(alice.incoming().is_none(), "incoming is handed out once");

    // Bob is offline: subscribing says so; his registration is announced.
    let online = alice.subscribe_presence(&[bob_keys.device_id()]).await.unwrap();
    assert!(online.is_empty());
    let bob = client(&server, &bob_keys).await;
    let mut bob_in = bob.incoming().unwrap();
    let came = event(&mut alice_events, |e| match e {
        ClientEvent::Presence { device, online } => Some((*device, *online)),
        _ => None,
    })
    .await;
    assert_eq!(came, (bob_keys.device_id(), true));
    assert_eq!(bob.subscribe_presence(&[alice_keys.device_id()]).await.unwrap(), vec![alice_keys.device_id()]);

    for (n, kind) in SignalKind::ALL.into_iter().enumerate() {
        let sent = alice.send(bob.device_id(), kind, body(kind, n)).await.unwrap();
        assert_eq!(sent.outcome, Outcome::Delivered, "{kind}");
        let got = incoming(&mut bob_in).await;
        assert_eq!((got.kind, &got.id, got.from, &got.body), (kind, &sent.id, alice_keys.device_id(), &body(kind, n)));
        assert!(!got.queued);

        let back = bob.send(alice.device_id(), kind, body(kind, n + 100)).await.unwrap();
        assert_eq!(back.outcome, Outcome::Delivered);
        let got = incoming(&mut alice_in).await;
        assert_eq!((got.kind, got.from, &got.body), (kind, bob_keys.device_id(), &body(kind, n + 100)));
    }

    // A burst keeps its order (an offer's candidates must follow it).
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(
            alice.send(bob.device_id(), SignalKind::IceCandidate, body(SignalKind::IceCandidate, n)).await.unwrap().id,
        );
    }
    for id in ids {
        assert_eq!(incoming(&mut bob_in).await.id, id);
    }

    // Bob leaves: Alice hears it, and her next message is queued, not delivered.
    bob.close().await;
    let went = event(&mut alice_events, |e| match e {
        ClientEvent::Presence { device, online } => Some((*device, *online)),
        _ => None,
    })
    .await;
    assert_eq!(went, (bob_keys.device_id(), false));
    let sent = alice.send(&bob_keys.device_id(), SignalKind::Ready, json!({})).await.unwrap();
    assert!(matches!(sent.outcome, Outcome::Queued { .. }), "{sent:?}");
    nothing(&mut alice_in, Duration::from_millis(100)).await;
    alice.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_each_get_their_own_outcome() {
    let server = server(ServerConfig::in_memory()).await;
    let alice = client(&server, &keys("alice")).await;
    let bob = client(&server, &keys("bob")).await;
    let mut bob_in = bob.incoming().unwrap();
    let sends = (0..200).map(|n| {
        let alice = alice.clone();
        let to = *bob.device_id();
        tokio::spawn(async move { alice.send(&to, SignalKind::Ready, json!({"n": n})).await.unwrap() })
    });
    let mut ids = std::collections::HashSet::new();
    for send in sends {
        let sent = send.await.unwrap();
        assert_eq!(sent.outcome, Outcome::Delivered);
        assert!(ids.insert(sent.id));
    }
    for _ in 0..200 {
        assert!(ids.remove(&incoming(&mut bob_in).await.id));
    }
    server.shutdown().await;
}
