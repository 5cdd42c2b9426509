//! The server under load runs as a child process, so the generator's own
//! memory and CPU never count as the server's. This module starts it, reads
//! its address from its first line of output, and reads `/proc` for resident
//! memory and CPU time (Linux only).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tracing::debug;

use crate::error::{Error, Result};

/// Where the signaling server under load keeps its queue.
#[derive(Clone, Debug)]
pub enum ServerStore {
    /// SQLite in this directory (the default users get).
    Sqlite(PathBuf),
    /// In memory only.
    Memory,
    /// In the Redis at this URL (`redis://host:port`), under its own key
    /// prefix. The Redis server's memory is its own, not the signaling
    /// server's.
    Redis(String),
}

/// A server running in a child process; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts the `peers-signaling` binary at `bin` on a free loopback port.
    /// `extra` are more command-line settings.
    pub async fn signaling(bin: &Path, store: &ServerStore, extra: &[String]) -> Result<ServerProcess> {
        let mut args = vec!["--bind".to_owned(), "127.0.0.1:0".to_owned()];
        match store {
            ServerStore::Sqlite(dir) => args.extend(["--data-dir".to_owned(), dir.display().to_string()]),
            ServerStore::Memory => args.extend(["--memory".to_owned(), "true".to_owned()]),
            ServerStore::Redis(url) => args.extend([
                "--redis-url".to_owned(),
                url.clone(),
                "--redis-key-prefix".to_owned(),
                format!("load-{}", std::process::id()),
            ]),
        }
        args.extend(extra.iter().cloned());
        let mut command = raised_fd_limit(bin, &args);
        command.env("RUST_LOG", std::env::var("PEERS_LOAD_SERVER_LOG").unwrap_or_else(|_| "warn".into()));
        Self::start(command, "listening on http://").await
    }

    /// Starts a baseline server script with node (`tests/js/peerjs_server.mjs`,
    /// `socketio_relay_server.mjs`, `ws_relay_server.mjs`), accepting up to
    /// `limit` connections; it prints `listening on PORT` once ready.
    pub async fn node(node: &Path, script: &Path, limit: usize) -> Result<ServerProcess> {
        let args = vec![script.display().to_string(), limit.to_string()];
        Self::start(raised_fd_limit(node, &args), "listening on ").await
    }

    async fn start(mut command: Command, prefix: &str) -> Result<ServerProcess> {
        let failed = |detail: String| Error::Connect { url: "the server process".into(), detail };
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| failed(format!("spawning: {e}")))?;
        let pid = child.id().ok_or_else(|| failed("exited at once".into()))?;
        let stdout = child.stdout.take().ok_or_else(|| failed("no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.trim().strip_prefix(prefix) {
                    return Some(rest.trim_end_matches('/').to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| failed(format!("no \"{prefix}…\" line within 30 s")))?;
        let addr: SocketAddr = match first.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => first
                .parse::<u16>()
                .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
                .map_err(|_| failed(format!("cannot read an address in {first:?}")))?,
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        debug!(pid, %addr, "server process started");
        Ok(ServerProcess { child, pid, addr })
    }

    /// Its resident memory now, in bytes.
    pub fn rss(&self) -> Option<u64> {
        rss_bytes(self.pid)
    }

    /// The CPU time it has used so far, in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(&format!("/proc/{}/stat", self.pid))
    }

    /// Kills it and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `sh -c 'ulimit -n <hard>; exec program args'`: the child may hold one file
/// descriptor per connection, more than the usual soft limit of 1024.
fn raised_fd_limit(program: &Path, args: &[String]) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg("ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec \"$0\" \"$@\"").arg(program).args(args);
    command
}

/// Resident memory of process `pid` in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// User plus system CPU seconds from a `/proc/<pid>/stat` file (clock ticks of
/// 1/100 s, the value Linux exposes to user space).
fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // The command name may hold spaces; fields are counted after its ')'.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the whole line are the 12th and 13th after ')'.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The CPU time this process (the generator) has used, in seconds.
pub fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds("/proc/self/stat")
}

/// This process's soft limit of open files.
pub fn own_fd_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(rss_bytes(std::process::id()).unwrap_or_default() > 0);
        assert!(own_cpu_seconds().is_some());
        assert!(own_fd_limit().unwrap_or_default() > 0);
    }
}
