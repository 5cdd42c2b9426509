//! Redis Cluster mode: two `peers-signaling` binaries (`--redis-cluster
//! true`) share a Redis Cluster of three nodes started by each test. Devices
//! on different instances signal each other, a queued message reaches its
//! recipient on the other instance, a frame relay crosses instances, the
//! state is spread over the nodes and the instances' channels are sharded;
//! killing an instance is noticed through its sharded "alive" channel long
//! before its devices' presence runs out. The binary takes the cluster
//! setting from its config file (with a list of seed nodes whose first is
//! down), and refuses it without a URL or with a database other than 0, and
//! a list of URLs without it. A slot moved to another node while the servers
//! run (a resharding) is followed (`MOVED`). On a cluster with a replica per
//! primary, a primary killed under the servers is replaced by its replica and
//! the service resumes within seconds, the replicated queue intact.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::redis_server::{PRESENCE_TTL, RedisCluster, connect, pair, redis_config, start_instance};
use common::*;
use peers_sdk::Socket;
use peers_signaling::{ClientEvent, ErrorCode, Outcome, SignalKind, SignalingClient, SignalingClientOptions};
use serde_json::json;

fn outcome_event(event: &ClientEvent) -> Option<(String, Outcome)> {
    match event {
        ClientEvent::Outcome { id, outcome, .. } => Some((id.clone(), outcome.clone())),
        _ => None,
    }
}

/// `test:`-prefixed keys on each node.
async fn keys_per_node(cluster: &RedisCluster) -> Vec<usize> {
    let mut counts = Vec::new();
    for node in cluster.nodes() {
        let keys: Vec<String> = node.query(redis::cmd("KEYS").arg("test:*")).await;
        counts.push(keys.len());
    }
    counts
}

