//! peers-js receives a `peers send` transfer by code (`docs/protocol.md` §9.3-9.5): the
//! Rust sender is the real binary (a child process, `--paths relay`, the real signaling
//! server on loopback); the Node driver `peers-js/dist/examples/receive-by-code.js`
//! joins the session by the code's number, opens the relay, runs the PAKE, accepts the
//! handshake pinned to the confirmed sender, answers the offer and checks every chunk's
//! BLAKE3 as the data streams in. A directory (an empty file, a small one, one of
//! several chunks, a nested one) arrives byte for byte; a wrong code is refused on
//! both sides.
//! Needs the `peers` binary built beside this test (`cargo build -p peers-device --bin
//! peers`), Node.js with `npm ci` in `tests/` and `peers-js/`, and `npx tsc -p peers-js`.

use std::time::Duration;

use peers_tests::JsClient;
use peers_tests::peers_js::{PeersSend, assert_moved_at, capped_relay_server, driver, noise};
use peers_tests::webrtc::signaling_server;

const STEP: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_js_receives_a_peers_send_directory_by_code_and_a_wrong_code_is_refused() {
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

    let sender = PeersSend::start(&url, &["--paths", "relay"], &docs);
    let code = sender.code();
    let mut receiver =
        JsClient::spawn(&driver("receive-by-code.js"), &[&url, &code, out.path().to_str().expect("utf-8")]);
    let confirmed = receiver.expect_event("confirmed", STEP).await;
    assert_eq!(confirmed["sender"].as_str().map(str::len), Some(40), "{confirmed}");
    let offer = receiver.expect_event("offer", STEP).await;
    assert_eq!(offer["bytes"], files.iter().map(|(_, l)| *l as u64).sum::<u64>(), "{offer}");
    let done = receiver.expect_event("done", STEP).await;
    for (i, (name, len)) in files.iter().enumerate() {
        let received = std::fs::read(out.path().join("docs").join(name)).expect("received file");
        assert!(received == noise(*len, i as u64 + 1), "{name} arrived byte for byte");
        let reported = done["files"].as_array().expect("files").iter().find(|f| f["path"] == format!("docs/{name}"));
        let reported = reported.unwrap_or_else(|| panic!("{name} in {done}"));
        assert_eq!(reported["blake3"], blake3::hash(&received).to_hex().as_str(), "{name}");
    }
    let (status, stderr) = receiver.wait(STEP).await;
    assert!(status.success(), "receiver failed: {stderr}");
    let (ok, events) = tokio::time::timeout(STEP, sender.finish()).await.expect("the sender ends");
    assert!(ok, "the sender reports success: {events:?}");

    // A wrong code: the words differ, the number is right.
    let sender = PeersSend::start(&url, &["--paths", "relay"], &docs.join("small.txt"));
    let code = sender.code();
    let (number, words) = code.split_once('-').expect("number-words");
    let wrong = format!("{number}-{}", words.chars().rev().collect::<String>());
    let wrong_out = tempfile::tempdir().expect("temp dir");
    let mut guesser =
        JsClient::spawn(&driver("receive-by-code.js"), &[&url, &wrong, wrong_out.path().to_str().expect("utf-8")]);
    let failed = guesser.expect_event("failed", STEP).await;
    assert_eq!((failed["kind"].as_str(), failed["code"].as_str()), (Some("Transfer"), Some("WrongCode")), "{failed}");
    let (status, _) = guesser.wait(STEP).await;
    assert!(!status.success(), "the guesser exits with a failure");
    let (ok, events) = tokio::time::timeout(STEP, sender.finish()).await.expect("the sender ends");
    assert!(!ok, "the sender fails on a wrong code: {events:?}");
    let text = serde_json::to_string(&events).expect("json");
    assert!(text.contains("did not match"), "the sender says the code did not match: {text}");
    assert_eq!(std::fs::read_dir(wrong_out.path()).expect("dir").count(), 0, "nothing written on a wrong code");
    server.shutdown().await;
}

