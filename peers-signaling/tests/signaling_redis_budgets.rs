//! Redis mode's request budgets and direct deliveries, against a real
//! `redis-server` shared by two instances: a device's budget lives on the
//! instance that holds it and follows it to another instance (both when it
//! left cleanly and when it registers while its old connection is still
//! held); an address's budget is shared by the instances through leases and
//! admits no more than the bound `docs/signaling.md` names; and a signal to
//! a device on the same instance, delivered without Redis, never overtakes
//! the device's queued messages.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::{RedisServer, connect, pair, redis_config};
use common::*;
use peers_signaling::{ErrorCode, Outcome, SignalKind, SignalingClient, SignalingClientOptions};
use serde_json::json;

/// Sends from `from` to `to` until a signal is refused; the number
/// delivered before, and the refusal's message.
async fn send_until_refused(from: &SignalingClient, to: &peers_sdk::DeviceId, most: usize) -> (usize, String) {
    let mut accepted = 0;
    loop {
        match from.send(to, SignalKind::Ready, json!({})).await.unwrap().outcome {
            Outcome::Delivered => accepted += 1,
            Outcome::Rejected { reason } => {
                assert_eq!(reason.code, ErrorCode::RateLimited, "{reason:?}");
                return (accepted, reason.message);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(accepted <= most, "more than {most} accepted: the budget did not hold");
    }
}

/// Whole seconds since `since`, rounded up: requests the rate gave back.
fn seconds(since: Instant) -> usize {
    since.elapsed().as_secs() as usize + 1
}

/// Waits until Redis holds no presence for `device` (its release is done).
async fn released(redis: &RedisServer, device: &peers_sdk::DeviceId) {
    let key = format!("test:{{d:{device}}}:on");
    tokio::time::timeout(PROMPT, async {
        while redis.query::<Option<String>>(redis::cmd("GET").arg(&key)).await.is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the presence was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_over_its_budget_stays_refused_on_another_instance() {
    let redis = RedisServer::start().await;
    let mut config = redis_config(&redis);
    config.rate_limits.device_per_second = 1;
    config.rate_limits.device_burst = 5;
    let (one, two) = pair(config).await;
    let (bob_keys, _bob) = connect(&one.url().unwrap(), "bob").await;
    let (alice_keys, alice) = connect(&one.url().unwrap(), "alice").await;
    let (bob, alice_id) = (bob_keys.device_id(), alice_keys.device_id());

    // On instance one, which holds Alice: her burst of 5, then refusals.
    let started = Instant::now();
    let (accepted, message) = send_until_refused(&alice, &bob, 20).await;
    assert!(message.contains("this device"), "{message}");
    assert!(accepted >= 5 && accepted <= 5 + seconds(started), "{accepted} accepted from a burst of 5");

    // She leaves and registers on instance two: her budget went to Redis
    // with the release and comes back with the claim, so she is not given a
    // new burst; only what the rate (1/s) returned since gets through.
    let spent = Instant::now();
    alice.close().await;
    released(&redis, &alice_id).await;
    let alice =
        SignalingClient::connect(&two.url().unwrap(), &alice_keys, SignalingClientOptions::default()).await.unwrap();
    let (accepted, _) = send_until_refused(&alice, &bob, 5).await;
    assert!(accepted <= seconds(spent), "{accepted} accepted on instance two: a fresh budget");

    // She registers on instance one again while instance two still holds
    // her (a replacement): what she spent there is not known yet, so the
    // move counts as her whole burst.
    let spent = Instant::now();
    let again =
        SignalingClient::connect(&one.url().unwrap(), &alice_keys, SignalingClientOptions::default()).await.unwrap();
    let (accepted, _) = send_until_refused(&again, &bob, 5).await;
    assert!(accepted <= seconds(spent), "{accepted} accepted after a replacement: a fresh budget");
    drop(alice);
}

/// Every client here comes from 127.0.0.1: one address, two instances. Each
/// instance takes the address's budget from Redis in leases of a tenth of
/// the burst; together they admit at most `burst + rate × T + instances ×
/// lease`, and, once both are refused, no less than the burst (what the
/// leases held was spent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_gets_one_budget_across_instances_within_the_lease_bound() {
    const BURST: usize = 40;
    const RATE: usize = 2;
    const LEASE: usize = BURST / 10;
    let redis = RedisServer::start().await;
    let mut config = redis_config(&redis);
    config.rate_limits.ip_per_second = RATE as u32;
    config.rate_limits.ip_burst = BURST as u32;
    let (one, two) = pair(config).await;
    let started = Instant::now();
    let (bob_keys, _bob) = connect(&one.url().unwrap(), "bob").await;
    let (_, alice) = connect(&one.url().unwrap(), "alice").await;
    let (_, carol) = connect(&two.url().unwrap(), "carol").await;
    let registrations = 3;
    let bob = bob_keys.device_id();

    // Alice (instance one) and Carol (instance two) take turns until both
    // are refused in the same round.
    let mut admitted = registrations;
    for round in 0.. {
        let mut refused = 0;
        for client in [&alice, &carol] {
            match client.send(&bob, SignalKind::Ready, json!({})).await.unwrap().outcome {
                Outcome::Delivered => admitted += 1,
                Outcome::Rejected { reason } => {
                    assert_eq!(reason.code, ErrorCode::RateLimited, "{reason:?}");
                    assert!(reason.message.contains("this address"), "{}", reason.message);
                    refused += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        if refused == 2 {
            break;
        }
        assert!(round < 4 * BURST, "the address's budget never ran out");
    }
    let bound = BURST + RATE * seconds(started) + 2 * LEASE;
    assert!(admitted <= bound, "{admitted} requests admitted from one address; the bound is {bound}");
    assert!(admitted >= BURST, "{admitted} admitted: leases kept part of the burst from being spent");
}

/// A device that registers gets its queue first, in batches (128 a batch);
/// signals sent to it meanwhile from a device on the same instance go
/// through Redis and queue behind what waits, and only once the queue is
/// handed over are signals given to its connection directly. The device
/// sees every queued message, then every newer one, each in the order sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_signals_never_overtake_the_queue_being_handed_over() {
    const QUEUED: usize = 250;
    const NEWER: usize = 60;
    let redis = RedisServer::start().await;
    let mut config = redis_config(&redis);
    config.rate_limits.device_burst = 1000;
    config.rate_limits.ip_burst = 5000;
    let one = server(config).await;
    let url = one.url().unwrap();
    let (bob_keys, bob) = connect(&url, "bob").await;
    bob.close().await;
    released(&redis, &bob_keys.device_id()).await;
    let mut alice = RawClient::connect(&url).await;
    assert_eq!(alice.register(&keys("alice")).await["ok"], json!(true));
    let signal =
        |i: usize| json!({"id": format!("m-{i}"), "to": bob_keys.device_id().to_string(), "kind": "ready", "body": {}});

    for i in 0..QUEUED {
        let reply = alice.request("signal", signal(i)).await;
        assert_eq!(reply["outcome"], json!("queued"), "{reply}");
    }
    // Bob registers: the reply comes with the first batch, the rest follows.
    // Alice's newer signals go out at once, without waiting for replies.
    let bob = SignalingClient::connect(&url, &bob_keys, SignalingClientOptions::default()).await.unwrap();
    for i in QUEUED..QUEUED + NEWER {
        alice.emit("signal", vec![signal(i)]).await;
    }
    let mut bob_in = bob.incoming().unwrap();
    for i in 0..QUEUED + NEWER {
        assert_eq!(incoming(&mut bob_in).await.id, format!("m-{i}"), "out of order");
    }
    for _ in QUEUED..QUEUED + NEWER {
        let reply = alice.expect("reply").await;
        assert_eq!(reply["ok"], json!(true), "{reply}");
    }
    // Drained: the next one is delivered directly, and in order too.
    let reply = alice.request("signal", signal(QUEUED + NEWER)).await;
    assert_eq!(reply["outcome"], json!("delivered"), "{reply}");
    assert_eq!(incoming(&mut bob_in).await.id, format!("m-{}", QUEUED + NEWER));
}
