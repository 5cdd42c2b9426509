//! peers-js sends by code to the real `peers receive` (`docs/protocol.md` §9.3-9.5): the
//! Node driver `peers-js/dist/examples/send-by-code.js` creates the `pake` session,
//! prints the code, runs the PAKE as creator on the relay, dials the handshake pinned
//! to the confirmed receiver, offers the manifest (a BLAKE3 per chunk) and streams the
//! chunks from the receiver's `Accept`; the receiver is the real binary (a child
//! process, `--paths relay`) through the real signaling server on loopback. A
//! directory arrives byte for byte; a transfer cancelled mid-way resumes from what the
//! receiver kept when the same file is sent again; a wrong code is refused on both
//! sides.
//! Needs the `peers` binary built beside this test (`cargo build -p peers-device
//! --all-features --bin peers`), Node.js with `npm ci` in `tests/` and `peers-js/`, and
//! `npx tsc -p peers-js`.

use std::time::Duration;

use peers_tests::JsClient;
use peers_tests::peers_js::{PeersReceive, assert_moved_at, capped_relay_server, driver, noise};
use peers_tests::webrtc::signaling_server;

const STEP: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_js_sends_a_directory_by_code_to_peers_receive() {
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let src = tempfile::tempdir().expect("temp dir");
    let out = tempfile::tempdir().expect("temp dir");
    let docs = src.path().join("docs");
    std::fs::create_dir_all(docs.join("deep/er")).expect("dirs");
    let files = [("empty", 0usize), ("small.txt", 10), ("big.bin", (16 << 20) + 5), ("deep/er/nested", 70_000)];
    for (i, (name, len)) in files.iter().enumerate() {
        std::fs::write(docs.join(name), noise(*len, i as u64 + 1)).expect("file");
    }

    let mut sender = JsClient::spawn(&driver("send-by-code.js"), &[&url, docs.to_str().expect("utf-8")]);
    let code = sender.expect_event("code", STEP).await;
    assert_eq!(code["bytes"], files.iter().map(|(_, l)| *l as u64).sum::<u64>(), "{code}");
    let code = code["code"].as_str().expect("code").to_owned();
    let receiver = PeersReceive::start(&url, &code, out.path(), &["--paths", "relay"]);
    let confirmed = sender.expect_event("confirmed", STEP).await;
    assert_eq!(confirmed["receiver"].as_str().map(str::len), Some(40), "{confirmed}");
    let accepted = sender.expect_event("accepted", STEP).await;
    // The receiver's first chunk: that of the first file with bytes (the directory comes first).
    assert_eq!((&accepted["from"]["chunk"], &accepted["resumed"]), (&0.into(), &0.into()), "{accepted}");
    let done = sender.expect_event("done", STEP).await;
    assert_eq!(done["bytes"], files.iter().map(|(_, l)| *l as u64).sum::<u64>(), "{done}");
    let (status, stderr) = sender.wait(STEP).await;
    assert!(status.success(), "the sender failed: {stderr}");
    let (ok, events) = tokio::time::timeout(STEP, receiver.finish()).await.expect("the receiver ends");
    assert!(ok, "the receiver reports success: {events:?}");
    for (i, (name, len)) in files.iter().enumerate() {
        let received = std::fs::read(out.path().join("docs").join(name)).expect("received file");
        assert!(received == noise(*len, i as u64 + 1), "{name} arrived byte for byte");
    }
    server.shutdown().await;
}

