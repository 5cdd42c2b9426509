//! A real coturn (`turnserver`) for the NAT tests, started in a lab namespace
//! with the configuration `docs/NAT.md` documents: REST credentials
//! (`use-auth-secret`, `static-auth-secret`) in a realm, UDP only, listening and
//! relaying on one lab address. `scripts/install-deps.sh` installs it; the
//! package's own service is never needed.
//!
//! The configuration is written to a file and passed with `-c`, so coturn reads
//! exactly these lines and never the system's `/etc/turnserver.conf`. Its log
//! goes to stdout, which a task drains (a full pipe would stall the server);
//! the last lines are kept for failure messages, and `PEERS_COTURN_LOG=1`
//! echoes them to stderr.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use crate::netns::Ns;

/// Log lines kept for failure messages.
const LOG_LINES: usize = 400;
/// How long coturn gets to answer its first STUN request.
const START_LIMIT: Duration = Duration::from_secs(10);

/// The peer ranges the documented configuration refuses (RFC 1918 private,
/// RFC 6598 shared, link-local, "this network").
pub const DENIED_PEER_RANGES: &[&str] = &[
    "0.0.0.0-0.255.255.255",
    "10.0.0.0-10.255.255.255",
    "100.64.0.0-100.127.255.255",
    "169.254.0.0-169.254.255.255",
    "172.16.0.0-172.31.255.255",
    "192.168.0.0-192.168.255.255",
    "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
];

/// What a coturn instance is started with.
#[derive(Clone, Debug)]
pub struct CoturnConfig {
    /// The lab address it listens and relays on.
    pub ip: String,
    /// The STUN/TURN port (UDP).
    pub port: u16,
    /// The realm.
    pub realm: String,
    /// The REST secret shared with `peers-signaling --turn-secret`.
    pub secret: String,
    /// Lines added to the configuration file.
    pub extra: Vec<String>,
}

impl CoturnConfig {
    /// The documented configuration on `ip:port`.
    pub fn new(ip: &str, port: u16, realm: &str, secret: &str) -> Self {
        CoturnConfig { ip: ip.to_owned(), port, realm: realm.to_owned(), secret: secret.to_owned(), extra: Vec::new() }
    }

    /// The `turnserver.conf` lines (the ones `docs/NAT.md` shows, plus the
    /// test's own log and pid file settings).
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!("listening-ip={}", self.ip),
            format!("listening-port={}", self.port),
            format!("relay-ip={}", self.ip),
            "use-auth-secret".to_owned(),
            format!("static-auth-secret={}", self.secret),
            format!("realm={}", self.realm),
            "fingerprint".to_owned(),
            "no-tls".to_owned(),
            "no-dtls".to_owned(),
            "no-tcp-relay".to_owned(),
            "no-cli".to_owned(),
            "no-multicast-peers".to_owned(),
        ];
        // Peers in private, shared and link-local space are refused (403 to
        // CreatePermission) instead of relayed to: a public TURN server must not
        // reach into its own networks, and a server with no route to them
        // closes the whole allocation on the first send that fails.
        lines.extend(DENIED_PEER_RANGES.iter().map(|range| format!("denied-peer-ip={range}")));
        lines.extend(self.extra.iter().cloned());
        lines
    }
}

/// A running `turnserver`, killed when dropped.
#[derive(Debug)]
pub struct Coturn {
    child: Child,
    log: Arc<Mutex<VecDeque<String>>>,
    _dir: tempfile::TempDir,
    /// Its `turn:` URL (UDP).
    pub turn_url: String,
    /// Its `stun:` URL.
    pub stun_url: String,
}

impl Coturn {
    /// Starts coturn with `config` in the lab namespace `ns` (or, with `None`,
    /// in the test's own namespace, for a loopback address) and waits until it
    /// answers a STUN binding request there (`turnutils_stunclient`, coturn's
    /// own client).
    pub async fn start(ns: Option<&Ns>, config: &CoturnConfig) -> Coturn {
        let dir = tempfile::tempdir().expect("temporary directory");
        let conf = dir.path().join("turnserver.conf");
        let pid = dir.path().join("turnserver.pid");
        let db = dir.path().join("turndb");
        std::fs::write(&conf, config.lines().join("\n") + "\n").expect("turnserver.conf");
        let mut child = command(ns, "turnserver")
            .arg("-c")
            .arg(&conf)
            .args(["--log-file", "stdout", "--simple-log", "--verbose", "--pidfile"])
            .arg(&pid)
            .arg("--db")
            .arg(&db)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("turnserver (install coturn: scripts/install-deps.sh)");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let echo = std::env::var_os("PEERS_COTURN_LOG").is_some();
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if echo {
                        eprintln!("coturn: {line}");
                    }
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    if log.len() == LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            });
        }
        let addr = format!("{}:{}", config.ip, config.port);
        let mut coturn = Coturn {
            child,
            log,
            _dir: dir,
            turn_url: format!("turn:{addr}?transport=udp"),
            stun_url: format!("stun:{addr}"),
        };
        coturn.wait_ready(ns, config).await;
        coturn
    }

    /// Polls with `turnutils_stunclient` until coturn answers.
    async fn wait_ready(&mut self, ns: Option<&Ns>, config: &CoturnConfig) {
        let started = Instant::now();
        let port = config.port.to_string();
        while started.elapsed() < START_LIMIT {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("coturn exited at start ({status}); its log:\n{}", self.log_text());
            }
            // The client retries forever on its own; `timeout` bounds one try.
            let probe = command(ns, "timeout")
                .args(["1", "turnutils_stunclient", "-p", &port, &config.ip])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if probe.is_ok_and(|status| status.success()) {
                return;
            }
        }
        panic!("coturn did not answer STUN within {START_LIMIT:?}; its log:\n{}", self.log_text());
    }

    /// The last lines coturn logged.
    pub fn log_text(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// A port for coturn on loopback that nothing else takes while it starts.
///
/// A port from `bind(0)` is free when picked but sits in the kernel's ephemeral
/// range, which every outgoing connection draws its local port from, and coturn
/// binds more than that one UDP port: TCP on it too, and UDP and TCP on the next
/// port (its RFC 5780 alternative port). In CI one of those was taken by the
/// time coturn started ("Address already in use"), and it never answered. So the
/// port comes from below the ephemeral range, where only explicit binds land,
/// with all four free when checked, and distinct within this process.
pub fn loopback_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(12_002) - 2);
    let span = (high - low) / 2;
    // Processes start at different places; one process walks on from the last pick.
    let start = (std::process::id() % u32::from(span)) as u16;
    let _ = NEXT.compare_exchange(0, start + 1, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..span {
        let slot = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let port = low + 2 * slot;
        let free = [port, port + 1].iter().all(|&p| {
            std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
        });
        if free {
            return port;
        }
    }
    panic!("no free port pair for coturn on 127.0.0.1 between {low} and {high}");
}

/// A command running `program` in `ns`, or here with `None`; killed on drop.
fn command(ns: Option<&Ns>, program: &str) -> tokio::process::Command {
    let mut command = match ns {
        Some(ns) => {
            let mut command = tokio::process::Command::new("ip");
            command.args(["netns", "exec", &ns.name, program]);
            command
        }
        None => tokio::process::Command::new(program),
    };
    command.kill_on_drop(true);
    command
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