/// §9.7 with peers-js as the receiver: `peers send --paths loopback` starts on the
/// relay and dials WebRTC; the Node driver (`--webrtc`, node-datachannel) accepts it,
/// takes part in the handover (groupReady, takeover or retire, as leader or follower
/// by the two fresh device ids) and answers the offer that follows the pause from its
/// next chunk. The file arrives byte for byte, and the bytes after the move came over
/// WebRTC (the driver counts the data per connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_js_follows_a_peers_send_from_the_relay_to_webrtc_mid_way() {
    const LEN: usize = 24 << 20;
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let src = tempfile::tempdir().expect("temp dir");
    let out = tempfile::tempdir().expect("temp dir");
    let file = src.path().join("moving.bin");
    std::fs::write(&file, noise(LEN, 9)).expect("file");

    let sender = PeersSend::start(&url, &["--paths", "loopback"], &file);
    let code = sender.code();
    let mut receiver =
        JsClient::spawn(&driver("receive-by-code.js"), &[&url, &code, out.path().to_str().expect("utf-8"), "--webrtc"]);
    let path = receiver.expect_event("path", Duration::from_secs(120)).await;
    assert_eq!(path["to"], "webrtc", "{path}");
    let moved_at = path["bytes_done"].as_u64().expect("bytes_done");
    assert!(moved_at < LEN as u64, "the move came before the end: {path}");
    let done = receiver.expect_event("done", Duration::from_secs(180)).await;
    let received = std::fs::read(out.path().join("moving.bin")).expect("received file");
    assert!(received == noise(LEN, 9), "the file arrived byte for byte");
    assert_moved_at(&done, moved_at, LEN as u64, "webrtc");
    let (status, stderr) = receiver.wait(STEP).await;
    assert!(status.success(), "receiver failed: {stderr}");
    let (ok, events) = tokio::time::timeout(STEP, sender.finish()).await.expect("the sender ends");
    assert!(ok, "the sender reports success: {events:?}");
    let moved = events.iter().find(|e| e["event"] == "path").unwrap_or_else(|| panic!("a path event: {events:?}"));
    assert_eq!(moved["from"], "server-relay", "{moved}");
    assert!(moved["to"].as_str().is_some_and(|t| t.starts_with("webrtc")), "{moved}");
    server.shutdown().await;
}

/// §9.5's new relay with peers-js as the receiver: a server whose relays carry at most
/// 8 MiB ends the relay under a 24 MiB `peers send --paths relay` (`LimitExceeded`);
/// the driver opens a new relay to the sender as the Rust receiver does, runs the
/// pinned handshake again and answers the new offer from its next chunk. The file
/// arrives byte for byte, every chunk verified once (the driver counts verified bytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_js_opens_a_new_relay_when_the_servers_cap_ends_one() {
    const LEN: usize = 24 << 20;
    let server = capped_relay_server(8 << 20).await;
    let url = server.url().expect("server url");
    let src = tempfile::tempdir().expect("temp dir");
    let out = tempfile::tempdir().expect("temp dir");
    let file = src.path().join("capped.bin");
    std::fs::write(&file, noise(LEN, 27)).expect("file");

    let sender = PeersSend::start(&url, &["--paths", "relay"], &file);
    let code = sender.code();
    let mut receiver =
        JsClient::spawn(&driver("receive-by-code.js"), &[&url, &code, out.path().to_str().expect("utf-8")]);
    let done = receiver.expect_event("done", Duration::from_secs(120)).await;
    assert_eq!(done["bytes"].as_u64(), Some(LEN as u64), "each chunk verified once: {done}");
    assert!(std::fs::read(out.path().join("capped.bin")).expect("file") == noise(LEN, 27), "the file arrived whole");
    let (status, stderr) = receiver.wait(STEP).await;
    assert!(status.success(), "receiver failed: {stderr}");
    let (ok, events) = tokio::time::timeout(STEP, sender.finish()).await.expect("the sender ends");
    assert!(ok, "the sender reports success: {events:?}");
    server.shutdown().await;
}