/// The channels subscribed on each node: (plain, sharded).
async fn channels_per_node(cluster: &RedisCluster) -> Vec<(Vec<String>, Vec<String>)> {
    let mut channels = Vec::new();
    for node in cluster.nodes() {
        let plain: Vec<String> = node.query(redis::cmd("PUBSUB").arg("CHANNELS").arg("test*")).await;
        let sharded: Vec<String> = node.query(redis::cmd("PUBSUB").arg("SHARDCHANNELS").arg("test*")).await;
        channels.push((plain, sharded));
    }
    channels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_binaries_on_a_three_node_cluster_signal_queue_and_relay_across_instances() {
    let cluster = RedisCluster::start().await;
    let (_one, one_url) = start_instance(&cluster).await;
    let (_two, two_url) = start_instance(&cluster).await;
    let (alice_keys, alice) = connect(&one_url, "alice").await;
    let (bob_keys, bob) = connect(&two_url, "bob").await;
    let mut alice_events = alice.events().unwrap();

    // Presence and a signal each way, across instances.
    assert_eq!(alice.subscribe_presence(&[bob_keys.device_id()]).await.unwrap(), vec![bob_keys.device_id()]);
    let offer = alice.send(&bob_keys.device_id(), SignalKind::Offer, json!({"sdp": "v=0 offer"})).await.unwrap();
    assert_eq!(offer.outcome, Outcome::Delivered);
    let got = incoming(&mut bob.incoming().unwrap()).await;
    assert_eq!((got.id, got.from, got.body), (offer.id, alice_keys.device_id(), json!({"sdp": "v=0 offer"})));
    let answer = bob.send(&alice_keys.device_id(), SignalKind::Answer, json!({"sdp": "v=0 answer"})).await.unwrap();
    assert_eq!(answer.outcome, Outcome::Delivered);
    let got = incoming(&mut alice.incoming().unwrap()).await;
    assert_eq!((got.id, got.from), (answer.id, bob_keys.device_id()));

    // A message for an offline device is queued, and reaches it on the
    // other instance; its sender hears it was delivered.
    let carol_keys = keys("carol");
    let queued = alice.send(&carol_keys.device_id(), SignalKind::Ready, json!({"n": 1})).await.unwrap();
    assert!(matches!(queued.outcome, Outcome::Queued { .. }), "{queued:?}");
    let carol = SignalingClient::connect(&two_url, &carol_keys, SignalingClientOptions::default()).await.unwrap();
    let got = incoming(&mut carol.incoming().unwrap()).await;
    assert_eq!((&got.id, got.queued), (&queued.id, true));
    assert_eq!(event(&mut alice_events, outcome_event).await, (queued.id, Outcome::Delivered));

    // A frame relay between the two instances, both ways.
    let (a, b) = tokio::join!(alice.open_relay(bob.device_id(), PROMPT), bob.open_relay(alice.device_id(), PROMPT));
    let (a, b) = (a.expect("alice's relay opens"), b.expect("bob's relay opens"));
    for n in 0..32u8 {
        let frame = Bytes::from(vec![n; 16 * 1024]);
        a.send(frame.clone()).await.unwrap();
        assert_eq!(tokio::time::timeout(PROMPT, b.recv()).await.expect("in time").unwrap(), frame);
        b.send(Bytes::from(vec![n])).await.unwrap();
        assert_eq!(tokio::time::timeout(PROMPT, a.recv()).await.expect("in time").unwrap(), Bytes::from(vec![n]));
    }

    // The state lives on more than one node, and every channel of the
    // instances (relay, alive, socket.io) is a sharded one.
    let keys = keys_per_node(&cluster).await;
    assert!(keys.iter().filter(|&&n| n > 0).count() >= 2, "keys per node: {keys:?}");
    let channels = channels_per_node(&cluster).await;
    assert!(channels.iter().all(|(plain, _)| plain.is_empty()), "{channels:?}");
    let sharded: Vec<&String> = channels.iter().flat_map(|(_, sharded)| sharded).collect();
    assert!(sharded.iter().any(|c| c.starts_with("test:relay:")), "{sharded:?}");
    assert!(sharded.iter().any(|c| c.starts_with("test:alive:")), "{sharded:?}");
    assert!(sharded.iter().any(|c| c.starts_with("test:socket.io")), "{sharded:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_noticed_through_its_sharded_alive_channel() {
    let cluster = RedisCluster::start().await;
    let (mut one, one_url) = start_instance(&cluster).await;
    let (_two, two_url) = start_instance(&cluster).await;
    let (_, alice) = connect(&two_url, "alice").await;
    let (carol_keys, carol) = connect(&one_url, "carol").await;
    let (a, c) = tokio::join!(alice.open_relay(carol.device_id(), PROMPT), carol.open_relay(alice.device_id(), PROMPT));
    let (a, _c) = (a.expect("alice's relay opens"), c.expect("carol's relay opens"));
    let direct = alice.send(&carol_keys.device_id(), SignalKind::Ready, json!({"n": 0})).await.unwrap();
    assert_eq!(direct.outcome, Outcome::Delivered);

    // No graceful shutdown: carol's instance dies holding her connection.
    let killed = tokio::time::Instant::now();
    one.kill().await.unwrap();
    tokio::time::timeout(PROMPT, carol.closed()).await.expect("carol noticed the instance died");
    // Alice's relay to her closes, and a message for her is queued rather
    // than sent into the void, well before her presence runs out.
    tokio::time::timeout(PROMPT, a.closed()).await.expect("the relay closed");
    let later = alice.send(&carol_keys.device_id(), SignalKind::Ready, json!({"late": true})).await.unwrap();
    assert!(matches!(later.outcome, Outcome::Queued { .. }), "{later:?}");
    assert!(killed.elapsed() < PRESENCE_TTL, "took {:?}", killed.elapsed());
    // She registers on the other instance and gets it.
    let carol = SignalingClient::connect(&two_url, &carol_keys, SignalingClientOptions::default()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), incoming(&mut carol.incoming().unwrap())).await.unwrap();
    assert_eq!((got.id, got.body, got.queued), (later.id, json!({"late": true}), true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_takes_redis_cluster_and_seed_nodes_from_a_toml_file_and_refuses_what_a_cluster_cannot_be() {
    let cluster = RedisCluster::start().await;
    let seed = cluster.nodes()[1].url();
    // The first seed node is down (nothing listens there): the server finds the
    // cluster from the next one.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let seeds = format!("redis://{dead}, {seed}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signaling.toml");
    let toml = format!(
        "bind = \"127.0.0.1:0\"\nredis_url = \"{seeds}\"\nredis_cluster = true\nredis_key_prefix = \"from-toml\"\n"
    );
    std::fs::write(&file, toml).unwrap();
    let (_instance, url) = start_binary(&["--config", file.to_str().unwrap()]).await;
    let (_, alice) = connect(&url, "alice").await;
    let sent = alice.send(&keys("bob").device_id(), SignalKind::Ready, json!({})).await.unwrap();
    assert!(matches!(sent.outcome, Outcome::Queued { .. }), "{sent:?}");
    // Read through a cluster client of the test's own: the key is on
    // whichever node serves its slot.
    let client = redis::cluster::ClusterClient::new([seed.as_str()]).unwrap();
    let mut connection = client.get_async_connection().await.unwrap();
    let queued: Option<u64> = redis::cmd("ZCARD").arg("from-toml:{qt}:z").query_async(&mut connection).await.unwrap();
    assert_eq!(queued, Some(1), "queued in the cluster under the file's key prefix");

    let stderr = binary_fails(vec!["--redis-cluster".into(), "true".into(), "--memory".into(), "true".into()]).await;
    assert!(stderr.contains("redis_cluster") && stderr.contains("need redis_url"), "{stderr}");
    let stderr = binary_fails(vec!["--redis-url".into(), seeds]).await;
    assert!(stderr.contains("store.redis_url") && stderr.contains("seed nodes"), "{stderr}");
    let database_two = format!("{seed}/2");
    let stderr = binary_fails(vec!["--redis-url".into(), database_two, "--redis-cluster".into(), "true".into()]).await;
    assert!(stderr.contains("store.redis_url") && stderr.contains("database 0"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_to_another_node_is_followed() {
    let cluster = RedisCluster::start().await;
    let (one, two) = pair(redis_config(&cluster)).await;
    let (_, alice) = connect(&one.url().unwrap(), "alice").await;
    let mut alice_events = alice.events().unwrap();
    let bob_keys = keys("bob");
    let first = alice.send(&bob_keys.device_id(), SignalKind::Ready, json!({"n": 1})).await.unwrap();
    assert!(matches!(first.outcome, Outcome::Queued { .. }), "{first:?}");

    // Bob's queue (his device's slot) moves to another node while both
    // instances run, as a resharding would move it.
    let (slot, moved) = cluster.move_slot_of(&format!("test:{{d:{}}}", bob_keys.device_id())).await;
    assert!(moved > 0, "slot {slot} held bob's queue");

    // Both instances follow: alice queues a second message, bob registers
    // on the other instance and gets both in order, alice hears of both.
    let second = alice.send(&bob_keys.device_id(), SignalKind::Ready, json!({"n": 2})).await.unwrap();
    assert!(matches!(second.outcome, Outcome::Queued { .. }), "{second:?}");
    let bob =
        SignalingClient::connect(&two.url().unwrap(), &bob_keys, SignalingClientOptions::default()).await.unwrap();
    let mut bob_in = bob.incoming().unwrap();
    for sent in [&first, &second] {
        let got = incoming(&mut bob_in).await;
        assert_eq!((&got.id, got.queued), (&sent.id, true));
    }
    for sent in [first, second] {
        assert_eq!(event(&mut alice_events, outcome_event).await, (sent.id, Outcome::Delivered));
    }
    // And a direct signal now that bob is up.
    let direct = alice.send(&bob_keys.device_id(), SignalKind::Ready, json!({"n": 3})).await.unwrap();
    assert_eq!(direct.outcome, Outcome::Delivered);
    assert_eq!(incoming(&mut bob_in).await.id, direct.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_fails_over_to_its_replica_and_service_resumes_in_seconds() {
    let mut cluster = RedisCluster::start_with_replicas().await;
    let (one, two) = pair(redis_config(&cluster)).await;
    let (_, alice) = connect(&one.url().unwrap(), "alice").await;
    let bob_keys = keys("bob");
    let first = alice.send(&bob_keys.device_id(), SignalKind::Ready, json!({"n": 1})).await.unwrap();
    assert!(matches!(first.outcome, Outcome::Queued { .. }), "{first:?}");

    // Bob's queue is on one primary; once its replica holds the message too,
    // that primary dies (SIGKILL) and the replica takes its slots over.
    let (primary, slot) = cluster.primary_of(&format!("test:{{d:{}}}", bob_keys.device_id())).await;
    let replica = &cluster.nodes()[primary + 3];
    let deadline = tokio::time::Instant::now() + PROMPT;
    loop {
        let copied: usize = replica.query(redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot)).await;
        if copied > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the replica never got bob's queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = tokio::time::Instant::now();
    cluster.kill(primary);

    // Alice keeps sending; within seconds a message is queued again (the
    // server refuses with `internal` meanwhile, never claims a false success).
    let mut refused = 0;
    let second = loop {
        let sent = alice.send(&bob_keys.device_id(), SignalKind::Ready, json!({"n": 2})).await.unwrap();
        match &sent.outcome {
            Outcome::Rejected { reason } if reason.code == ErrorCode::Internal => {
                refused += 1;
                assert!(killed.elapsed() < Duration::from_secs(20), "no service 20 s after the kill: {sent:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => break sent,
        }
    };
    assert!(matches!(second.outcome, Outcome::Queued { .. }), "{second:?}");
    let resumed = killed.elapsed();
    assert!(resumed < Duration::from_secs(20), "took {resumed:?}");

    // Bob registers on the other instance and gets both, in order.
    let bob =
        SignalingClient::connect(&two.url().unwrap(), &bob_keys, SignalingClientOptions::default()).await.unwrap();
    let mut bob_in = bob.incoming().unwrap();
    for sent in [&first, &second] {
        let got = tokio::time::timeout(Duration::from_secs(10), incoming(&mut bob_in)).await.expect("delivered");
        assert_eq!((&got.id, got.queued), (&sent.id, true));
    }
    eprintln!("service resumed {resumed:?} after the primary was killed ({refused} sends refused meanwhile)");
}