/// The sender cancels after 8 MiB of a 24 MiB file: the receiver fails with the
/// sender's reason and keeps what it verified; the same file sent again under a new
/// code into the same directory is accepted from the first chunk it lacks, only the
/// rest is sent, and the file arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_send_resumes_from_the_receivers_accept() {
    const LEN: usize = 24 << 20;
    const CHUNK: u64 = 1 << 20;
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let src = tempfile::tempdir().expect("temp dir");
    let out = tempfile::tempdir().expect("temp dir");
    let file = src.path().join("resumed.bin");
    std::fs::write(&file, noise(LEN, 5)).expect("file");
    let path = file.to_str().expect("utf-8");

    let mut first =
        JsClient::spawn(&driver("send-by-code.js"), &[&url, "--cancel-after", &(8 << 20).to_string(), path]);
    let code = first.expect_event("code", STEP).await["code"].as_str().expect("code").to_owned();
    let receiver = PeersReceive::start(&url, &code, out.path(), &["--paths", "relay"]);
    first.expect_event("cancelling", STEP).await;
    let failed = first.expect_event("failed", STEP).await;
    assert_eq!(failed["code"], "Cancelled", "{failed}");
    let (ok, events) = tokio::time::timeout(STEP, receiver.finish()).await.expect("the receiver ends");
    assert!(!ok, "the receiver fails: {events:?}");
    let text = serde_json::to_string(&events).expect("json");
    assert!(text.contains("cancelled by the sender"), "the receiver says why: {text}");
    assert!(!out.path().join("resumed.bin").exists(), "nothing moved into place");

    let mut second = JsClient::spawn(&driver("send-by-code.js"), &[&url, path]);
    let code = second.expect_event("code", STEP).await["code"].as_str().expect("code").to_owned();
    let receiver = PeersReceive::start(&url, &code, out.path(), &["--paths", "relay"]);
    let accepted = second.expect_event("accepted", STEP).await;
    let resumed = accepted["resumed"].as_u64().expect("resumed");
    assert!(resumed > 0 && resumed < LEN as u64, "the receiver kept part of it: {accepted}");
    assert_eq!(resumed % CHUNK, 0, "whole chunks: {accepted}");
    assert_eq!(accepted["from"]["chunk"].as_u64(), Some(resumed / CHUNK), "{accepted}");
    let done = second.expect_event("done", STEP).await;
    assert_eq!(done["bytes"].as_u64(), Some(LEN as u64 - resumed), "only the rest was sent: {done}");
    let (ok, events) = tokio::time::timeout(STEP, receiver.finish()).await.expect("the receiver ends");
    assert!(ok, "the receiver reports success: {events:?}");
    let offer = events.iter().find(|e| e["event"] == "offer").unwrap_or_else(|| panic!("an offer event: {events:?}"));
    assert_eq!(offer["staged"].as_u64(), Some(resumed), "the receiver resumed from its staging: {offer}");
    assert!(std::fs::read(out.path().join("resumed.bin")).expect("file") == noise(LEN, 5), "the file arrived whole");
    let (status, stderr) = second.wait(STEP).await;
    assert!(status.success(), "the sender failed: {stderr}");
    server.shutdown().await;
}

/// The right session number with other words: the PAKE fails on both sides, the
/// receiver writes nothing, and the code is burnt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_is_refused_on_both_sides() {
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let src = tempfile::tempdir().expect("temp dir");
    let out = tempfile::tempdir().expect("temp dir");
    let file = src.path().join("secret.txt");
    std::fs::write(&file, b"not for guessers").expect("file");

    let mut sender = JsClient::spawn(&driver("send-by-code.js"), &[&url, file.to_str().expect("utf-8")]);
    let code = sender.expect_event("code", STEP).await["code"].as_str().expect("code").to_owned();
    let (rest, last) = code.rsplit_once('-').expect("number-words");
    let wrong = format!("{rest}-{}", if last == "maple" { "orbit" } else { "maple" });
    let guesser = PeersReceive::start(&url, &wrong, out.path(), &["--paths", "relay"]);
    let failed = sender.expect_event("failed", STEP).await;
    assert_eq!((failed["kind"].as_str(), failed["code"].as_str()), (Some("Transfer"), Some("WrongCode")), "{failed}");
    let (status, _) = sender.wait(STEP).await;
    assert!(!status.success(), "the sender exits with a failure");
    let (ok, events) = tokio::time::timeout(STEP, guesser.finish()).await.expect("the guesser ends");
    assert!(!ok, "the guesser fails: {events:?}");
    let text = serde_json::to_string(&events).expect("json");
    assert!(text.contains("did not match"), "the receiver says the code did not match: {text}");
    assert_eq!(std::fs::read_dir(out.path()).expect("dir").count(), 0, "nothing written on a wrong code");

    // The code is burnt: the right words now find no session.
    let late = PeersReceive::start(&url, &code, out.path(), &["--paths", "relay"]);
    let (ok, events) = tokio::time::timeout(STEP, late.finish()).await.expect("the late receiver ends");
    assert!(!ok, "the right code after a wrong guess fails: {events:?}");
    server.shutdown().await;
}