/// §9.4 with peers-js as the receiver across runs: the Node driver stages into its
/// output directory as `peers receive` does (`.peers-transfer-<digest>` with a `resume`
/// file). It is SIGKILLed mid-way under a 16 MiB `peers send --paths relay`; the sender
/// waits for it to come back, and the driver run again with the same code into the
/// same directory answers the offer from the first chunk it lacks: only the rest moves
/// (the sender's own status says how much it skipped), the file arrives whole and the
/// staging is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_js_killed_mid_way_resumes_from_its_staging_when_run_again() {
    const LEN: usize = 16 << 20;
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let src = tempfile::tempdir().expect("temp dir");
    let out = tempfile::tempdir().expect("temp dir");
    let file = src.path().join("staged.bin");
    std::fs::write(&file, noise(LEN, 31)).expect("file");
    let out_dir = out.path().to_str().expect("utf-8");

    let sender = PeersSend::start(&url, &["--paths", "relay"], &file);
    let code = sender.code();
    let mut first = JsClient::spawn(&driver("receive-by-code.js"), &[&url, &code, out_dir]);
    loop {
        let progress = first.expect_event("progress", STEP).await;
        if progress["bytes_verified"].as_u64().expect("bytes_verified") >= 4 << 20 {
            break;
        }
    }
    drop(first); // SIGKILL (kill_on_drop)
    let staging = std::fs::read_dir(out.path())
        .expect("out dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".peers-transfer-")))
        .expect("a staging directory after the kill");
    let kept = std::fs::read(staging.join("resume")).expect("a resume file");
    assert_eq!(kept.len(), 16, "the written and the synced position, entry and chunk each, big-endian");
    assert!(kept[8..] <= kept[..8], "nothing synced past what was written: {kept:?}");
    assert!(!out.path().join("staged.bin").exists(), "nothing in place before the end");

    // The code can be run again once the sender has reopened its session (it first
    // waits up to 10 s for a receiver that only blinked: docs/protocol.md §9.5).
    sender.waiting_for_return(Duration::from_secs(30)).await;
    let mut second = JsClient::spawn(&driver("receive-by-code.js"), &[&url, &code, out_dir]);
    let done = second.expect_event("done", Duration::from_secs(120)).await;
    let resumed = done["resumed"].as_u64().expect("resumed");
    let moved = done["bytes"].as_u64().expect("bytes");
    eprintln!("the rerun resumed at {resumed} of {LEN} bytes and received {moved}");
    assert!(resumed >= 3 << 20, "the rerun kept what the first verified (at least 4 MiB less a window): {done}");
    assert_eq!(moved, LEN as u64 - resumed, "only the rest came, each chunk verified once: {done}");
    assert!(std::fs::read(out.path().join("staged.bin")).expect("file") == noise(LEN, 31), "the file arrived whole");
    let reported = &done["files"][0];
    assert_eq!(reported["blake3"], blake3::hash(&noise(LEN, 31)).to_hex().as_str(), "{done}");
    assert!(!staging.exists(), "the staging is removed once complete");
    let (status, stderr) = second.wait(STEP).await;
    assert!(status.success(), "receiver failed: {stderr}");
    let (ok, events) = tokio::time::timeout(STEP, sender.finish()).await.expect("the sender ends");
    assert!(ok, "the sender reports success: {events:?}");
    // The sender's side of it: its last status skipped what the receiver had.
    let last = events.iter().rev().find(|e| e["event"] == "status").unwrap_or_else(|| panic!("a status: {events:?}"));
    assert_eq!(last["bytes_resumed"].as_u64(), Some(resumed), "the sender skipped the staged bytes: {last}");
    server.shutdown().await;
}
