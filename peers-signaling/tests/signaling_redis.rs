//! The Redis backend: two server instances share one real `redis-server`
//! (started by each test on a free loopback port). Devices on different
//! instances reach each other, the queue and its bounds, expiry notices,
//! presence and rate limits hold across instances, and killing an instance
//! (the real binary, SIGKILL) loses no queued message.

mod common;

use std::time::Duration;

use common::redis_server::{PRESENCE_TTL, RedisServer, connect, pair, redis_config, start_instance};
use common::*;
use peers_signaling::{
    ClientEvent, ErrorCode, Outcome, OutgoingSignal, SignalKind, SignalingClient, SignalingClientOptions,
};
use serde_json::{Value, json};

fn body(kind: SignalKind, n: usize) -> Value {
    match kind {
        SignalKind::Offer | SignalKind::Answer => json!({"sdp": format!("v=0 sdp {n}")}),
        SignalKind::IceCandidate => json!({"candidate": format!("candidate:{n}")}),
        SignalKind::Error => json!({"message": format!("error {n}")}),
        _ => json!({"n": n}),
    }
}

fn outcome_event(event: &ClientEvent) -> Option<(String, Outcome)> {
    match event {
        ClientEvent::Outcome { id, outcome, .. } => Some((id.clone(), outcome.clone())),
        _ => None,
    }
}

fn notice_code(event: &ClientEvent) -> Option<ErrorCode> {
    match event {
        ClientEvent::Notice(rejection) => Some(rejection.code),
        _ => None,
    }
}

fn presence_event(event: &ClientEvent) -> Option<(peers_sdk::DeviceId, bool)> {
    match event {
        ClientEvent::Presence { device, online } => Some((*device, *online)),
        _ => None,
    }
}

/// Whether `device` went online or offline, from a presence event about it.
fn presence_of(device: peers_sdk::DeviceId) -> impl Fn(&ClientEvent) -> Option<bool> + Copy {
    move |e| presence_event(e).filter(|(about, _)| *about == device).map(|(_, online)| online)
}