/// §9.7 with peers-js as the sender: the driver (`--webrtc`, node-datachannel) starts
/// on the relay and dials the receiver over WebRTC; `peers receive --paths loopback`
/// accepts, the handover (leader or follower by the two fresh device ids) makes WebRTC
/// active, the sender pauses at a chunk boundary and offers again there, and the rest
/// goes over WebRTC. The file arrives byte for byte; no chunk was sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_js_moves_a_send_from_the_relay_to_webrtc_mid_way() {
    const LEN: usize = 24 << 20;
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let src = tempfile::tempdir().expect("temp dir");
    let out = tempfile::tempdir().expect("temp dir");
    let file = src.path().join("moving.bin");
    std::fs::write(&file, noise(LEN, 9)).expect("file");

    let mut sender = JsClient::spawn(&driver("send-by-code.js"), &[&url, "--webrtc", file.to_str().expect("utf-8")]);
    let code = sender.expect_event("code", STEP).await["code"].as_str().expect("code").to_owned();
    let receiver = PeersReceive::start(&url, &code, out.path(), &["--paths", "loopback"]);
    let path = sender.expect_event("path", Duration::from_secs(120)).await;
    assert_eq!(path["to"], "webrtc", "{path}");
    let moved_at = path["bytes_done"].as_u64().expect("bytes_done");
    assert!(moved_at < LEN as u64, "the move came before the end: {path}");
    let done = sender.expect_event("done", Duration::from_secs(180)).await;
    assert_eq!(done["bytes"].as_u64(), Some(LEN as u64), "no chunk sent twice: {done}");
    let paths = done["paths"].as_array().expect("paths");
    let bytes_over = |transport: &str| {
        paths.iter().find(|p| p["transport"] == transport).and_then(|p| p["bytes"].as_u64()).unwrap_or(0)
    };
    assert_eq!(paths.first().map(|p| &p["transport"]), Some(&"relay".into()), "it starts on the relay: {done}");
    assert_eq!(bytes_over("relay"), moved_at, "everything before the move went over the relay: {done}");
    assert_eq!(bytes_over("webrtc"), LEN as u64 - moved_at, "everything after it over WebRTC: {done}");
    let (ok, events) = tokio::time::timeout(STEP, receiver.finish()).await.expect("the receiver ends");
    assert!(ok, "the receiver reports success: {events:?}");
    assert!(std::fs::read(out.path().join("moving.bin")).expect("file") == noise(LEN, 9), "the file arrived whole");
    let moved = events.iter().find(|e| e["event"] == "path").unwrap_or_else(|| panic!("a path event: {events:?}"));
    assert_eq!(moved["from"], "server-relay", "{moved}");
    assert!(moved["to"].as_str().is_some_and(|t| t.starts_with("webrtc")), "{moved}");
    let (status, stderr) = sender.wait(STEP).await;
    assert!(status.success(), "the sender failed: {stderr}");
    server.shutdown().await;
}

