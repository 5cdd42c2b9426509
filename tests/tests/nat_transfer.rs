//! Send by code across the NAT lab: `peers send` on a host behind one NAT,
//! `peers receive` on a host behind the other, both with only the signaling
//! server's URL (its ICE configuration names the lab's coturn). The transfer
//! starts on the server's relay and moves to the best path the NATs allow
//! while bytes are moving (the sender's uplink is limited, so the file takes
//! long enough for that): WebRTC direct through endpoint-independent NATs, and
//! WebRTC through TURN between symmetric ones. The file arrives intact.
//! And `peers send --to` between two daemons that trust each other: it starts on the
//! server's relay while UDP is blocked, and moves to WebRTC once UDP is back.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use peers_tests::nat::{Scenario, workspace_binary};
use peers_tests::netns::NatKind;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout};

/// The file: at the sender's 16 Mbit/s uplink about 4 s on the relay alone.
const SIZE: usize = 8 << 20;
/// Room for a debug build's WebRTC on a loaded machine.
const LIMIT: Duration = Duration::from_secs(240);

fn noise(len: usize) -> Vec<u8> {
    // xorshift: incompressible enough that Brotli never shrinks it.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Reads the JSON lines of `stdout` until it ends.
async fn events(stdout: ChildStdout) -> Vec<Value> {
    let mut lines = BufReader::new(stdout).lines();
    let mut out = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        out.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}")));
    }
    out
}

/// Waits for `child` (within [`LIMIT`]) and asserts it succeeded.
async fn finish(side: &str, mut child: Child, stdout: ChildStdout) -> Vec<Value> {
    let mut stderr = child.stderr.take().expect("stderr");
    let collected = tokio::spawn(events(stdout));
    let status = tokio::time::timeout(LIMIT, child.wait()).await;
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err).await;
    let events = collected.await.expect("events");
    let status = status.unwrap_or_else(|_| panic!("{side} still running after {LIMIT:?}: {events:?}\n{err}"));
    assert!(status.expect("wait").success(), "{side} failed: {err}\n{events:?}");
    events
}

/// A transfer of [`SIZE`] bytes from LAN 1 to LAN 2; returns both sides' events
/// once both ended and the file is checked.
async fn transfer(kinds: (NatKind, NatKind)) -> (Vec<Value>, Vec<Value>) {
    let mut s = Scenario::start(kinds).await;
    let sender = s.lab.host("sender", 1, 2);
    let receiver = s.lab.host("receiver", 2, 2);
    s.lab.lab.limit_upload(&sender, "16mbit");
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("archive.bin");
    let data = noise(SIZE);
    std::fs::write(&file, &data).expect("file");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out");
    let url = s.signaling_urls();
    let spawn = |ns, args: &[&str]| {
        s.lab
            .lab
            .command(ns, workspace_binary("peers"))
            .args(args)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("peers")
    };
    let path = file.to_str().expect("UTF-8 path");
    let mut send = spawn(&sender, &["send", "--json", "--signaling", &url, path]);
    let mut send_out = BufReader::new(send.stdout.take().expect("stdout"));
    let mut first = String::new();
    send_out.read_line(&mut first).await.expect("the code line");
    let event: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{first:?}: {e}"));
    let code = event["code"].as_str().unwrap_or_else(|| panic!("no code: {event}")).to_owned();
    let out_dir = out.to_str().expect("UTF-8 path");
    let mut receive = spawn(&receiver, &["receive", &code, "--out", out_dir, "--yes", "--json", "--signaling", &url]);
    let receive_out = receive.stdout.take().expect("stdout");
    let (received, sent) =
        tokio::join!(finish("receive", receive, receive_out), finish("send", send, send_out.into_inner()),);
    let arrived = std::fs::read(Path::new(&out).join("archive.bin")).expect("the received file");
    assert!(arrived == data, "the received file differs ({} bytes of {SIZE})", arrived.len());
    (sent, received)
}

