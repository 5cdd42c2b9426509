//! A peers-js device in Node against a real `peers run` daemon (a child process of this
//! test), over each transport the daemon reaches it by: WebRTC (node-datachannel, the
//! daemon dials through the real signaling server), the server's frame relay (the Node
//! device answers relay requests and nothing else, so the relay is all the daemon
//! gets), and socket.io (the Node device dials the daemon's `--listen` socket, with no
//! signaling server). The driver is `peers-js/examples/daemon-device.ts`.
//!
//! Each test: the daemon and the Node device trust each other (the daemon through
//! `peers trust CODE --group G`, the device trusts the daemon's share code); the
//! connection comes up over the transport named; RPCs go both ways (the device calls
//! the daemon's `peers:ping` and reads the group's changes with `listChanges_G`, the
//! daemon calls the device's `peers:groupReady` and its liveness `peers:ping`); then
//! `peers send --to DEVICE` moves a 64 MiB file through the daemon to the device over
//! that connection, every chunk checked against the manifest on the device, and the
//! test checks the BLAKE3 of what arrived against the file's and the path the daemon
//! reports. And a `peers send --to` interrupted in the middle (Ctrl-C: the daemon resets
//! the stream and calls `peers:transfer:cancel`) fails on the device as `Cancelled`.
//! Needs the `peers` binary built beside this test, Node.js with `npm ci` in `tests/`
//! and `peers-js/`, and `npx tsc -p peers-js`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use peers_sdk::{DeviceId, DeviceInfo};
use peers_signaling::SignalingServer;
use peers_tests::JsClient;
use peers_tests::daemon::{expect_calls_both_ways, init, peers, peers_command, run};
use peers_tests::peers_js::{driver, hex, noise};
use peers_tests::webrtc::signaling_server;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

const STEP: Duration = Duration::from_secs(40);
const GROUP: &str = "notes";
const FILE_LEN: usize = 64 << 20;

/// How the daemon reaches the Node device, and what each side then reports.
struct Route {
    /// The driver's mode.
    mode: &'static str,
    /// `Connection.transport` on the Node side.
    transport: &'static str,
    /// The connection class `peers send --to` reports.
    class: &'static str,
}

