//! A real `redis-server` on a free loopback port, for the Redis backend's
//! tests; killed when dropped. `redis-server` must be on `PATH`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use peers_sdk::DeviceKeys;
use peers_signaling::store::StoreConfig;
use peers_signaling::{ServerConfig, SignalingClient, SignalingClientOptions, SignalingServer};

/// How long a device's presence outlives its instance's heartbeat. Longer
/// than the kill test takes: it shows a dead instance is noticed without it.
pub const PRESENCE_TTL: Duration = Duration::from_secs(8);

/// A server configuration using `redis` under the key prefix `test`.
pub fn redis_config(redis: &RedisServer) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.store = StoreConfig::Redis { url: redis.url(), key_prefix: "test".into(), presence_ttl: PRESENCE_TTL };
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
    /// For a cluster node: its directory (its `nodes.conf`).
    cluster_dir: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// Starts one (no persistence: the tests kill signaling servers, not Redis)
    /// and waits until it answers PING.
    pub async fn start() -> RedisServer {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut server = RedisServer { child: spawn(port, None), port, cluster_dir: None };
            if server.ready().await {
                return server;
            }
            // Most likely the port was taken in between: try another.
        }
        panic!("redis-server did not come up");
    }

    /// Starts one with `--cluster-enabled yes` (in a directory of its own)
    /// holding every hash slot, and waits until its cluster state is `ok`.
    /// Redis then refuses a script (`#!lua`) that touches keys of two slots,
    /// as every node of a larger cluster does.
    pub async fn start_cluster_node() -> RedisServer {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut server = RedisServer { child: spawn(port, Some(dir.path())), port, cluster_dir: Some(dir) };
            if server.ready().await {
                let _: String = server.query(redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(0).arg(16383)).await;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                loop {
                    let info: String = server.query(redis::cmd("CLUSTER").arg("INFO")).await;
                    if info.contains("cluster_state:ok") {
                        return server;
                    }
                    assert!(tokio::time::Instant::now() < deadline, "the cluster node did not become ready: {info}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        panic!("redis-server did not come up");
    }

    /// Kills it (SIGKILL); its data is gone.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again, empty, on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        self.child = spawn(self.port, self.cluster_dir.as_ref().map(|dir| dir.path()));
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

fn spawn(port: u16, cluster_dir: Option<&std::path::Path>) -> Child {
    let mut command = Command::new("redis-server");
    command.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    if let Some(dir) = cluster_dir {
        command.args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]).current_dir(dir);
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
pub async fn start_instance(redis: &RedisServer) -> (tokio::process::Child, String) {
    let ttl = PRESENCE_TTL.as_millis().to_string();
    let url = redis.url();
    super::start_binary(&[
        "--bind",
        "127.0.0.1:0",
        "--redis-url",
        &url,
        "--redis-key-prefix",
        "test",
        "--redis-presence-ttl-ms",
        &ttl,
    ])
    .await
}