/// §9.7's local socket with peers-js as the sender: `peers receive --paths local`
/// listens for socket.io on its interfaces and puts the URLs in the device info its
/// `Confirm` carries; the driver dials them (no WebRTC), the handover makes that
/// connection active (local outranks the relay), the sender pauses its stream on the
/// relay at a chunk boundary and offers again over socket.io. Nothing is sent twice:
/// the bytes over the relay end where the move starts (on loopback the dial takes
/// milliseconds, so the move usually comes before the first chunk: 0 bytes there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_js_moves_a_send_to_the_receivers_local_socket_mid_way() {
    const LEN: usize = 32 << 20;
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let src = tempfile::tempdir().expect("temp dir");
    let out = tempfile::tempdir().expect("temp dir");
    let file = src.path().join("local.bin");
    std::fs::write(&file, noise(LEN, 21)).expect("file");

    let mut sender = JsClient::spawn(&driver("send-by-code.js"), &[&url, file.to_str().expect("utf-8")]);
    let code = sender.expect_event("code", STEP).await["code"].as_str().expect("code").to_owned();
    let receiver = PeersReceive::start(&url, &code, out.path(), &["--paths", "local"]);
    let path = sender.expect_event("path", STEP).await;
    assert_eq!(path["to"], "socket.io", "{path}");
    let moved_at = path["bytes_done"].as_u64().expect("bytes_done");
    assert!(moved_at < LEN as u64, "the move came before the end: {path}");
    let done = sender.expect_event("done", STEP).await;
    assert_eq!(done["bytes"].as_u64(), Some(LEN as u64), "no chunk sent twice: {done}");
    assert_moved_at(&done, moved_at, LEN as u64, "socket.io");
    assert_eq!(done["hops"], 0, "a move is no break: {done}");
    let (ok, events) = tokio::time::timeout(STEP, receiver.finish()).await.expect("the receiver ends");
    assert!(ok, "the receiver reports success: {events:?}");
    assert!(std::fs::read(out.path().join("local.bin")).expect("file") == noise(LEN, 21), "the file arrived whole");
    let moved = events.iter().find(|e| e["event"] == "path").unwrap_or_else(|| panic!("a path event: {events:?}"));
    assert_eq!(moved["from"], "server-relay", "{moved}");
    assert!(moved["to"] == "local" || moved["to"] == "internet", "the receiver moved to its socket: {moved}");
    let (status, stderr) = sender.wait(STEP).await;
    assert!(status.success(), "the sender failed: {stderr}");
    server.shutdown().await;
}

/// §9.5.1 with peers-js as the sender: `peers receive` is killed (SIGKILL) after 8 MiB
/// of 24; the server closes its relay and has it offline, so the driver reopens the
/// code's session and waits; `peers receive CODE` run again into the same directory
/// runs a new PAKE, answers from its staging (whole chunks, more than nothing) and
/// only the rest is sent. The file arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_receiver_runs_the_code_again_and_the_send_resumes() {
    const LEN: usize = 24 << 20;
    const CHUNK: u64 = 1 << 20;
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let src = tempfile::tempdir().expect("temp dir");
    let out = tempfile::tempdir().expect("temp dir");
    let file = src.path().join("rejoin.bin");
    std::fs::write(&file, noise(LEN, 23)).expect("file");

    let args = [url.as_str(), "--no-local", "--rejoin-wait", "60", file.to_str().expect("utf-8")];
    let mut sender = JsClient::spawn(&driver("send-by-code.js"), &args);
    let code = sender.expect_event("code", STEP).await["code"].as_str().expect("code").to_owned();
    let first = PeersReceive::start(&url, &code, out.path(), &["--paths", "relay"]);
    let first_receiver = sender.expect_event("confirmed", STEP).await["receiver"].clone();
    loop {
        let progress = sender.expect_event("progress", STEP).await;
        if progress["bytes_done"].as_u64().expect("bytes_done") >= 8 << 20 {
            break;
        }
    }
    drop(first); // SIGKILL
    let waiting = sender.expect_event("waiting", STEP).await;
    assert_eq!(waiting["rejoins"], 1, "{waiting}");

    let second = PeersReceive::start(&url, &code, out.path(), &["--paths", "relay"]);
    let confirmed = sender.expect_event("confirmed", STEP).await;
    assert_ne!(confirmed["receiver"], first_receiver, "a new PAKE with the new receiver's fresh key: {confirmed}");
    let accepted = sender.expect_event("accepted", STEP).await;
    let resumed = accepted["resumed"].as_u64().expect("resumed");
    assert!(resumed >= 4 << 20 && resumed < LEN as u64, "the receiver kept what it verified: {accepted}");
    assert_eq!(resumed % CHUNK, 0, "whole chunks: {accepted}");
    let done = sender.expect_event("done", Duration::from_secs(120)).await;
    assert_eq!(done["rejoins"], 1, "{done}");
    let sent = done["bytes"].as_u64().expect("bytes");
    // Verified chunks are not sent again; only those in flight at the kill are (at most a few).
    assert!(sent >= LEN as u64 && sent <= LEN as u64 + 4 * CHUNK, "sent {sent} for {LEN}: {done}");
    let (ok, events) = tokio::time::timeout(STEP, second.finish()).await.expect("the receiver ends");
    assert!(ok, "the returning receiver reports success: {events:?}");
    let offer = events.iter().find(|e| e["event"] == "offer").unwrap_or_else(|| panic!("an offer event: {events:?}"));
    assert_eq!(offer["staged"].as_u64(), Some(resumed), "it resumed from its staging: {offer}");
    assert!(std::fs::read(out.path().join("rejoin.bin")).expect("file") == noise(LEN, 23), "the file arrived whole");
    let (status, stderr) = sender.wait(STEP).await;
    assert!(status.success(), "the sender failed: {stderr}");
    server.shutdown().await;
}