const WEBRTC: Route = Route { mode: "webrtc", transport: "webrtc", class: "webrtc-direct" };
const RELAY: Route = Route { mode: "relay", transport: "relay", class: "server-relay" };
const SOCKETIO: Route = Route { mode: "socketio", transport: "socket.io", class: "local" };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_device_and_a_peers_daemon_talk_over_webrtc_and_the_daemon_sends_it_64_mib() {
    sends_64_mib(WEBRTC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_device_and_a_peers_daemon_talk_over_the_frame_relay_and_the_daemon_sends_it_64_mib() {
    sends_64_mib(RELAY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_device_dials_a_peers_daemons_socket_and_the_daemon_sends_it_64_mib() {
    sends_64_mib(SOCKETIO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_to_a_node_device_interrupted_in_the_middle_fails_there_as_cancelled() {
    // The relay is paced by the server's rate, so the middle lasts seconds.
    let mut met = meet(&RELAY).await;
    let mut send = met.send(FILE_LEN).await.stdout(Stdio::piped()).spawn().expect("peers send --to");
    let mut lines = BufReader::new(send.stdout.take().expect("piped stdout")).lines();
    loop {
        let line = tokio::time::timeout(STEP, lines.next_line())
            .await
            .expect("a progress line")
            .expect("reading peers send")
            .expect("the output ended before bytes moved");
        let event: Value = serde_json::from_str(&line).expect("a JSON line");
        assert_ne!(event["event"], "done", "the transfer finished before it was interrupted");
        if event["event"] == "status" && event["bytes_done"].as_u64().unwrap_or(0) > 0 {
            break;
        }
    }
    let pid = send.id().expect("peers send runs").to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let status =
        tokio::time::timeout(Duration::from_secs(60), send.wait()).await.expect("peers send ends").expect("wait");
    assert!(!status.success(), "an interrupted send --to succeeded");

    let failed = met.node.expect_event("receive_failed", STEP).await;
    assert_eq!((failed["kind"].as_str(), failed["code"].as_str()), (Some("Transfer"), Some("Cancelled")), "{failed}");
    assert!(failed["message"].as_str().unwrap_or("").contains("discarded"), "{failed}");
    let bytes = failed["bytes"].as_u64().expect("bytes");
    assert!(bytes < FILE_LEN as u64, "cancelled before the end: {failed}");
    met.end().await;
}

/// A daemon and a Node device that trust each other, connected over `route`, past the
/// RPCs both ways, the device waiting for a transfer.
struct Meeting {
    dir: TempDir,
    data: PathBuf,
    node: JsClient,
    node_id: DeviceId,
    daemon: Child,
    server: Option<SignalingServer>,
}

async fn meet(route: &Route) -> Meeting {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("daemon");
    let code = init(&data, "alice").await;
    let daemon_id = DeviceInfo::from_share_code(&code).expect("the daemon's share code parses").device_id;

    // WebRTC and the relay go through a signaling server; socket.io needs none.
    let server = match route.mode {
        "socketio" => None,
        _ => Some(signaling_server().await),
    };
    let (where_, daemon) = match &server {
        Some(server) => {
            let url = server.url().expect("server url");
            let daemon = run(&data, &["--group", GROUP, "--signaling", &url], "signaling", STEP).await;
            (url, daemon)
        }
        None => {
            let port =
                std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("port").port();
            let listen = format!("127.0.0.1:{port}");
            (format!("http://{listen}"), run(&data, &["--group", GROUP, "--listen", &listen], "", STEP).await)
        }
    };
    peers(&data, &["put", GROUP, "greeting", "from the daemon"]).await;

    let mut node = JsClient::spawn(&driver("daemon-device.js"), &[route.mode, &where_, &code, GROUP]);
    let identity = node.expect_event("identity", STEP).await;
    let node_code = identity["share_code"].as_str().expect("the device's share code");
    let node_id = DeviceInfo::from_share_code(node_code).expect("the device's share code parses").device_id;
    let trusted = peers(&data, &["trust", node_code, "--group", GROUP]).await;
    assert!(trusted.contains(&node_id.to_string()[..8]), "the daemon trusts the device: {trusted}");

    let connected = node.expect_event("connected", STEP).await;
    assert_eq!(connected["transport"], route.transport, "{connected}");
    assert_eq!(connected["peer"], daemon_id.to_string(), "{connected}");
    if route.mode == "webrtc" {
        assert_eq!(
            connected["binding"],
            peers_transport_webrtc::BINDING_KIND,
            "bound to the DTLS fingerprints: {connected}"
        );
    }

    expect_calls_both_ways(&mut node, &daemon_id, GROUP, STEP).await;
    node.expect_event("receiving", STEP).await;
    Meeting { dir, data, node, node_id, daemon, server }
}

impl Meeting {
    /// Writes `len` bytes of noise to `film.bin`; `peers send --to <the device> --json` of it.
    async fn send(&self, len: usize) -> tokio::process::Command {
        let file = self.file();
        let bytes = noise(len, 17);
        tokio::fs::write(&file, &bytes).await.expect("write the file");
        let to = self.node_id.to_string();
        peers_command(&self.data, &["send", "--to", &to, "--json", file.to_str().expect("utf-8 path")])
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("film.bin")
    }

    /// The device closes; the daemon keeps running.
    async fn end(mut self) {
        let closed = self.node.expect_event("closed", STEP).await;
        assert_eq!(closed["reason"]["message"], "node done", "{closed}");
        let (status, stderr) = self.node.wait(STEP).await;
        assert!(status.success(), "driver failed: {stderr}");
        assert!(
            self.daemon.try_wait().expect("daemon state").is_none(),
            "the daemon keeps running after the device left"
        );
        let _ = self.daemon.kill().await;
        if let Some(server) = self.server {
            server.shutdown().await;
        }
    }
}

/// BLAKE3 of a file, hex.
fn blake3_hex(path: &Path) -> String {
    hex(blake3::hash(&std::fs::read(path).expect("read the file")).as_bytes())
}

async fn sends_64_mib(route: Route) {
    let met = meet(&route).await;
    let out = tokio::time::timeout(Duration::from_secs(120), met.send(FILE_LEN).await.output())
        .await
        .expect("peers send --to ended within 120 s")
        .expect("peers send --to");
    let mut met = met;
    if !out.status.success() {
        let mut device = met.node.next_event(STEP).await;
        while device["event"] == "daemon_called" {
            device = met.node.next_event(STEP).await;
        }
        panic!("peers send --to: {}; the device reported {device}", String::from_utf8_lossy(&out.stderr));
    }
    let events: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(events.last().map(|e| e["event"].clone()), Some("done".into()), "{events:?}");
    assert!(
        events.iter().any(|e| e["event"] == "status" && e["path"] == route.class),
        "the daemon sent over {}: {events:?}",
        route.class
    );

    let received = met.node.expect_event("received", STEP).await;
    let digest = blake3_hex(&met.file());
    assert_eq!(received["bytes"], FILE_LEN, "{received}");
    assert_eq!(received["files"], serde_json::json!([{ "path": "film.bin", "bytes": FILE_LEN, "blake3": digest }]));
    assert_eq!(received["paths"], serde_json::json!([{ "transport": route.transport, "bytes": FILE_LEN }]));
    met.end().await;
}
