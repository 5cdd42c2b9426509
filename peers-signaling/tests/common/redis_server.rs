//! A real `redis-server` on a free loopback port, or a Redis Cluster of
//! three of them, for the Redis backend's tests; killed when dropped.
//! `redis-server` (7 or newer) must be on `PATH`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use peers_sdk::DeviceKeys;
use peers_signaling::store::StoreConfig;
use peers_signaling::{ServerConfig, SignalingClient, SignalingClientOptions, SignalingServer};

/// How long a device's presence outlives its instance's heartbeat. Longer
/// than the kill test takes: it shows a dead instance is noticed without it.
pub const PRESENCE_TTL: Duration = Duration::from_secs(8);

/// A Redis the servers of a test share: one server or a cluster.
pub trait SharedRedis {
    /// The URL the servers dial (a cluster: its first node).
    fn store_url(&self) -> String;
    /// Whether it is a Redis Cluster.
    fn is_cluster(&self) -> bool;
}

impl SharedRedis for RedisServer {
    fn store_url(&self) -> String {
        self.url()
    }

    fn is_cluster(&self) -> bool {
        false
    }
}

impl SharedRedis for RedisCluster {
    fn store_url(&self) -> String {
        self.nodes[0].url()
    }

    fn is_cluster(&self) -> bool {
        true
    }
}

/// A server configuration using `redis` under the key prefix `test`.
pub fn redis_config(redis: &impl SharedRedis) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.store = StoreConfig::Redis {
        url: redis.store_url(),
        cluster: redis.is_cluster(),
        key_prefix: "test".into(),
        presence_ttl: PRESENCE_TTL,
    };
    config
}

/// Two in-process instances built from `config` (sharing its Redis).
pub async fn pair(config: ServerConfig) -> (SignalingServer, SignalingServer) {
    (super::server(config.clone()).await, super::server(config).await)
}

/// A device named `name` registered at `url`.
pub async fn connect(url: &str, name: &str) -> (DeviceKeys, SignalingClient) {
    let keys = super::keys(name);
    let client =
        SignalingClient::connect(url, &keys, SignalingClientOptions::default()).await.expect("client registers");
    (keys, client)
}

