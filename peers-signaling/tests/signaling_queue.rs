//! The offline queue: delivery in order on registration, expiry notices
//! (also to a sender that was offline), bounds that refuse with a reason.

mod common;

use std::time::Duration;

use common::*;
use peers_signaling::queue::QueueLimits;
use peers_signaling::{ClientEvent, ErrorCode, Outcome, OutgoingSignal, ServerConfig, SignalKind};
use serde_json::json;

fn config_with(queue: impl FnOnce(&mut QueueLimits)) -> ServerConfig {
    let mut config = ServerConfig::in_memory();
    queue(&mut config.queue);
    config
}

fn outcome_event(event: &ClientEvent) -> Option<(String, Outcome)> {
    match event {
        ClientEvent::Outcome { id, outcome, .. } => Some((id.clone(), outcome.clone())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_for_an_offline_device_arrive_in_order_when_it_registers() {
    let server = server(ServerConfig::in_memory()).await;
    let alice = client(&server, &keys("alice")).await;
    let mut alice_events = alice.events().unwrap();
    let bob_keys = keys("bob");
    let mut sent = Vec::new();
    for n in 0..20 {
        let kind = SignalKind::ALL[n % SignalKind::ALL.len()];
        let body = match kind {
            SignalKind::Offer | SignalKind::Answer => json!({"sdp": format!("sdp {n}")}),
            SignalKind::IceCandidate => json!({"candidate": format!("c{n}")}),
            _ => json!({"n": n}),
        };
        let result = alice.send(&bob_keys.device_id(), kind, body.clone()).await.unwrap();
        assert!(matches!(result.outcome, Outcome::Queued { expires_at } if expires_at > 0), "{result:?}");
        sent.push((result.id, kind, body));
    }
    assert_eq!(server.queue_depth().0, 20);

    let bob = client(&server, &bob_keys).await;
    let mut bob_in = bob.incoming().unwrap();
    for (id, kind, body) in &sent {
        let got = incoming(&mut bob_in).await;
        assert_eq!((&got.id, got.kind, &got.body, got.queued), (id, *kind, body, true));
        assert_eq!(&got.from, alice.device_id());
    }
    // The sender hears "delivered" for each, in the same order.
    for (id, _, _) in &sent {
        assert_eq!(event(&mut alice_events, outcome_event).await, (id.clone(), Outcome::Delivered));
    }
    assert_eq!(server.queue_depth(), (0, 0));
    // A message sent now goes straight through, after the queued ones.
    assert_eq!(alice.send(bob.device_id(), SignalKind::Ready, json!({})).await.unwrap().outcome, Outcome::Delivered);
    assert!(!incoming(&mut bob_in).await.queued);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelivered_message_expires_with_a_notice_to_the_sender() {
    let server = server(config_with(|q| q.default_ttl = Duration::from_millis(300))).await;
    let alice = client(&server, &keys("alice")).await;
    let mut alice_events = alice.events().unwrap();
    let bob_keys = keys("bob");
    let short = alice.send(&bob_keys.device_id(), SignalKind::Offer, json!({"sdp": "x"})).await.unwrap();
    let long = alice
        .send_signal(
            OutgoingSignal::new(bob_keys.device_id(), SignalKind::Ready, json!({})).with_ttl(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(event(&mut alice_events, outcome_event).await, (short.id, Outcome::Expired));
    assert!(started.elapsed() < Duration::from_secs(2), "expiry took {:?}", started.elapsed());
    assert_eq!(server.queue_depth().0, 1, "only the expired message left");
    // The long-lived one is still delivered.
    let bob = client(&server, &bob_keys).await;
    let mut bob_in = bob.incoming().unwrap();
    assert_eq!(incoming(&mut bob_in).await.id, long.id);
    assert_eq!(event(&mut alice_events, outcome_event).await, (long.id, Outcome::Delivered));
    nothing(&mut bob_in, Duration::from_millis(200)).await;

    // Time to live 0: deliver now or expire, never queued. Sent once the server
    // has seen bob go (his close and alice's send race otherwise).
    alice.subscribe_presence(&[bob_keys.device_id()]).await.unwrap();
    bob.close().await;
    let bob_id = bob_keys.device_id();
    event(&mut alice_events, |e| match e {
        ClientEvent::Presence { device, online: false } if *device == bob_id => Some(()),
        _ => None,
    })
    .await;
    let zero = OutgoingSignal::new(bob_keys.device_id(), SignalKind::Cancel, json!({})).with_ttl(Duration::ZERO);
    assert_eq!(alice.send_signal(zero).await.unwrap().outcome, Outcome::Expired);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_sender_gets_its_expiry_notice_when_it_registers_again() {
    let server = server(config_with(|q| q.default_ttl = Duration::from_millis(200))).await;
    let alice_keys = keys("alice");
    let alice = client(&server, &alice_keys).await;
    let sent = alice.send(&keys("bob").device_id(), SignalKind::Offer, json!({"sdp": "x"})).await.unwrap();
    alice.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alice = client(&server, &alice_keys).await;
    let mut alice_events = alice.events().unwrap();
    assert_eq!(event(&mut alice_events, outcome_event).await, (sent.id, Outcome::Expired));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_rejects_with_a_reason_and_keeps_what_it_has() {
    let server = server(config_with(|q| {
        q.per_device_messages = 3;
        q.total_messages = 5;
    }))
    .await;
    let alice = client(&server, &keys("alice")).await;
    let (bob_keys, carol_keys) = (keys("bob"), keys("carol"));
    for n in 0..3 {
        let sent = alice.send(&bob_keys.device_id(), SignalKind::Ready, json!({"n": n})).await.unwrap();
        assert!(matches!(sent.outcome, Outcome::Queued { .. }));
    }
    let refused = alice.send(&bob_keys.device_id(), SignalKind::Ready, json!({"n": 3})).await.unwrap();
    let Outcome::Rejected { reason } = refused.outcome else { panic!("{refused:?}") };
    assert_eq!(reason.code, ErrorCode::QueueFull);
    assert!(reason.message.contains("recipient's queue"), "{reason}");
    // The overall bound: two more fit for Carol, the third does not.
    for n in 0..2 {
        assert!(matches!(
            alice.send(&carol_keys.device_id(), SignalKind::Ready, json!({"n": n})).await.unwrap().outcome,
            Outcome::Queued { .. }
        ));
    }
    let refused = alice.send(&carol_keys.device_id(), SignalKind::Ready, json!({})).await.unwrap();
    let Outcome::Rejected { reason } = refused.outcome else { panic!("{refused:?}") };
    assert!(reason.message.contains("server's queue"), "{reason}");
    // Bob still gets exactly his three, in order.
    let bob = client(&server, &bob_keys).await;
    let mut bob_in = bob.incoming().unwrap();
    for n in 0..3 {
        assert_eq!(incoming(&mut bob_in).await.body, json!({"n": n}));
    }
    nothing(&mut bob_in, Duration::from_millis(200)).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_store_keeps_the_queue_across_server_instances() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default();
    config.store = peers_signaling::store::StoreConfig::Sqlite { data_dir: dir.path().to_owned() };
    let bob_keys = keys("bob");
    let first = server(config.clone()).await;
    let alice = client(&first, &keys("alice")).await;
    let sent = alice.send(&bob_keys.device_id(), SignalKind::Offer, json!({"sdp": "kept"})).await.unwrap();
    alice.close().await;
    first.shutdown().await;

    let second = server(config).await;
    assert_eq!(second.queue_depth().0, 1);
    let bob = client(&second, &bob_keys).await;
    let got = incoming(&mut bob.incoming().unwrap()).await;
    assert_eq!((got.id, got.body), (sent.id, json!({"sdp": "kept"})));
    second.shutdown().await;
}
