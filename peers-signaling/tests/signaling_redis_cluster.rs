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
//!
//! A resharding that moves a sharded pub/sub channel's slot (Redis drops
//! the channel's subscribers with an `sunsubscribe` push) while one device
//! signals another on the other instance and they relay frames: the socket.io
//! adapter's broadcast channel (with the recipient's own slot), every
//! channel of both instances, and each with a slow new node (paused as it
//! takes the slot). Every signal answered `delivered` arrives once, in order,
//! within seconds; none is queued; the recipient never looks offline; the
//! relay keeps running.

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

/// The channel every instance's socket.io adapter broadcasts on (for the
/// signaling namespace): a signal to a device held by another instance
/// crosses it.
const BROADCAST: &str = "test:socket.io-request#/signaling#";

/// Subscribers of the sharded `channel`, summed over the nodes.
async fn shard_subscribers(cluster: &RedisCluster, channel: &str) -> u64 {
    let mut total = 0;
    for node in cluster.nodes() {
        let (_, count): (String, u64) = node.query(redis::cmd("PUBSUB").arg("SHARDNUMSUB").arg(channel)).await;
        total += count;
    }
    total
}

/// Moves the slot of each of `channels` (and its keys) to another node, one
/// after the other, then waits until each has as many subscribers again as
/// before; the longest that took, from the moment the old node let the
/// channel's slot go (or the
/// channels not subscribed again within [`PROMPT`]). `pause`: the new node
/// is paused that long as each move ends (see `move_slot_pausing`).
async fn move_channels(
    cluster: &RedisCluster,
    channels: &[String],
    pause: Option<Duration>,
) -> Result<Duration, String> {
    let mut moved = Vec::new();
    for channel in channels {
        let before = shard_subscribers(cluster, channel).await;
        assert!(before > 0, "{channel} has subscribers");
        let (slot, _, released) = cluster.move_slot_pausing(channel, pause).await;
        moved.push((channel, slot, before, released));
    }
    let mut worst = Duration::ZERO;
    while !moved.is_empty() {
        let mut left = Vec::new();
        for (channel, slot, before, at) in moved {
            if shard_subscribers(cluster, channel).await >= before {
                worst = worst.max(at.elapsed());
            } else {
                left.push((channel, slot, before, at));
            }
        }
        if left.iter().any(|(.., at)| at.elapsed() > PROMPT) {
            let names: Vec<String> =
                left.iter().map(|(channel, slot, ..)| format!("{channel} (slot {slot})")).collect();
            return Err(format!("not subscribed again on their new nodes: {names:?}"));
        }
        moved = left;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(worst)
}

/// What a stream of signals saw while the slots moved.
struct Stream {
    /// Ids answered `delivered`, in the order sent.
    delivered: Vec<String>,
    /// Signals refused (`internal`: the request had no effect).
    refused: usize,
    /// Ids that arrived, in the order they arrived.
    arrived: Vec<String>,
    /// The longest time from a send to its arrival.
    worst: Duration,
}

impl Stream {
    /// What a user notices: every signal answered `delivered` arrives once, in
    /// order, within a few seconds; nothing else arrives; nothing is queued.
    fn check(&self, what: &str) {
        assert!(self.delivered.len() > 20, "{what}: too few delivered: {}", self.delivered.len());
        let mut seen = std::collections::HashSet::new();
        let twice: Vec<&String> = self.arrived.iter().filter(|id| !seen.insert(*id)).collect();
        assert!(twice.is_empty(), "{what}: arrived twice: {twice:?}");
        let lost: Vec<&String> = self.delivered.iter().filter(|id| !seen.contains(id)).collect();
        assert!(lost.is_empty(), "{what}: {} of {} answered delivered never arrived", lost.len(), self.delivered.len());
        assert_eq!(self.arrived, self.delivered, "{what}: in order, and only what was delivered");
        assert!(self.worst < Duration::from_secs(3), "{what}: a signal took {:?}", self.worst);
    }
}

/// `from` signals `to` every 20 ms for three seconds, `change` running from
/// 300 ms in; what `to` got (read from `to_in`).
async fn signal_through(
    from: &SignalingClient,
    to: &peers_sdk::DeviceId,
    to_in: &mut tokio::sync::mpsc::Receiver<peers_signaling::DeliveredSignal>,
    change: impl std::future::Future<Output = ()>,
) -> Stream {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    let sent_at = std::sync::Mutex::new(HashMap::new());
    let send = async {
        let (mut delivered, mut refused) = (Vec::new(), 0);
        let end = tokio::time::Instant::now() + Duration::from_secs(3);
        for n in 0u32.. {
            if tokio::time::Instant::now() > end {
                break;
            }
            sent_at.lock().unwrap().insert(n, tokio::time::Instant::now());
            let sent = from.send(to, SignalKind::Ready, json!({ "n": n })).await.unwrap();
            match sent.outcome {
                Outcome::Delivered => delivered.push(sent.id),
                Outcome::Rejected { reason } if reason.code == ErrorCode::Internal => refused += 1,
                other => panic!("signal {n}: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        done.store(true, Ordering::SeqCst);
        (delivered, refused)
    };
    let receive = async {
        let (mut arrived, mut worst) = (Vec::new(), Duration::ZERO);
        loop {
            match tokio::time::timeout(Duration::from_secs(3), to_in.recv()).await {
                Ok(Some(got)) => {
                    let n = got.body.get("n").and_then(serde_json::Value::as_u64).and_then(|n| u32::try_from(n).ok());
                    if let Some(started) = n.and_then(|n| sent_at.lock().unwrap().get(&n).copied()) {
                        worst = worst.max(started.elapsed());
                    }
                    arrived.push(got.id);
                }
                Ok(None) => break,
                Err(_) if done.load(Ordering::SeqCst) => break,
                Err(_) => {}
            }
        }
        (arrived, worst)
    };
    let change = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        change.await;
    };
    let ((delivered, refused), (arrived, worst), ()) = tokio::join!(send, receive, change);
    Stream { delivered, refused, arrived, worst }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_survive_a_resharding_of_the_broadcast_channel_and_of_the_recipients_slot() {
    broadcast_channel_moves(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_wait_for_a_slow_new_owner_of_the_broadcast_channel_and_none_is_lost() {
    // Under the test helpers' response timeout (half a second).
    broadcast_channel_moves(Some(Duration::from_millis(400))).await;
}

/// Bob (instance 2) keeps signalling alice (instance 1) while the slot of the
/// channel that carries his signals moves to another node (Redis tells its
/// subscribers with an `sunsubscribe` push), and so does alice's own slot
/// (her presence and queue), each with its keys, as `redis-cli --cluster
/// reshard` would; the new owner of the channel paused for `pause` first.
async fn broadcast_channel_moves(pause: Option<Duration>) {
    let cluster = RedisCluster::start().await;
    let (one, two) = pair(redis_config(&cluster)).await;
    let (alice_keys, alice) = connect(&one.url().unwrap(), "alice").await;
    let (_, bob) = connect(&two.url().unwrap(), "bob").await;
    let mut alice_in = alice.incoming().unwrap();
    let first = bob.send(&alice_keys.device_id(), SignalKind::Ready, json!({"n": "first"})).await.unwrap();
    assert_eq!(first.outcome, Outcome::Delivered);
    assert_eq!(incoming(&mut alice_in).await.id, first.id);
    assert_eq!(shard_subscribers(&cluster, BROADCAST).await, 2, "both instances listen on {BROADCAST}");

    let gap = std::sync::Mutex::new(Ok(Duration::ZERO));
    let change = async {
        let (_, keys) = cluster.move_slot_of(&format!("test:{{d:{}}}", alice_keys.device_id())).await;
        assert!(keys > 0, "alice's slot holds her presence");
        *gap.lock().unwrap() = move_channels(&cluster, &[BROADCAST.to_owned()], pause).await;
    };
    let stream = signal_through(&bob, &alice_keys.device_id(), &mut alice_in, change).await;
    stream.check("broadcast channel moved");
    let gap = gap.into_inner().unwrap().expect("subscribed again");
    if let Some(pause) = pause {
        // Normally a few milliseconds: some signals were sent in the gap.
        assert!(stream.worst >= pause / 4, "no signal waited for the paused node: {:?}", stream.worst);
    }
    eprintln!(
        "broadcast channel moved (new node paused {pause:?}): subscribed again after {gap:?}; \
         {} delivered, {} refused, slowest {:?}",
        stream.delivered.len(),
        stream.refused,
        stream.worst
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_and_a_relay_survive_a_resharding_of_the_instances_own_channels() {
    own_channels_move(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_and_a_relay_wait_for_a_slow_new_owner_of_the_instances_own_channels() {
    own_channels_move(Some(Duration::from_millis(250))).await;
}

/// Bob (instance 2) keeps signalling alice (instance 1) and relaying frames
/// with her while the slots of both instances' own channels move (with a
/// new owner paused for `pause` first: those of her instance); she never
/// looks offline to him.
async fn own_channels_move(pause: Option<Duration>) {
    let cluster = RedisCluster::start().await;
    let (one, two) = pair(redis_config(&cluster)).await;
    let (alice_keys, alice) = connect(&one.url().unwrap(), "alice").await;
    let (_, bob) = connect(&two.url().unwrap(), "bob").await;
    let mut alice_in = alice.incoming().unwrap();
    let mut bob_events = bob.events().unwrap();
    assert_eq!(bob.subscribe_presence(&[alice_keys.device_id()]).await.unwrap(), vec![alice_keys.device_id()]);
    let (a, b) = tokio::join!(alice.open_relay(bob.device_id(), PROMPT), bob.open_relay(alice.device_id(), PROMPT));
    let (a, b) = (a.expect("alice's relay opens"), b.expect("bob's relay opens"));

    // Every channel of one instance: its "alive" and relay channels and the
    // socket.io adapter's request and response channels (not the adapter's
    // broadcast channels, `…-request#<namespace>#`, shared by all).
    let channels: Vec<String> = channels_per_node(&cluster)
        .await
        .into_iter()
        .flat_map(|(_, sharded)| sharded)
        .filter(|channel| !(channel.starts_with("test:socket.io-request#") && channel.matches('#').count() == 2))
        .collect();
    assert!(channels.iter().filter(|c| c.starts_with("test:alive:")).count() == 2, "{channels:?}");
    assert!(channels.iter().filter(|c| c.starts_with("test:relay:")).count() == 2, "{channels:?}");
    // With a slow new owner, only those alice's traffic needs: her
    // instance's "alive" channel (checked before a delivery to her) and its
    // relay channel (named in her presence, "<instance>|<connection>|…").
    let channels = match pause {
        None => channels,
        Some(_) => {
            let client = redis::cluster::ClusterClient::new([cluster.nodes()[0].url()]).unwrap();
            let mut connection = client.get_async_connection().await.unwrap();
            let presence: String = redis::cmd("GET")
                .arg(format!("test:{{d:{}}}:on", alice_keys.device_id()))
                .query_async(&mut connection)
                .await
                .unwrap();
            let instance = presence.split('|').next().unwrap().to_owned();
            vec![format!("test:alive:{instance}"), format!("test:relay:{instance}")]
        }
    };

    // Frames go both ways through the relay while the channels move.
    let relay = async {
        let (mut frames, mut worst) = (0u32, Duration::ZERO);
        let end = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::time::Instant::now() < end {
            let started = tokio::time::Instant::now();
            let frame = Bytes::from(frames.to_be_bytes().to_vec());
            a.send(frame.clone()).await.unwrap();
            assert_eq!(tokio::time::timeout(PROMPT, b.recv()).await.expect("in time").unwrap(), frame);
            b.send(frame.clone()).await.unwrap();
            assert_eq!(tokio::time::timeout(PROMPT, a.recv()).await.expect("in time").unwrap(), frame);
            worst = worst.max(started.elapsed());
            frames += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (frames, worst)
    };
    let gap = std::sync::Mutex::new(Ok(Duration::ZERO));
    let change = async { *gap.lock().unwrap() = move_channels(&cluster, &channels, pause).await };
    let alice_id = alice_keys.device_id();
    let (stream, (frames, round_trip)) = tokio::join!(signal_through(&bob, &alice_id, &mut alice_in, change), relay);
    stream.check("the instances' channels moved");
    assert!(frames > 50, "{frames} frames each way");
    // Alice never looked offline to bob.
    let offline = std::iter::from_fn(|| bob_events.try_recv().ok())
        .find(|event| matches!(event, ClientEvent::Presence { online: false, .. }));
    assert!(offline.is_none(), "{offline:?}");
    let gap = gap.into_inner().unwrap().expect("subscribed again");
    eprintln!(
        "{} channels moved (new nodes paused {pause:?}): each subscribed again within {gap:?}; {} signals delivered, {} refused, slowest {:?}; \
         {frames} relay round trips, slowest {round_trip:?}",
        channels.len(),
        stream.delivered.len(),
        stream.refused,
        stream.worst
    );
}