/// Both sides moved from the relay to `class` while bytes were moving, and ended done.
fn moved_mid_way(side: &str, events: &[Value], class: &str, size: usize) {
    let moves: Vec<&Value> = events.iter().filter(|e| e["event"] == "path").collect();
    let to = moves.iter().find(|m| m["to"].as_str().is_some_and(|to| to.starts_with(class)));
    let to = to.unwrap_or_else(|| panic!("{side} never moved to {class}: {moves:?}"));
    let at = to["bytes_done"].as_u64().unwrap_or(0);
    assert!(at < size as u64, "{side} moved to {class} only after the last byte: {to}");
    assert_eq!(events.last().map(|e| &e["event"]), Some(&Value::from("done")), "{side}: {:?}", events.last());
    eprintln!("{side}: {} after {at} of {size} bytes", to["to"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sent_by_code_through_two_nats_moves_to_webrtc_direct_and_arrives_intact() {
    let (sent, received) = transfer((NatKind::EndpointIndependent, NatKind::EndpointIndependent)).await;
    moved_mid_way("sender", &sent, "webrtc-direct", SIZE);
    moved_mid_way("receiver", &received, "webrtc-direct", SIZE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sent_by_code_between_symmetric_nats_moves_to_turn_and_arrives_intact() {
    let (sent, received) = transfer((NatKind::Symmetric, NatKind::Symmetric)).await;
    moved_mid_way("sender", &sent, "webrtc-relayed", SIZE);
    moved_mid_way("receiver", &received, "webrtc-relayed", SIZE);
}

/// Each line of `stdout` as JSON with when it came, in order; the first one with
/// verified bytes is also told on `moving`.
async fn events_until_moving(stdout: ChildStdout, moving: tokio::sync::oneshot::Sender<()>) -> Vec<(Instant, Value)> {
    let mut lines = BufReader::new(stdout).lines();
    let (mut events, mut moving) = (Vec::new(), Some(moving));
    while let Ok(Some(line)) = lines.next_line().await {
        let event: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        if event["event"] == "status" && event["bytes_done"].as_u64().is_some_and(|done| done > 0) {
            moving.take().map(|tx| tx.send(()));
        }
        events.push((Instant::now(), event));
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_to_a_trusted_daemon_moves_from_the_relay_to_webrtc_mid_way_without_resending() {
    const GROUP: &str = "files";
    let mut s = Scenario::start((NatKind::EndpointIndependent, NatKind::EndpointIndependent)).await;
    let a = s.device("a", 1, 2).await;
    let b = s.device("b", 2, 2).await;
    s.trust_all(GROUP, &[vec![], vec![]]).await;
    // No UDP through a's NAT (so no WebRTC, nor TURN): the daemons meet on the relay.
    let nat1 = s.lab.nat1.clone();
    s.lab.lab.block_udp(&nat1);
    let host_a = s.daemons[a].host.clone();
    s.lab.lab.limit_upload(&host_a, "16mbit");
    let dir = tempfile::tempdir().expect("temporary directory");
    let inbox = dir.path().join("inbox");
    s.run(a, GROUP, &[]);
    s.run(b, GROUP, &["--inbox", inbox.to_str().expect("UTF-8 path")]);
    let relayed = |l: &str| l.contains("server-relay") && l.contains(" yes ");
    s.wait_status(a, LIMIT, relayed).await.unwrap_or_else(|status| panic!("no relay:\n{status}"));

    // Long enough on the relay for WebRTC to retry and connect once UDP is back.
    let size = 4 * SIZE;
    let file = dir.path().join("archive.bin");
    let data = noise(size);
    std::fs::write(&file, &data).expect("file");
    let info = s.daemons[b].ok(&["info"]).await;
    let id_b = info.lines().find_map(|l| l.strip_prefix("device ")).expect("device id").trim().to_owned();
    let mut send = tokio::process::Command::new(workspace_binary("peers"))
        .arg("--data-dir")
        .arg(&s.daemons[a].data)
        .args(["send", "--to", &id_b, "--json", file.to_str().expect("UTF-8 path")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("peers send --to");
    let (moving_tx, moving) = tokio::sync::oneshot::channel();
    let events = tokio::spawn(events_until_moving(send.stdout.take().expect("stdout"), moving_tx));
    // Bytes move on the relay: UDP comes back, and with it WebRTC.
    let _ = tokio::time::timeout(LIMIT, moving).await;
    s.lab.lab.unblock_udp(&nat1);
    let direct = |l: &str| l.contains("webrtc-direct") && l.contains(" yes ");
    let since = Instant::now();
    let (took, status) = s.wait_status(a, LIMIT, direct).await.unwrap_or_else(|status| panic!("no WebRTC:\n{status}"));
    let switched = since + took;
    let ended = tokio::time::timeout(LIMIT, send.wait()).await.expect("send --to ended").expect("status");
    let timed = events.await.expect("events");
    let events: Vec<Value> = timed.iter().map(|(_, event)| event.clone()).collect();
    assert!(ended.success(), "send --to failed: {:?}", events.last());
    moved_mid_way("send --to", &events, "webrtc-direct", size);
    let arrived = std::fs::read(inbox.join("archive.bin")).expect("the received file");
    assert!(arrived == data, "the received file differs ({} bytes of {size})", arrived.len());
    // The transfer followed the switch at once (at the next chunk), instead of staying
    // on the relay until the manager closed it (its drain time, 10 s).
    let moved = timed.iter().find(|(_, e)| e["event"] == "path" && e["to"] == "webrtc-direct").map(|(at, _)| *at);
    let lag = moved.expect("a path event").saturating_duration_since(switched);
    assert!(lag < Duration::from_secs(5), "the transfer moved {lag:?} after the switch to WebRTC\n{status}");
    // The offer on WebRTC went on from the relay's last verified chunk.
    let resumed = events.iter().rev().find_map(|e| e["bytes_resumed"].as_u64()).unwrap_or(0);
    assert!(resumed > 0, "nothing was resumed: every byte was sent again: {:?}", events.last());
}