/// A running `redis-server`.
pub struct RedisServer {
    child: Child,
    port: u16,
    /// For a cluster node: its directory (its `nodes.conf`) and cluster bus port.
    cluster: Option<(tempfile::TempDir, u16)>,
    /// `cluster-node-timeout` in ms, when not Redis's default (15 s).
    node_timeout_ms: Option<u32>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl RedisServer {
    /// Starts one (no persistence: the tests kill signaling servers, not Redis)
    /// and waits until it answers PING.
    pub async fn start() -> RedisServer {
        Self::start_node(false).await
    }

    /// Starts one, a cluster node (`--cluster-enabled yes`, in a directory of
    /// its own, holding no slot yet) if `cluster`.
    async fn start_node(cluster: bool) -> RedisServer {
        Self::start_node_with(cluster, None).await
    }

    /// [`Self::start_node`], with a `cluster-node-timeout` of `node_timeout_ms`.
    async fn start_node_with(cluster: bool, node_timeout_ms: Option<u32>) -> RedisServer {
        for _ in 0..5 {
            let port = free_port();
            let cluster = cluster.then(|| (tempfile::tempdir().unwrap(), free_port()));
            let child = spawn(port, cluster.as_ref().map(|(dir, bus)| (dir.path(), *bus)), node_timeout_ms);
            let mut server = RedisServer { child, port, cluster, node_timeout_ms };
            if server.ready().await {
                return server;
            }
            // Most likely a port was taken in between: try others.
        }
        panic!("redis-server did not come up");
    }

    /// Starts a cluster node holding every hash slot, and waits until its
    /// cluster state is `ok`. Redis then refuses a script (`#!lua`) that
    /// touches keys of two slots, as every node of a larger cluster does.
    pub async fn start_cluster_node() -> RedisServer {
        let server = Self::start_node(true).await;
        let _: String = server.query(redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(0).arg(16383)).await;
        server.wait_cluster_ok(1).await;
        server
    }

    /// Waits until this node sees `nodes` nodes and every slot served.
    async fn wait_cluster_ok(&self, nodes: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let known = format!("cluster_known_nodes:{nodes}\r\n");
        loop {
            let info: String = self.query(redis::cmd("CLUSTER").arg("INFO")).await;
            if info.contains("cluster_state:ok") && info.contains(&known) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the cluster did not become ready: {info}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills it (SIGKILL); its data is gone.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it answering (SIGSTOP) until [`thaw`](Self::thaw): a Redis that
    /// hangs, with its connections open.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen Redis go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill").arg(signal).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {signal} redis-server");
    }

    /// Starts it again, empty, on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        self.child = spawn(self.port, self.cluster.as_ref().map(|(dir, bus)| (dir.path(), *bus)), self.node_timeout_ms);
        assert!(self.ready().await, "redis-server did not come back on port {}", self.port);
    }

    async fn ready(&mut self) -> bool {
        let client = redis::Client::open(self.url().as_str()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// `redis://127.0.0.1:PORT` (the server adds `protocol=resp3` itself).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One command's reply, read straight from Redis (to check its keys).
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        let client = redis::Client::open(self.url().as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        cmd.query_async(&mut conn).await.unwrap()
    }
}

/// A Redis Cluster of three primaries on loopback, each serving a third of
/// the hash slots; every node is killed when dropped.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes, gives each a third of the slots, joins them
    /// (`CLUSTER MEET`) and waits until every node sees all three and every
    /// slot served (`cluster_state:ok`).
    pub async fn start() -> RedisCluster {
        RedisCluster { nodes: Self::start_nodes(3, None).await }
    }

    /// Starts `count` (three or more) cluster nodes with a `cluster-node-timeout`
    /// of `node_timeout_ms`, gives the first three a third of the slots each,
    /// joins them all (`CLUSTER MEET`) and waits until every node sees all of
    /// them and every slot served.
    async fn start_nodes(count: usize, node_timeout_ms: Option<u32>) -> Vec<RedisServer> {
        let mut nodes = Vec::new();
        for _ in 0..count {
            nodes.push(RedisServer::start_node_with(true, node_timeout_ms).await);
        }
        for (node, (first, last)) in nodes.iter().zip([(0, 5460), (5461, 10922), (10923, 16383)]) {
            let _: String = node.query(redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(first).arg(last)).await;
        }
        for node in &nodes[1..] {
            let bus = node.cluster.as_ref().expect("a cluster node").1;
            let _: String =
                nodes[0].query(redis::cmd("CLUSTER").arg("MEET").arg("127.0.0.1").arg(node.port).arg(bus)).await;
        }
        for node in &nodes {
            node.wait_cluster_ok(nodes.len()).await;
        }
        nodes
    }

    /// Starts three primaries, each serving a third of the slots, and a
    /// replica of each (`CLUSTER REPLICATE`), with a node timeout of one
    /// second so a dead primary is replaced within a few; waits until every
    /// node sees all six, every slot is served and every replica is in sync
    /// with its primary. Nodes 0 to 2 are the primaries, 3 to 5 their replicas.
    pub async fn start_with_replicas() -> RedisCluster {
        let nodes = Self::start_nodes(6, Some(1_000)).await;
        for i in 0..3 {
            let primary: String = nodes[i].query(redis::cmd("CLUSTER").arg("MYID")).await;
            let _: String = nodes[i + 3].query(redis::cmd("CLUSTER").arg("REPLICATE").arg(&primary)).await;
        }
        for replica in &nodes[3..] {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let info: String = replica.query(redis::cmd("INFO").arg("replication")).await;
                if info.contains("role:slave") && info.contains("master_link_status:up") {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "the replica did not sync: {info}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        RedisCluster { nodes }
    }

    /// The index of the node serving the hash slot of `key` (as the cluster
    /// sees it now), and the slot. Every node must be up.
    pub async fn primary_of(&self, key: &str) -> (usize, u16) {
        let slot: u16 = self.nodes[0].query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).await;
        for (i, node) in self.nodes.iter().enumerate() {
            // `CLUSTER NODES`: the node's own line ("myself") ends with its slot ranges.
            let nodes: String = node.query(redis::cmd("CLUSTER").arg("NODES")).await;
            let serves = nodes.lines().filter(|line| line.contains("myself")).any(|line| {
                line.split_whitespace().skip(8).any(|range| {
                    let (first, last) = range.split_once('-').unwrap_or((range, range));
                    matches!((first.parse::<u16>(), last.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
                })
            });
            if serves {
                return (i, slot);
            }
        }
        panic!("no node serves slot {slot}")
    }

    /// Kills node `index` (SIGKILL), as a crashed Redis.
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].stop();
    }

    /// Its nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Moves the hash slot of `key` and its keys to the next node, as a
    /// resharding does (`SETSLOT IMPORTING` / `MIGRATING`, `MIGRATE`,
    /// `SETSLOT NODE` on every node): a client that still sends the slot's
    /// keys to the old node gets `MOVED`. Returns the slot and how many keys
    /// were migrated (the old node keeps none).
    pub async fn move_slot_of(&self, key: &str) -> (u16, usize) {
        let (slot, keys, _) = self.move_slot_pausing(key, None).await;
        (slot, keys)
    }

    /// [`Self::move_slot_of`], the new node paused (`CLIENT PAUSE … ALL`) for
    /// `pause` once it serves the slot and before the old node lets it go
    /// (which tells the slot's shard-channel subscribers): a slow new node.
    /// Also returns when the old node let the slot go.
    pub async fn move_slot_pausing(&self, key: &str, pause: Option<Duration>) -> (u16, usize, tokio::time::Instant) {
        let (from, slot) = self.primary_of(key).await;
        let mut ids = Vec::new();
        for node in &self.nodes {
            let id: String = node.query(redis::cmd("CLUSTER").arg("MYID")).await;
            ids.push(id);
        }
        let to = (from + 1) % self.nodes.len();
        let (source, target) = (&self.nodes[from], &self.nodes[to]);
        let _: String =
            target.query(redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("IMPORTING").arg(&ids[from])).await;
        let _: String =
            source.query(redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("MIGRATING").arg(&ids[to])).await;
        // Until the old node has none left: keys may come and go meanwhile
        // (new ones are made on the new node, `ASK`), as under a live resharding.
        let mut moved = 0;
        loop {
            let keys: Vec<String> = source.query(redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(1000)).await;
            if keys.is_empty() {
                break;
            }
            moved += keys.len();
            let _: String = source
                .query(
                    redis::cmd("MIGRATE")
                        .arg("127.0.0.1")
                        .arg(target.port)
                        .arg("")
                        .arg(0)
                        .arg(5000)
                        .arg("KEYS")
                        .arg(&keys),
                )
                .await;
        }
        let _: String = target.query(redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("NODE").arg(&ids[to])).await;
        if let Some(pause) = pause {
            let _: String =
                target.query(redis::cmd("CLIENT").arg("PAUSE").arg(pause.as_millis() as u64).arg("ALL")).await;
        }
        let _: String = source.query(redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("NODE").arg(&ids[to])).await;
        let released = tokio::time::Instant::now();
        for node in &self.nodes {
            let _: String = node.query(redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("NODE").arg(&ids[to])).await;
        }
        (slot, moved, released)
    }
}

fn spawn(port: u16, cluster: Option<(&std::path::Path, u16)>, node_timeout_ms: Option<u32>) -> Child {
    let mut command = Command::new("redis-server");
    command.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    if let Some((dir, bus)) = cluster {
        command
            .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
            .args(["--cluster-port", &bus.to_string()])
            .current_dir(dir);
    }
    if let Some(ms) = node_timeout_ms {
        command.args(["--cluster-node-timeout", &ms.to_string()]);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("redis-server starts (install it: it must be on PATH)")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary against `redis`.
pub async fn start_instance(redis: &impl SharedRedis) -> (tokio::process::Child, String) {
    let ttl = PRESENCE_TTL.as_millis().to_string();
    let url = redis.store_url();
    let cluster = redis.is_cluster().to_string();
    super::start_binary(&[
        "--bind",
        "127.0.0.1:0",
        "--redis-url",
        &url,
        "--redis-cluster",
        &cluster,
        "--redis-key-prefix",
        "test",
        "--redis-presence-ttl-ms",
        &ttl,
    ])
    .await
}