/// Messages and bytes queued overall, read from Redis itself.
async fn redis_queue_total(redis: &RedisServer) -> (u64, u64) {
    let n: Option<u64> = redis.query(redis::cmd("ZCARD").arg("test:{qt}:z")).await;
    let b: Option<u64> = redis.query(redis::cmd("GET").arg("test:{qt}:b")).await;
    (n.unwrap_or(0), b.unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_on_one_instance_reaches_a_device_on_the_other() {
    let redis = RedisServer::start().await;
    let (one, two) = pair(redis_config(&redis)).await;
    let (alice_keys, alice) = connect(&one.url().unwrap(), "alice").await;
    let (bob_keys, bob) = connect(&two.url().unwrap(), "bob").await;
    let mut alice_events = alice.events().unwrap();
    let mut bob_in = bob.incoming().unwrap();
    let mut alice_in = alice.incoming().unwrap();

    // Presence is shared: each sees the other online across instances.
    assert_eq!(alice.subscribe_presence(&[bob_keys.device_id()]).await.unwrap(), vec![bob_keys.device_id()]);
    assert_eq!(bob.subscribe_presence(&[alice_keys.device_id()]).await.unwrap(), vec![alice_keys.device_id()]);

    // All six kinds, in order, delivered directly.
    let mut sent = Vec::new();
    for (n, kind) in SignalKind::ALL.iter().copied().enumerate() {
        let result = alice.send(&bob_keys.device_id(), kind, body(kind, n)).await.unwrap();
        assert_eq!(result.outcome, Outcome::Delivered, "{kind:?}");
        sent.push((result.id, kind, body(kind, n)));
    }
    for (id, kind, body) in &sent {
        let got = incoming(&mut bob_in).await;
        assert_eq!((&got.id, got.kind, &got.body, got.queued), (id, *kind, body, false));
        assert_eq!(got.from, alice_keys.device_id());
    }
    // And back.
    let answer = bob.send(&alice_keys.device_id(), SignalKind::Answer, body(SignalKind::Answer, 99)).await.unwrap();
    assert_eq!(answer.outcome, Outcome::Delivered);
    let got = incoming(&mut alice_in).await;
    assert_eq!((got.id, got.from), (answer.id, bob_keys.device_id()));

    // A device registering on instance two is announced to a watcher on one,
    // and so is its going away.
    let carol_keys = keys("carol");
    assert!(alice.subscribe_presence(&[carol_keys.device_id()]).await.unwrap().is_empty());
    let carol =
        SignalingClient::connect(&two.url().unwrap(), &carol_keys, SignalingClientOptions::default()).await.unwrap();
    // (Bob's own announcement, published before alice subscribed, may still be
    // in flight between the instances: only carol's events count here.)
    let carol_id = carol_keys.device_id();
    let about_carol = presence_of(carol_id);
    assert!(event(&mut alice_events, about_carol).await, "carol online");
    carol.close().await;
    assert!(!event(&mut alice_events, about_carol).await, "carol offline");
    // Nothing was queued on the way.
    assert_eq!(redis_queue_total(&redis).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_queued_through_one_instance_is_delivered_on_the_other_in_order() {
    let redis = RedisServer::start().await;
    let (one, two) = pair(redis_config(&redis)).await;
    let (alice_keys, alice) = connect(&one.url().unwrap(), "alice").await;
    let mut alice_events = alice.events().unwrap();
    let bob_keys = keys("bob");
    let mut sent = Vec::new();
    for n in 0..12 {
        let kind = SignalKind::ALL[n % SignalKind::ALL.len()];
        let result = alice.send(&bob_keys.device_id(), kind, body(kind, n)).await.unwrap();
        assert!(matches!(result.outcome, Outcome::Queued { expires_at } if expires_at > 0), "{result:?}");
        sent.push((result.id, kind, body(kind, n)));
    }
    let (messages, bytes) = redis_queue_total(&redis).await;
    assert_eq!(messages, 12, "the queue lives in Redis");
    assert!(bytes > 0);

    let bob =
        SignalingClient::connect(&two.url().unwrap(), &bob_keys, SignalingClientOptions::default()).await.unwrap();
    let mut bob_in = bob.incoming().unwrap();
    for (id, kind, body) in &sent {
        let got = incoming(&mut bob_in).await;
        assert_eq!((&got.id, got.kind, &got.body, got.queued), (id, *kind, body, true));
        assert_eq!(got.from, alice_keys.device_id());
    }
    // The sender, on the other instance, hears "delivered" for each, in order.
    for (id, _, _) in &sent {
        assert_eq!(event(&mut alice_events, outcome_event).await, (id.clone(), Outcome::Delivered));
    }
    assert_eq!(redis_queue_total(&redis).await, (0, 0));
    // Once the registration's drain has seen the queue empty, messages go
    // straight through. Until then (its last look may come just after the
    // outcomes above) a message still takes the queue, behind the others.
    let deadline = tokio::time::Instant::now() + PROMPT;
    loop {
        let sent = alice.send(&bob_keys.device_id(), SignalKind::Ready, json!({})).await.unwrap();
        let got = incoming(&mut bob_in).await;
        assert_eq!(got.id, sent.id, "a later message overtook an earlier one");
        match sent.outcome {
            Outcome::Delivered => {
                assert!(!got.queued);
                break;
            }
            Outcome::Queued { .. } => {
                assert!(got.queued);
                assert_eq!(event(&mut alice_events, outcome_event).await, (sent.id, Outcome::Delivered));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "messages to an online device are still queued");
    }
}

/// Requests wait on Redis; a request that arrives while one waits must not
/// overtake it. A burst written without waiting for replies (signals to a
/// device on the same instance and to one on the other, with presence
/// subscriptions between them) is answered in the order it was sent, and each
/// recipient gets its signals in that order; then, once idle, the next request
/// is answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_requests_is_answered_and_delivered_in_arrival_order() {
    let redis = RedisServer::start().await;
    let (one, two) = pair(redis_config(&redis)).await;
    let url = one.url().unwrap();
    let (bob_keys, bob) = connect(&url, "bob").await;
    let (carol_keys, carol) = connect(&two.url().unwrap(), "carol").await;
    let (mut bob_in, mut carol_in) = (bob.incoming().unwrap(), carol.incoming().unwrap());
    let mut raw = RawClient::connect(&url).await;
    assert_eq!(raw.register(&keys("alice")).await["ok"], json!(true));

    const BURST: u64 = 48;
    let (mut to_bob, mut to_carol) = (Vec::new(), Vec::new());
    for req in 100..100 + BURST {
        let payload = match req % 3 {
            0 => json!({"req": req, "devices": [carol_keys.device_id().to_string()]}),
            n => {
                let (to, sent) = if n == 1 { (&bob_keys, &mut to_bob) } else { (&carol_keys, &mut to_carol) };
                let id = format!("burst-{req}");
                sent.push(id.clone());
                json!({"req": req, "id": id, "to": to.device_id().to_string(), "kind": "ready", "body": {}})
            }
        };
        raw.emit(if req % 3 == 0 { "subscribe" } else { "signal" }, vec![payload]).await;
    }
    for req in 100..100 + BURST {
        let reply = raw.expect("reply").await;
        assert_eq!(reply["req"], json!(req), "replies out of order: {reply}");
        assert_eq!(reply["ok"], json!(true), "{reply}");
        if req % 3 != 0 {
            assert_eq!(reply["outcome"], json!("delivered"), "{reply}");
        }
    }
    for (rx, sent) in [(&mut bob_in, &to_bob), (&mut carol_in, &to_carol)] {
        for id in sent {
            assert_eq!(&incoming(rx).await.id, id, "signals out of order");
        }
    }
    // Idle again: the next request starts (and is answered) straight away.
    let payload = json!({"id": "after", "to": bob_keys.device_id().to_string(), "kind": "ready", "body": {}});
    assert_eq!(raw.request("signal", payload).await["outcome"], json!("delivered"));
    assert_eq!(incoming(&mut bob_in).await.id, "after");
}

/// A presence can outlive its connection: the disconnect's release is a
/// Redis round trip, and one that fails (Redis slow or away) leaves the
/// presence until `presence_ttl`. A signal to a device whose presence names
/// a connection this instance no longer holds is queued, not answered
/// `delivered` to nobody, and reaches the device when it registers again;
/// the stale presence is released and the device's watchers hear it is
/// offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_to_a_presence_that_outlived_its_connection_is_queued() {
    let redis = RedisServer::start().await;
    let (one, _two) = pair(redis_config(&redis)).await;
    let url = one.url().unwrap();
    let (_, alice) = connect(&url, "alice").await;
    let mut alice_events = alice.events().unwrap();
    let (bob_keys, bob) = connect(&url, "bob").await;
    let bob_id = bob_keys.device_id();
    assert_eq!(alice.subscribe_presence(&[bob_id]).await.unwrap(), vec![bob_id]);
    let key = format!("test:{{d:{bob_id}}}:on");
    let presence: String = redis.query(redis::cmd("GET").arg(&key)).await;
    assert!(presence.ends_with("|up"), "{presence}");

    // Bob goes; then his presence is put back as a failed release leaves it.
    bob.close().await;
    let about_bob = presence_of(bob_id);
    assert!(!event(&mut alice_events, about_bob).await, "bob offline");
    let () = redis.query(redis::cmd("SET").arg(&key).arg(&presence).arg("PX").arg(60_000)).await;

    let sent = alice.send(&bob_id, SignalKind::Offer, body(SignalKind::Offer, 1)).await.unwrap();
    assert!(matches!(sent.outcome, Outcome::Queued { .. }), "sent to a connection that is gone: {sent:?}");
    let left: Option<String> = redis.query(redis::cmd("GET").arg(&key)).await;
    assert_eq!(left, None, "the stale presence is released");
    assert!(!event(&mut alice_events, about_bob).await, "bob offline, told again as his presence ends");

    let bob = SignalingClient::connect(&url, &bob_keys, SignalingClientOptions::default()).await.unwrap();
    let got = incoming(&mut bob.incoming().unwrap()).await;
    assert_eq!((got.id, got.queued), (sent.id, true));
}

/// A disconnect whose presence release fails (Redis hung for longer than a
/// request's timeout) tries it again: the device is announced offline, and
/// its presence gone, once Redis answers, not left up until it runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_failed_is_tried_again() {
    let redis = RedisServer::start().await;
    let (one, two) = pair(redis_config(&redis)).await;
    let (_, alice) = connect(&two.url().unwrap(), "alice").await;
    let mut alice_events = alice.events().unwrap();
    let (bob_keys, bob) = connect(&one.url().unwrap(), "bob").await;
    let bob_id = bob_keys.device_id();
    assert_eq!(alice.subscribe_presence(&[bob_id]).await.unwrap(), vec![bob_id]);

    redis.freeze();
    bob.close().await;
    // Longer than a request's timeout (2 s): the release fails.
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    redis.thaw();
    let thawed = tokio::time::Instant::now();
    let about_bob = presence_of(bob_id);
    assert!(!event(&mut alice_events, about_bob).await, "bob announced offline");
    assert!(thawed.elapsed() < PRESENCE_TTL / 2, "announced only after {:?}", thawed.elapsed());
    let left: Option<String> = redis.query(redis::cmd("GET").arg(format!("test:{{d:{bob_id}}}:on"))).await;
    assert_eq!(left, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_instance_loses_no_queued_message() {
    let redis = RedisServer::start().await;
    let (mut first, first_url) = start_instance(&redis).await;
    let second = server(redis_config(&redis)).await;
    let second_url = second.url().unwrap();
    let alice_keys = keys("alice");
    let bob_keys = keys("bob");
    let alice = SignalingClient::connect(&first_url, &alice_keys, SignalingClientOptions::default()).await.unwrap();
    let (carol_keys, carol) = connect(&first_url, "carol").await;
    let ids = queue_five_candidates(&alice, &bob_keys.device_id()).await;
    // No graceful shutdown: the instance dies holding alice's and carol's connections.
    first.kill().await.unwrap();
    tokio::time::timeout(PROMPT, alice.closed()).await.expect("alice noticed the instance died");
    tokio::time::timeout(PROMPT, carol.closed()).await.expect("carol noticed the instance died");

    // Both re-register on the surviving instance; bob gets every message, in order.
    let alice = SignalingClient::connect(&second_url, &alice_keys, SignalingClientOptions::default()).await.unwrap();
    let mut alice_events = alice.events().unwrap();
    let bob = SignalingClient::connect(&second_url, &bob_keys, SignalingClientOptions::default()).await.unwrap();
    expect_five_candidates(&mut bob.incoming().unwrap(), &ids, &alice_keys).await;
    for id in &ids {
        assert_eq!(event(&mut alice_events, outcome_event).await, (id.clone(), Outcome::Delivered));
    }
    // Carol's presence is still held by the dead instance (it runs out only
    // after PRESENCE_TTL), but her instance is gone from Redis: a message for
    // her is queued rather than sent into the void, and reaches her on the
    // other instance.
    let later = alice.send(&carol_keys.device_id(), SignalKind::Ready, json!({"late": true})).await.unwrap();
    assert!(matches!(later.outcome, Outcome::Queued { .. }), "{later:?}");
    let carol = SignalingClient::connect(&second_url, &carol_keys, SignalingClientOptions::default()).await.unwrap();
    let got = incoming(&mut carol.incoming().unwrap()).await;
    assert_eq!((got.id, got.body, got.queued), (later.id, json!({"late": true}), true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_bounds_hold_across_instances() {
    let redis = RedisServer::start().await;
    let mut config = redis_config(&redis);
    config.queue.per_device_messages = 3;
    config.queue.total_messages = 5;
    let (one, two) = pair(config).await;
    let (_, alice) = connect(&one.url().unwrap(), "alice").await;
    let (_, dave) = connect(&two.url().unwrap(), "dave").await;
    let (bob, erin, frank) = (keys("bob").device_id(), keys("erin").device_id(), keys("frank").device_id());
    let queued = |outcome: &Outcome| matches!(outcome, Outcome::Queued { .. });
    let refused = |outcome: Outcome| match outcome {
        Outcome::Rejected { reason } => reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    for _ in 0..2 {
        assert!(queued(&alice.send(&bob, SignalKind::Ready, json!({})).await.unwrap().outcome));
    }
    assert!(queued(&dave.send(&bob, SignalKind::Ready, json!({})).await.unwrap().outcome));
    // Bob's queue is full whichever instance the fourth message comes through.
    let reason = refused(dave.send(&bob, SignalKind::Ready, json!({})).await.unwrap().outcome);
    assert_eq!(reason.code, ErrorCode::QueueFull);
    assert!(reason.message.contains("recipient's queue"), "{}", reason.message);
    for _ in 0..2 {
        assert!(queued(&alice.send(&erin, SignalKind::Ready, json!({})).await.unwrap().outcome));
    }
    // Five queued overall: the server-wide bound refuses the next one.
    let reason = refused(dave.send(&frank, SignalKind::Ready, json!({})).await.unwrap().outcome);
    assert_eq!(reason.code, ErrorCode::QueueFull);
    assert!(reason.message.contains("server's queue"), "{}", reason.message);
    assert_eq!(redis_queue_total(&redis).await.0, 5, "a refused message is not queued");
}

/// The per-sender and per-address queue quotas are shared: an address
/// spreading its devices over both instances gets one quota, and a sender on
/// another address keeps queueing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_quotas_hold_across_instances() {
    let redis = RedisServer::start().await;
    let mut config = redis_config(&redis);
    config.queue.per_sender_messages = common::quota::PER_SENDER;
    config.queue.per_address_messages = common::quota::PER_ADDRESS;
    let (one, two) = pair(config).await;
    let addr = |server: &peers_signaling::SignalingServer| {
        server.url().unwrap().trim_start_matches("http://").parse().unwrap()
    };
    common::quota::run(addr(&one), addr(&two)).await;
    let held: Option<u64> = redis.query(redis::cmd("ZCARD").arg("test:{qa:127.0.0.2}:z")).await;
    assert_eq!(held, Some(common::quota::PER_ADDRESS as u64), "the address's count in Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_notices_reach_the_sender_on_any_instance() {
    let redis = RedisServer::start().await;
    let (one, two) = pair(redis_config(&redis)).await;
    let (alice_keys, alice) = connect(&one.url().unwrap(), "alice").await;
    let mut alice_events = alice.events().unwrap();
    let bob = keys("bob").device_id();
    let short = |ttl_ms| {
        OutgoingSignal::new(bob, SignalKind::Offer, json!({"sdp": "v=0"})).with_ttl(Duration::from_millis(ttl_ms))
    };

    // Online sender: the notice comes at the deadline.
    let sent = alice.send_signal(short(300)).await.unwrap();
    assert!(matches!(sent.outcome, Outcome::Queued { .. }), "{sent:?}");
    assert_eq!(event(&mut alice_events, outcome_event).await, (sent.id, Outcome::Expired));
    // A time to live of zero expires at once.
    assert_eq!(alice.send_signal(short(0)).await.unwrap().outcome, Outcome::Expired);

    // Offline sender: the notice waits in Redis and reaches it on the other instance.
    let sent = alice.send_signal(short(300)).await.unwrap();
    assert!(matches!(sent.outcome, Outcome::Queued { .. }), "{sent:?}");
    alice.close().await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(redis_queue_total(&redis).await, (0, 0), "the expired message left the queue");
    let alice =
        SignalingClient::connect(&two.url().unwrap(), &alice_keys, SignalingClientOptions::default()).await.unwrap();
    let mut alice_events = alice.events().unwrap();
    assert_eq!(event(&mut alice_events, outcome_event).await, (sent.id, Outcome::Expired));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_on_another_instance_replaces_the_old_connection_and_rate_limits_are_shared() {
    let redis = RedisServer::start().await;
    let mut config = redis_config(&redis);
    config.rate_limits.device_per_second = 1;
    config.rate_limits.device_burst = 6;
    let (one, two) = pair(config).await;
    let (bob_keys, old_bob) = connect(&one.url().unwrap(), "bob").await;
    let mut old_events = old_bob.events().unwrap();
    let (alice_keys, alice) = connect(&one.url().unwrap(), "alice").await;
    let bob = bob_keys.device_id();
    for _ in 0..3 {
        assert_eq!(alice.send(&bob, SignalKind::Ready, json!({})).await.unwrap().outcome, Outcome::Delivered);
    }

    // Bob registers again on instance two: the old connection is told and closed,
    // and messages reach the new one.
    let new_bob =
        SignalingClient::connect(&two.url().unwrap(), &bob_keys, SignalingClientOptions::default()).await.unwrap();
    let notice = event(&mut old_events, notice_code).await;
    assert_eq!(notice, ErrorCode::Replaced);
    tokio::time::timeout(PROMPT, old_bob.closed()).await.expect("the old connection was closed");
    let mut new_in = new_bob.incoming().unwrap();
    for _ in 0..3 {
        let sent = alice.send(&bob, SignalKind::Ready, json!({})).await.unwrap();
        assert_eq!(sent.outcome, Outcome::Delivered);
        assert_eq!(incoming(&mut new_in).await.id, sent.id);
    }

    // Alice spent her burst of 6 on instance one. Her budget lives in Redis,
    // so moving to instance two does not refill it: only what the rate (1/s)
    // gave back since then gets through.
    alice.close().await;
    let alice =
        SignalingClient::connect(&two.url().unwrap(), &alice_keys, SignalingClientOptions::default()).await.unwrap();
    let mut accepted = 0;
    loop {
        match alice.send(&bob, SignalKind::Ready, json!({})).await.unwrap().outcome {
            Outcome::Delivered => accepted += 1,
            Outcome::Rejected { reason } => {
                assert_eq!(reason.code, ErrorCode::RateLimited);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(accepted < 6, "a fresh budget: the rate limit is not shared");
    }
    assert!(accepted <= 3, "{accepted} accepted after the burst was spent");
}

/// A signal's budgets are charged while its recipient is looked up; one
/// refused `rate_limited` must not be delivered or queued all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_over_its_budget_is_neither_delivered_nor_queued() {
    let redis = RedisServer::start().await;
    let mut config = redis_config(&redis);
    config.rate_limits.device_per_second = 1;
    config.rate_limits.device_burst = 4;
    let one = server(config).await;
    let url = one.url().unwrap();
    let (bob_keys, bob) = connect(&url, "bob").await;
    let (_, alice) = connect(&url, "alice").await;
    let to = bob_keys.device_id();
    let mut bob_in = bob.incoming().unwrap();

    // Bob online: Alice sends until her budget refuses; Bob gets exactly the
    // accepted ones, in order, and never the refused one.
    let mut accepted = Vec::new();
    let refused = loop {
        let sent = alice.send(&to, SignalKind::Ready, json!({})).await.unwrap();
        match sent.outcome {
            Outcome::Delivered => accepted.push(sent.id),
            Outcome::Rejected { reason } => {
                assert_eq!(reason.code, ErrorCode::RateLimited, "{reason:?}");
                break sent.id;
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(accepted.len() <= 4, "the burst of 4 did not hold");
    };
    for id in &accepted {
        assert_eq!(&incoming(&mut bob_in).await.id, id);
    }
    let late = tokio::time::timeout(Duration::from_millis(500), incoming(&mut bob_in)).await;
    assert!(late.is_err(), "the refused signal {refused} was delivered: {late:?}");

    // Bob offline: one request's worth comes back each second. Alice's
    // signals go to the queue until one is refused; the refused one is not
    // queued: Redis holds only the accepted ones and Bob is handed only them.
    bob.close().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut queued = Vec::new();
    loop {
        let sent = alice.send(&to, SignalKind::Ready, json!({})).await.unwrap();
        match sent.outcome {
            Outcome::Queued { .. } => queued.push(sent.id),
            Outcome::Rejected { reason } => {
                assert_eq!(reason.code, ErrorCode::RateLimited, "{reason:?}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(queued.len() <= 3, "more queued than the rate returned");
    }
    assert!(!queued.is_empty(), "a second gave nothing back");
    assert_eq!(redis_queue_total(&redis).await.0, queued.len() as u64, "a refused signal was queued");
    let bob = SignalingClient::connect(&url, &bob_keys, SignalingClientOptions::default()).await.unwrap();
    let mut bob_in = bob.incoming().unwrap();
    for id in &queued {
        assert_eq!(&incoming(&mut bob_in).await.id, id);
    }
    let late = tokio::time::timeout(Duration::from_millis(500), incoming(&mut bob_in)).await;
    assert!(late.is_err(), "a refused signal was queued and delivered: {late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_spreading_requests_over_instances_gets_one_budget() {
    let redis = RedisServer::start().await;
    let mut config = redis_config(&redis);
    config.rate_limits.ip_per_second = 1;
    config.rate_limits.ip_burst = 12;
    let (one, two) = pair(config).await;
    // Every client here comes from 127.0.0.1. Registering costs one request each.
    let (bob_keys, _bob) = connect(&one.url().unwrap(), "bob").await;
    let (_, alice) = connect(&one.url().unwrap(), "alice").await;
    let (_, carol) = connect(&two.url().unwrap(), "carol").await;
    let bob = bob_keys.device_id();
    let started = std::time::Instant::now();
    // Alice, on instance one, spends what is left of the address's burst.
    let mut spent = 0;
    loop {
        match alice.send(&bob, SignalKind::Ready, json!({})).await.unwrap().outcome {
            Outcome::Delivered => spent += 1,
            Outcome::Rejected { reason } => {
                assert_eq!(reason.code, ErrorCode::RateLimited);
                assert!(reason.message.contains("this address"), "{}", reason.message);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(spent <= 12, "the address's burst of 12 did not hold");
    }
    // Carol, on instance two, has spent one request there: a budget of that
    // instance's own would let about 11 more through. The shared one gives
    // only what the rate (1/s) returned since.
    let mut accepted = 0u64;
    loop {
        match carol.send(&bob, SignalKind::Ready, json!({})).await.unwrap().outcome {
            Outcome::Delivered => accepted += 1,
            Outcome::Rejected { reason } => {
                assert_eq!(reason.code, ErrorCode::RateLimited, "{reason:?}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(accepted < 11, "instance two gave the address a fresh budget");
    }
    let returned = started.elapsed().as_secs() + 1;
    assert!(accepted <= returned, "{accepted} accepted on instance two, only {returned} returned by the rate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_refuses_requests_clearly_and_the_server_recovers() {
    let mut redis = RedisServer::start().await;
    let one = server(redis_config(&redis)).await;
    let url = one.url().unwrap();
    let (alice_keys, alice) = connect(&url, "alice").await;
    let (bob_keys, bob_client) = connect(&url, "bob").await;
    let mut bob_in = bob_client.incoming().unwrap();
    let bob = bob_keys.device_id();
    let first = alice.send(&bob, SignalKind::Ready, json!({})).await.unwrap();
    assert_eq!(first.outcome, Outcome::Delivered);
    assert_eq!(incoming(&mut bob_in).await.id, first.id);

    // A signal that needs Redis (its recipient is not on this instance: it
    // would be queued) is refused. (One between two devices held here needs
    // no Redis while the instance's lease of the address lasts.)
    redis.stop();
    let offline = keys("carol").device_id();
    let refused = alice.send(&offline, SignalKind::Ready, json!({})).await.unwrap();
    let Outcome::Rejected { reason } = refused.outcome else { panic!("queued without Redis: {refused:?}") };
    assert_eq!(reason.code, ErrorCode::Internal, "{reason:?}");
    assert!(!alice.is_closed(), "the connection stays up");

    // Redis comes back empty. Until the heartbeat notices, signals to bob
    // are delivered to his connection here, or queued (his presence is gone)
    // when that connection is not known here to have its queue handed over;
    // then the instance tells both devices it lost their registrations and
    // closes them. Nothing answered delivered or queued is lost: bob gets
    // the delivered ones at once and, registering again as any client does
    // after a close, the queued ones in order, then direct signals again.
    redis.restart().await;
    let mut bob_events = bob_client.events().unwrap();
    let (mut queued, mut delivered) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + 4 * PRESENCE_TTL;
    while !alice.is_closed() {
        match alice.send(&bob, SignalKind::Ready, json!({"n": queued.len()})).await {
            Ok(sent) => match sent.outcome {
                Outcome::Queued { .. } => queued.push(sent.id),
                Outcome::Delivered => delivered.push(sent.id),
                Outcome::Rejected { reason } => assert_eq!(reason.code, ErrorCode::Internal, "{reason:?}"),
                other => panic!("unexpected {other:?}"),
            },
            Err(err) => assert!(alice.is_closed(), "{err:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "the lost registrations were never closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let notice = event(&mut bob_events, notice_code).await;
    assert_eq!(notice, ErrorCode::Internal);
    tokio::time::timeout(PROMPT, bob_client.closed()).await.expect("bob's lost registration was closed");
    assert!(queued.len() + delivered.len() > 0, "nothing was sent between the restart and the close");
    for id in &delivered {
        assert_eq!(&incoming(&mut bob_in).await.id, id, "a signal answered delivered did not arrive");
    }

    let alice = SignalingClient::connect(&url, &alice_keys, SignalingClientOptions::default()).await.unwrap();
    let bob_client = SignalingClient::connect(&url, &bob_keys, SignalingClientOptions::default()).await.unwrap();
    let mut bob_in = bob_client.incoming().unwrap();
    for id in &queued {
        let got = incoming(&mut bob_in).await;
        assert_eq!((&got.id, got.queued), (id, true));
    }
    let sent = alice.send(&bob, SignalKind::Ready, json!({"again": true})).await.unwrap();
    assert_eq!(sent.outcome, Outcome::Delivered);
    let got = incoming(&mut bob_in).await;
    assert_eq!((got.id, got.body), (sent.id, json!({"again": true})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_takes_redis_settings_from_a_toml_file_and_errors_name_the_field() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signaling.toml");
    let toml = format!("bind = \"127.0.0.1:0\"\nredis_url = \"{}\"\nredis_key_prefix = \"from-toml\"\n", redis.url());
    std::fs::write(&file, toml).unwrap();
    let (_instance, url) = start_binary(&["--config", file.to_str().unwrap()]).await;
    let (_, alice) = connect(&url, "alice").await;
    let sent = alice.send(&keys("bob").device_id(), SignalKind::Ready, json!({})).await.unwrap();
    assert!(matches!(sent.outcome, Outcome::Queued { .. }), "{sent:?}");
    let queued: Option<u64> = redis.query(redis::cmd("ZCARD").arg("from-toml:{qt}:z")).await;
    assert_eq!(queued, Some(1), "queued in Redis under the file's key prefix");

    let url = redis.url();
    let stderr = binary_fails(vec!["--redis-url".into(), url.clone(), "--memory".into(), "true".into()]).await;
    assert!(stderr.contains("redis_url"), "{stderr}");
    let stderr =
        binary_fails(vec!["--redis-url".into(), url.clone(), "--redis-key-prefix".into(), "no spaces".into()]).await;
    assert!(stderr.contains("store.key_prefix"), "{stderr}");
    let stderr = binary_fails(vec!["--redis-url".into(), url, "--redis-presence-ttl-ms".into(), "10".into()]).await;
    assert!(stderr.contains("store.presence_ttl"), "{stderr}");
    let stderr = binary_fails(vec!["--redis-url".into(), "http://not-redis".into()]).await;
    assert!(stderr.contains("store.redis_url"), "{stderr}");
    let stderr =
        binary_fails(vec!["--redis-presence-ttl-ms".into(), "5000".into(), "--memory".into(), "true".into()]).await;
    assert!(stderr.contains("redis_url"), "{stderr}");
}

/// The session, relay and subscription quotas in Redis mode: an address
/// spreading its devices over both instances gets one session and relay
/// quota (shared in Redis), subscriptions are bounded per instance, and
/// devices on another address keep every service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_relay_and_subscription_quotas_hold_across_instances() {
    use common::quota::*;
    let redis = RedisServer::start().await;
    let mut config = redis_config(&redis);
    config.sessions.creates_per_minute_per_device = SESSION_CREATES_PER_DEVICE;
    config.sessions.creates_per_minute_per_ip = SESSION_CREATES_PER_ADDRESS;
    config.sessions.per_address = SESSIONS_LIVE_PER_ADDRESS;
    config.sessions.max_sessions = MAX_SESSIONS;
    config.relay.per_device = RELAYS_PER_DEVICE;
    config.relay.per_address = RELAYS_PER_ADDRESS;
    config.max_subscriptions = SUBSCRIPTIONS_PER_CONNECTION;
    config.max_subscriptions_per_address = SUBSCRIPTIONS_PER_ADDRESS;
    let (one, two) = pair(config).await;
    let addr = |server: &peers_signaling::SignalingServer| -> std::net::SocketAddr {
        server.url().unwrap().trim_start_matches("http://").parse().unwrap()
    };
    sessions(addr(&one), addr(&two)).await;
    relays(addr(&one), addr(&two)).await;
    subscriptions(addr(&one)).await;
}