/// §9.5's new relay with peers-js as the sender and `peers receive` as the receiver:
/// a server whose relays carry at most 8 MiB ends the relay under a 24 MiB transfer
/// (`LimitExceeded`); both sides are online, so each opens a new relay, the pinned
/// handshake runs again (no new PAKE) and the offer resumes from the receiver's last
/// verified chunk. The file arrives whole; only chunks in flight went twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_that_end_at_the_servers_cap_are_replaced_under_a_send() {
    const LEN: usize = 24 << 20;
    const CHUNK: u64 = 1 << 20;
    let server = capped_relay_server(8 << 20).await;
    let url = server.url().expect("server url");
    let src = tempfile::tempdir().expect("temp dir");
    let out = tempfile::tempdir().expect("temp dir");
    let file = src.path().join("capped.bin");
    std::fs::write(&file, noise(LEN, 25)).expect("file");

    let args = [url.as_str(), "--no-local", "--rejoin-wait", "0", file.to_str().expect("utf-8")];
    let mut sender = JsClient::spawn(&driver("send-by-code.js"), &args);
    let code = sender.expect_event("code", STEP).await["code"].as_str().expect("code").to_owned();
    let receiver = PeersReceive::start(&url, &code, out.path(), &["--paths", "relay"]);
    let relay = sender.expect_event("relay", STEP).await;
    assert_eq!(relay["hops"], 1, "{relay}");
    let done = sender.expect_event("done", Duration::from_secs(120)).await;
    let hops = done["hops"].as_u64().expect("hops");
    assert!(hops >= 2, "24 MiB through relays of 8 MiB: {done}");
    let sent = done["bytes"].as_u64().expect("bytes");
    assert!(sent >= LEN as u64 && sent <= LEN as u64 + hops * 2 * CHUNK, "only chunks in flight went twice: {done}");
    assert_eq!(done["rejoins"], 0, "{done}");
    let (ok, events) = tokio::time::timeout(STEP, receiver.finish()).await.expect("the receiver ends");
    assert!(ok, "the receiver reports success: {events:?}");
    assert!(std::fs::read(out.path().join("capped.bin")).expect("file") == noise(LEN, 25), "the file arrived whole");
    let (status, stderr) = sender.wait(STEP).await;
    assert!(status.success(), "the sender failed: {stderr}");
    server.shutdown().await;
}
