//! NAT scenarios: the real `peers-signaling` server and a STUN/TURN server in
//! the lab's internet namespace (coturn), and `peers` daemons on hosts behind the NATs,
//! driven through their command line like a person would.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use crate::coturn::{Coturn, CoturnConfig};
use crate::netns::{INTERNET_SERVER_IP, NatKind, Ns, TwoLans};

/// The TURN realm and shared secret of the scenarios.
const REALM: &str = "peers";
const TURN_SECRET: &str = "nat-matrix-secret";
/// The signaling server's port in the internet namespace (a second instance,
/// when there is one, listens on the next port).
const SIGNALING_PORT: u16 = 8080;
/// The Redis port on the internet namespace's loopback, for two signaling
/// instances.
const REDIS_PORT: u16 = 6379;
/// The STUN/TURN port.
const TURN_PORT: u16 = 3478;

/// A binary of the workspace, next to the running test's own directory
/// (`cargo test --workspace` builds them all before running any test).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(Path::parent).expect("target directory");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: build the workspace first (cargo test --workspace)", path.display());
    path
}

/// A `peers` daemon on a lab host.
#[derive(Debug)]
pub struct Daemon {
    /// Its data directory.
    pub data: PathBuf,
    /// Its host.
    pub host: Ns,
    child: Option<Child>,
}

impl Daemon {
    /// Runs `peers --data-dir <data> <args>` on the test's own namespace (for
    /// init, info, trust, put, get, status: they touch files and the control
    /// socket only).
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(workspace_binary("peers"))
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .output()
            .await
            .expect("peers")
    }

    /// `cli`, asserting success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args).await;
        assert!(out.status.success(), "peers {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The share code `peers info` prints.
    pub async fn share_code(&self) -> String {
        let info = self.ok(&["info"]).await;
        info.lines().find_map(|l| l.strip_prefix("share code ")).expect("share code").trim().to_owned()
    }

    /// Stops the daemon (SIGKILL).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// A running scenario.
#[derive(Debug)]
pub struct Scenario {
    /// The network.
    pub lab: TwoLans,
    /// The STUN/TURN server (coturn) in the internet namespace.
    pub turn: Coturn,
    servers: Vec<Child>,
    /// The signaling instances, in the order devices try them.
    signaling: Vec<Child>,
    /// Each instance's command line, to restart it.
    signaling_args: Vec<Vec<String>>,
    /// The devices.
    pub daemons: Vec<Daemon>,
    dir: tempfile::TempDir,
}

/// How the scenario runs its signaling server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalingSetup {
    /// One instance with the in-memory store.
    Single,
    /// Two instances sharing a Redis server, both given to the devices.
    RedisPair,
    /// One instance with the SQLite store (what survives a restart).
    Sqlite,
}

impl Scenario {
    /// Builds the lab with NATs of `kinds` and starts the servers (one
    /// signaling instance).
    pub async fn start(kinds: (NatKind, NatKind)) -> Scenario {
        Self::start_with(kinds, SignalingSetup::Single).await
    }

    /// Builds the lab with NATs of `kinds` and starts the servers.
    pub async fn start_with(kinds: (NatKind, NatKind), setup: SignalingSetup) -> Scenario {
        crate::netns::Lab::available().expect("NAT scenarios run as root with iproute2 and iptables");
        let lab = TwoLans::build(kinds.0, kinds.1);
        let turn_config = CoturnConfig::new(INTERNET_SERVER_IP, TURN_PORT, REALM, TURN_SECRET);
        let turn = Coturn::start(Some(&lab.internet), &turn_config).await;
        let mut servers = Vec::new();
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = match setup {
            SignalingSetup::Single => vec!["--memory".to_owned(), "true".to_owned()],
            SignalingSetup::Sqlite => {
                let data = dir.path().join("signaling-data");
                vec!["--data-dir".to_owned(), data.to_str().expect("UTF-8 path").to_owned()]
            }
            SignalingSetup::RedisPair => {
                servers.push(start_redis(&lab).await);
                vec!["--redis-url".to_owned(), format!("redis://127.0.0.1:{REDIS_PORT}")]
            }
        };
        let instances = if setup == SignalingSetup::RedisPair { 2 } else { 1 };
        let mut signaling = Vec::new();
        let mut signaling_args = Vec::new();
        for port in (SIGNALING_PORT..).take(instances) {
            let mut args = vec!["--bind".to_owned(), format!("{INTERNET_SERVER_IP}:{port}")];
            args.extend(store.iter().cloned());
            args.extend(["--stun-url".to_owned(), turn.stun_url.clone()]);
            args.extend(["--turn-url".to_owned(), turn.turn_url.clone()]);
            args.extend(["--turn-secret".to_owned(), TURN_SECRET.to_owned()]);
            signaling.push(start_signaling(&lab, &args).await);
            signaling_args.push(args);
        }
        Scenario { lab, turn, servers, signaling, signaling_args, daemons: Vec::new(), dir }
    }

    /// Starts signaling instance `index` again (after [`kill_signaling`](Self::kill_signaling)),
    /// with its store as it was left.
    pub async fn restart_signaling(&mut self, index: usize) {
        self.signaling[index] = start_signaling(&self.lab, &self.signaling_args[index]).await;
    }

