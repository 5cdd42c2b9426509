//! Helpers shared by the cross-crate integration tests under `tests/tests/`.
//! Nothing here is meant for use outside those tests.
//!
//! [`JsClient`] runs one of the JavaScript drivers in `tests/js/` with Node.js
//! and reads the JSON lines it prints. The drivers depend on npm packages that
//! `scripts/install-deps.sh` installs (`npm ci` in `tests/`).
#![deny(missing_docs)]

pub mod coturn;
pub mod daemon;
pub mod device;
pub mod nat;
pub mod netns;
pub mod peers_js;
pub mod proxy;
pub mod signaling;
pub mod webrtc;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

/// The directory of this crate (`tests/`), where `package.json` and `js/` live.
pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A Node.js process running a driver from `tests/js/`. It runs in a process
/// group of its own, and dropping the client kills the whole group: a driver
/// killed with SIGKILL cannot close the headless Chromium it started, so the
/// group, not the driver, is what must end.
#[derive(Debug)]
pub struct JsClient {
    script: PathBuf,
    child: Child,
    /// The driver's pid, which is its process group's id.
    group: Option<u32>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Option<JoinHandle<String>>,
}

impl JsClient {
    /// Starts `node tests/js/<script> <args…>`.
    ///
    /// # Panics
    ///
    /// When `node` or the npm packages are missing (run `scripts/install-deps.sh`).
    pub fn spawn(script: &str, args: &[&str]) -> JsClient {
        let dir = crate_dir();
        let script = dir.join("js").join(script);
        assert!(script.is_file(), "no driver at {}", script.display());
        assert!(
            dir.join("node_modules").join("socket.io-client").is_dir(),
            "the JavaScript test dependencies are not installed: run scripts/install-deps.sh (npm ci in {})",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(&script)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node (install Node.js: scripts/install-deps.sh): {e}"));
        let group = child.id();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        JsClient { script, child, group, stdout, stderr: Some(stderr) }
    }

    /// Kills the driver's process group (the driver and every process it
    /// started that did not leave the group, such as Chromium).
    fn kill_group(&self) {
        // The group outlives a driver that exited, and Linux does not hand out
        // its id as a pid while any member lives.
        if let Some(pid) = self.group {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// The next JSON line the driver prints; panics (with the driver's stderr) if
    /// none comes within `timeout` or the driver exits first.
    pub async fn next_event(&mut self, timeout: Duration) -> Value {
        match tokio::time::timeout(timeout, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{} printed a line that is not JSON ({e}): {line}", self.name())),
            Ok(Ok(None)) => panic!("{} ended its output early; stderr:\n{}", self.name(), self.stderr().await),
            Ok(Err(e)) => panic!("reading {}'s output: {e}", self.name()),
            Err(_) => panic!("{} printed nothing for {timeout:?}", self.name()),
        }
    }

    /// The next event named `name`, skipping others; panics like [`next_event`](Self::next_event).
    pub async fn expect_event(&mut self, name: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next_event(left).await;
            if event["event"] == name {
                return event;
            }
        }
    }

    /// Waits for the driver to exit; returns its status and stderr.
    pub async fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit within {timeout:?}", self.name()))
            .expect("waiting for node");
        (status, self.stderr().await)
    }

    fn name(&self) -> String {
        self.script.file_name().map_or_else(|| "driver".into(), |n| n.to_string_lossy().into_owned())
    }

    /// What the driver wrote to stderr (complete once it has exited).
    async fn stderr(&mut self) -> String {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        match self.stderr.take() {
            Some(task) => {
                tokio::time::timeout(Duration::from_secs(2), task).await.ok().and_then(Result::ok).unwrap_or_default()
            }
            None => String::new(),
        }
    }
}

impl Drop for JsClient {
    fn drop(&mut self) {
        self.kill_group();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pid` names a process that is not a zombie.
    fn alive(pid: u64) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
            .unwrap_or(false)
    }

    #[tokio::test]
    async fn dropping_a_driver_ends_the_processes_it_started() {
        let mut driver = JsClient::spawn("orphan_child.mjs", &[]);
        let event = driver.expect_event("spawned", Duration::from_secs(20)).await;
        let pid = event["pid"].as_u64().expect("the child's pid");
        assert!(alive(pid), "the driver's child runs");
        drop(driver);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while alive(pid) {
            assert!(tokio::time::Instant::now() < deadline, "the driver's child outlived the dropped driver");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
