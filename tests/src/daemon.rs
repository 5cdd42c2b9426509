//! A `peers run` daemon as a child process of a test, driven through its CLI (the
//! `peers` binary built beside the tests: `cargo build -p peers-device --bin peers`).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use peers_sdk::DeviceId;
use tokio::process::{Child, Command};

use crate::JsClient;
use crate::nat::workspace_binary;

/// `peers --data-dir <data> <args…>` with no signaling or advertise variables from the
/// environment.
pub fn peers_command(data: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(workspace_binary("peers"));
    command
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("PEERS_SIGNALING_URL")
        .env_remove("PEERS_ADVERTISE")
        .kill_on_drop(true);
    command
}

/// Runs `peers --data-dir <data> <args…>`, asserting success; its standard output.
pub async fn peers(data: &Path, args: &[&str]) -> String {
    let out = peers_command(data, args).output().await.expect("peers");
    assert!(out.status.success(), "peers {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `peers init --user <user>` in `data`; returns the device's share code (from `peers info`).
pub async fn init(data: &Path, user: &str) -> String {
    peers(data, &["init", "--user", user]).await;
    let info = peers(data, &["info"]).await;
    info.lines().find_map(|l| l.strip_prefix("share code ")).expect("share code").trim().to_owned()
}

/// Starts `peers --data-dir <data> run <args…>` (its log level from `$PEERS_DAEMON_LOG`,
/// default errors only) and waits until its control socket answers `peers status` with
/// an output that contains `status_contains` (at most `within`). Killed when the
/// returned child is dropped.
pub async fn run(data: &Path, args: &[&str], status_contains: &str, within: Duration) -> Child {
    let mut run_args = vec!["run"];
    run_args.extend_from_slice(args);
    let daemon = peers_command(data, &run_args)
        .env("RUST_LOG", std::env::var("PEERS_DAEMON_LOG").unwrap_or_else(|_| "error".into()))
        .stdout(Stdio::null())
        .spawn()
        .expect("peers run");
    let started = Instant::now();
    loop {
        let out = peers_command(data, &["status"]).output().await.expect("peers status");
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains(status_contains) {
            return daemon;
        }
        assert!(started.elapsed() < within, "the daemon did not answer: {}", String::from_utf8_lossy(&out.stderr));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The RPCs both ways between a peers-js device (`peers-js/examples/daemon-exercise.ts`,
/// run by `js`) and the daemon `daemon` that trusts it in `group`: the device called the
/// daemon's `peers:ping` and read, with `listChanges_{group}`, the value `"greeting"`
/// = `"from the daemon"` put through the daemon; the daemon called the device's
/// `peers:groupReady` for the group and its liveness `peers:ping`. Each event within `step`.
pub async fn expect_calls_both_ways(js: &mut JsClient, daemon: &DeviceId, group: &str, step: Duration) {
    js.expect_event("pinged", step).await;
    let changes = js.expect_event("changes", step).await;
    let read = changes["changes"].as_array().expect("changes");
    assert!(
        read.iter()
            .any(|c| c["key"] == "greeting" && c["value"] == "from the daemon" && c["origin"] == daemon.to_string()),
        "the device read the value put through the daemon: {changes}"
    );
    let ready = js.expect_event("group_ready", step).await;
    assert_eq!(ready["groups"], serde_json::json!([group]), "{ready}");
    let calls = js.expect_event("daemon_calls", step).await;
    let calls: Vec<&str> = calls["calls"].as_array().expect("calls").iter().filter_map(|c| c.as_str()).collect();
    assert!(calls.contains(&"peers:groupReady") && calls.contains(&"peers:ping"), "{calls:?}");
}