    /// Cuts device `index`'s host off the network (every packet in or out
    /// dropped, silently), or puts it back.
    pub fn isolate(&self, index: usize, cut: bool) {
        let ns = self.daemons[index].host.name.clone();
        let op = if cut { "-I" } else { "-D" };
        for (chain, side) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            crate::netns::run("ip", &["netns", "exec", &ns, "iptables", op, chain, "!", side, "lo", "-j", "DROP"]);
        }
    }

    /// The signaling instances' URLs, as hosts dial them, comma-separated in
    /// the order devices try them.
    pub fn signaling_urls(&self) -> String {
        let urls: Vec<String> = (SIGNALING_PORT..)
            .take(self.signaling.len())
            .map(|port| format!("http://{INTERNET_SERVER_IP}:{port}/"))
            .collect();
        urls.join(",")
    }

    /// Kills signaling instance `index` (SIGKILL: no goodbye to anyone).
    pub async fn kill_signaling(&mut self, index: usize) {
        let _ = self.signaling[index].kill().await;
    }

    /// Adds a device `name` on LAN `lan` (host number `host`), with an identity.
    pub async fn device(&mut self, name: &str, lan: u8, host: u8) -> usize {
        let ns = self.lab.host(name, lan, host);
        let daemon = Daemon { data: self.dir.path().join(name), host: ns, child: None };
        daemon.ok(&["init", "--user", name]).await;
        self.daemons.push(daemon);
        self.daemons.len() - 1
    }

    /// Makes the devices trust each other as members of `group`, advertising
    /// `urls` (per device; empty for none).
    pub async fn trust_all(&self, group: &str, urls: &[Vec<String>]) {
        let mut codes = Vec::new();
        for (daemon, urls) in self.daemons.iter().zip(urls) {
            let mut args = vec!["info".to_owned()];
            for url in urls {
                args.extend(["--advertise".to_owned(), url.clone()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let info = daemon.ok(&args).await;
            codes.push(info.lines().find_map(|l| l.strip_prefix("share code ")).expect("code").trim().to_owned());
        }
        for (i, daemon) in self.daemons.iter().enumerate() {
            for (j, code) in codes.iter().enumerate() {
                if i != j {
                    daemon.ok(&["trust", code, "--group", group]).await;
                }
            }
        }
    }

    /// Starts device `index`'s daemon on its host with extra `args`.
    pub fn run(&mut self, index: usize, group: &str, args: &[&str]) {
        let urls = self.signaling_urls();
        let daemon = &mut self.daemons[index];
        let child = self
            .lab
            .lab
            .command(&daemon.host, workspace_binary("peers"))
            .arg("--data-dir")
            .arg(&daemon.data)
            .args(["run", "--group", group, "--signaling", &urls])
            .args(args)
            .env("RUST_LOG", std::env::var("PEERS_NAT_LOG").unwrap_or_else(|_| "error".into()))
            .stdout(Stdio::null())
            .spawn()
            .expect("peers run");
        daemon.child = Some(child);
    }

    /// Polls `daemon`'s `peers status` until a line satisfies `check`, for at
    /// most `limit`; returns the time it took and the status.
    pub async fn wait_status(
        &self,
        index: usize,
        limit: Duration,
        check: impl Fn(&str) -> bool,
    ) -> Result<(Duration, String), String> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < limit {
            let out = self.daemons[index].cli(&["status"]).await;
            if out.status.success() {
                last = String::from_utf8_lossy(&out.stdout).into_owned();
                if last.lines().any(&check) {
                    return Ok((started.elapsed(), last));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last)
    }

    /// Writes `value` (any size the engine takes) under `key` on device
    /// `index`, through a file as a person would for large values.
    pub async fn put_file(&self, index: usize, group: &str, key: &str, value: &str) {
        let path = self.dir.path().join(format!("value-{index}-{key}"));
        std::fs::write(&path, value).expect("value file");
        let path = path.to_str().expect("UTF-8 path");
        self.daemons[index].ok(&["put", group, key, "--file", path]).await;
        let _ = std::fs::remove_file(path);
    }

    /// Polls `peers get` on `index` until `key` holds `value`.
    pub async fn wait_value(&self, index: usize, group: &str, key: &str, value: &str, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            let out = self.daemons[index].cli(&["get", group, key]).await;
            if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == value {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

/// Starts `redis-server` on the internet namespace's loopback (only the
/// signaling instances beside it use it) and waits until it answers.
async fn start_redis(lab: &TwoLans) -> Child {
    let port = REDIS_PORT.to_string();
    let child = lab
        .lab
        .command(&lab.internet, "redis-server")
        .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (install it: scripts/install-deps.sh)");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let mut ping = lab.lab.command(&lab.internet, "redis-cli");
        ping.args(["-h", "127.0.0.1", "-p", &port, "ping"]);
        if ping.output().await.is_ok_and(|out| out.stdout.starts_with(b"PONG")) {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server did not answer in the lab");
}

/// Starts a `peers-signaling` instance in the internet namespace.
async fn start_signaling(lab: &TwoLans, args: &[String]) -> Child {
    let mut command = lab.lab.command(&lab.internet, workspace_binary("peers-signaling"));
    command.args(args).stderr(Stdio::null());
    spawn_ready(&mut command, "listening").await
}

/// Spawns `command` and waits for a stdout line starting with `ready`.
async fn spawn_ready(command: &mut tokio::process::Command, ready: &str) -> Child {
    let mut child = command.stdout(Stdio::piped()).spawn().expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
    match line {
        Ok(Ok(Some(line))) if line.starts_with(ready) => child,
        other => panic!("server did not start: {other:?}"),
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        for server in self.servers.iter_mut().chain(&mut self.signaling) {
            let _ = server.start_kill();
        }
        for daemon in &mut self.daemons {
            if let Some(child) = daemon.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}
