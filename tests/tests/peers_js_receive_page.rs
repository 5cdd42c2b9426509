//! The receive page (`peers-js/page/`) in headless Chromium receives a `peers send`
//! by code (`docs/protocol.md` §9.3-9.5): the Rust sender is the real binary (a child
//! process, `--paths relay`, the real signaling server on loopback); the Node driver
//! `tests/js/peers_js_receive.mjs` bundles the page, serves it on loopback and opens
//! it with the code in the fragment. In the page, `receiveByCode` joins the session,
//! runs the PAKE on the server's relay, accepts the pinned handshake, answers the offer
//! and writes every verified chunk into the origin private file system as it arrives
//! (headless Chromium can show no directory picker); the page then reads the file back
//! and reports its BLAKE3. 64 MiB arrive byte for byte; a wrong code is refused on both
//! sides (the page reports `WrongCode`, the sender exits with its "did not match").
//! Then the signaling server serves the page itself (`ServerConfig::receive_page`), and
//! the link `peers send` prints beside the code receives the file in Chromium.
//! The page stages in the origin private file system (`peers-js/src/staging-browser.ts`):
//! a page closed mid-transfer and opened again with the code gets only the rest, and a
//! transfer larger than the origin's quota fails `NoSpace` on both sides.
//! Needs the `peers` binary built beside this test (`cargo build -p peers-device --bin
//! peers`), Node.js with `npm ci` in `tests/` and `peers-js/`, `npx tsc -p peers-js`, and
//! a Chromium binary (`$CHROMIUM_PATH`, or `chromium` on `$PATH`).

use std::time::Duration;

use peers_signaling::{ReceivePage, ServerConfig, SignalingServer};
use peers_tests::peers_js::{PeersSend, noise};
use peers_tests::webrtc::signaling_server;
use peers_tests::{JsClient, crate_dir};

const STEP: Duration = Duration::from_secs(60);
const MIB: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_in_chromium_receives_64_mib_from_peers_send_by_code_and_a_wrong_code_is_refused() {
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let src = tempfile::tempdir().expect("temp dir");
    let file = src.path().join("big.bin");
    let bytes = noise(MIB << 20, 7);
    std::fs::write(&file, &bytes).expect("file");
    let expected = blake3::hash(&bytes).to_hex().to_string();
    drop(bytes);

    let sender = PeersSend::start(&url, &["--paths", "relay"], &file);
    assert!(sender.code_event.get("link").is_none(), "a server without the page names none: {}", sender.code_event);
    let mut page = JsClient::spawn("peers_js_receive.mjs", &[&url, &sender.code()]);
    let confirmed = page.expect_event("confirmed", STEP).await;
    assert_eq!(confirmed["sender"].as_str().map(str::len), Some(40), "{confirmed}");
    let offer = page.expect_event("offer", STEP).await;
    assert_eq!(offer["bytes"], (MIB as u64) << 20, "{offer}");
    let accepted = page.expect_event("accepted", STEP).await;
    assert_eq!(accepted["sink"], "opfs", "headless Chromium saves into the origin private file system: {accepted}");
    let progress = page.expect_event("progress", STEP).await;
    assert!(progress["bytes"].as_u64().is_some_and(|b| b < (MIB as u64) << 20), "progress before the end: {progress}");
    let done = page.expect_event("done", Duration::from_secs(180)).await;
    assert_eq!(done["bytes"], (MIB as u64) << 20, "{done}");
    let files = done["files"].as_array().expect("files");
    assert_eq!(files.len(), 1, "{done}");
    assert_eq!(files[0]["path"], "big.bin", "{done}");
    assert_eq!(files[0]["size"], (MIB as u64) << 20, "{done}");
    assert_eq!(files[0]["blake3"], expected.as_str(), "the file the page saved is the file sent");
    eprintln!("the receive page in Chromium over the relay: {MIB} MiB in {} s", done["seconds"]);
    let (status, stderr) = page.wait(STEP).await;
    assert!(status.success(), "page driver failed: {stderr}");
    let (ok, events) = tokio::time::timeout(STEP, sender.finish()).await.expect("the sender ends");
    assert!(ok, "the sender reports success: {events:?}");

    // A wrong code: the number is right, the words are not.
    let small = src.path().join("small.txt");
    std::fs::write(&small, b"not for guessers").expect("file");
    let sender = PeersSend::start(&url, &["--paths", "relay"], &small);
    let code = sender.code();
    let (number, words) = code.split_once('-').expect("number-words");
    let wrong = format!("{number}-{}", words.chars().rev().collect::<String>());
    let mut guesser = JsClient::spawn("peers_js_receive.mjs", &[&url, &wrong]);
    let failed = guesser.expect_event("failed", STEP).await;
    assert_eq!((failed["kind"].as_str(), failed["code"].as_str()), (Some("Transfer"), Some("WrongCode")), "{failed}");
    let (status, _) = guesser.wait(STEP).await;
    assert!(!status.success(), "the page's driver exits with a failure");
    let (ok, events) = tokio::time::timeout(STEP, sender.finish()).await.expect("the sender ends");
    assert!(!ok, "the sender fails on a wrong code: {events:?}");
    let text = serde_json::to_string(&events).expect("json");
    assert!(text.contains("did not match"), "the sender says the code did not match: {text}");
    server.shutdown().await;
}

/// The signaling server serves the page (`--receive-page`, here
/// `ServerConfig::receive_page` with the bundle `peers-js/scripts/bundle-page.mjs`
/// builds): `peers send` (default paths: the relay, then WebRTC) prints the link with
/// the code in its fragment; Chromium opens the link as printed, a click on Save
/// accepts (into the origin private file system: headless Chromium can answer no
/// directory picker), the progress bar fills, and the file arrives with its hash, the
/// transfer having moved to WebRTC on the way when Chromium's path came up.
/// Then a person who clicks Decline: the page shows "Declined" (not a failure) and
/// the sender reports that the receiver declined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signaling_server_serves_the_page_and_peers_send_prints_a_link_that_receives_in_chromium() {
    const LEN: usize = 20 << 20;
    let bundle = tempfile::tempdir().expect("temp dir");
    let built = std::process::Command::new("node")
        .arg(crate_dir().join("../peers-js/scripts/bundle-page.mjs"))
        .arg(bundle.path())
        .status()
        .expect("node");
    assert!(built.success(), "the page bundles (npx tsc -p peers-js first)");
    let mut config = ServerConfig::in_memory();
    config.receive_page = Some(ReceivePage::load(bundle.path()).expect("the bundle loads"));
    let server = SignalingServer::bind(config).await.expect("signaling server");
    let url = server.url().expect("server url");
    let src = tempfile::tempdir().expect("temp dir");
    let file = src.path().join("linked.bin");
    let bytes = noise(LEN, 11);
    std::fs::write(&file, &bytes).expect("file");

    let sender = PeersSend::start(&url, &[], &file);
    let code = sender.code();
    let link = sender.code_event["link"].as_str().expect("a link beside the code").to_owned();
    assert_eq!(
        link,
        format!("{}/receive/#{code}", url.trim_end_matches('/')),
        "the page's path, the code in the fragment"
    );
    let mut page = JsClient::spawn("peers_js_receive.mjs", &["--link", &link]);
    let accepted = page.expect_event("accepted", STEP).await;
    assert_eq!(accepted["sink"], "opfs", "{accepted}");
    page.expect_event("progress", STEP).await;
    let done = page.expect_event("done", Duration::from_secs(180)).await;
    assert_eq!(done["bytes"], LEN as u64, "{done}");
    assert_eq!(done["files"][0]["path"], "linked.bin", "{done}");
    assert_eq!(done["files"][0]["blake3"], blake3::hash(&bytes).to_hex().as_str(), "the page saved the file sent");
    let shown = &done["progress_shown"];
    assert_eq!(
        (shown["value"].as_u64(), shown["max"].as_u64(), shown["hidden"].as_bool()),
        (Some(LEN as u64), Some(LEN as u64), Some(false)),
        "a full, visible progress bar: {done}"
    );
    eprintln!("the page served by the signaling server: {done}");
    let (status, stderr) = page.wait(STEP).await;
    assert!(status.success(), "page driver failed: {stderr}");
    let (ok, events) = tokio::time::timeout(STEP, sender.finish()).await.expect("the sender ends");
    assert!(ok, "the sender reports success: {events:?}");

    // A person who reads the offer and clicks Decline: the page says so (not a
    // failure) and the sender is told "declined".
    let sender = PeersSend::start(&url, &[], &file);
    let link = sender.code_event["link"].as_str().expect("a link beside the code").to_owned();
    let mut page = JsClient::spawn("peers_js_receive.mjs", &["--link", &link, "--decline"]);
    let offer = page.expect_event("offer", STEP).await;
    assert_eq!(offer["bytes"], LEN as u64, "{offer}");
    let failed = page.expect_event("failed", STEP).await;
    assert_eq!((failed["kind"].as_str(), failed["code"].as_str()), (Some("Transfer"), Some("Declined")), "{failed}");
    assert_eq!(failed["status_shown"], "Declined: nothing was received.", "{failed}");
    let (status, _) = page.wait(STEP).await;
    assert!(!status.success(), "the page's driver reports the transfer did not happen");
    let (ok, events) = tokio::time::timeout(STEP, sender.finish()).await.expect("the sender ends");
    assert!(!ok, "the sender does not report success: {events:?}");
    let text = serde_json::to_string(&events).expect("json");
    assert!(text.contains("declined"), "the sender says the receiver declined: {text}");
    server.shutdown().await;
}

/// A page closed mid-transfer resumes from its staging in the origin private file
/// system (`peers-js/src/staging-browser.ts`, docs/protocol.md §9.5.1): the page,
/// served on loopback, receives 64 MiB from `peers send --paths relay` and is closed
/// once it has 24 MiB; the sender sees its receiver gone and waits for the code to be
/// run again (`waiting-return`); the page opened again with the same code in the same
/// browser says it resumes, gets only the rest, and saves the file whole, its staging
/// deleted. The sender's last status skipped the bytes the page had kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_closed_mid_transfer_and_opened_again_with_the_code_gets_only_the_rest() {
    close_and_open_again(13, true).await;
}

/// The same, opened again at once, before the sender noticed the page went: the page's
/// join is refused `session_taken` (the session still names the closed page) and tried
/// again (`joinCode`) until the sender has reopened the session, then it resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_opened_again_at_once_is_refused_until_the_sender_waits_and_then_resumes() {
    close_and_open_again(21, false).await;
}

/// Closes the receive page mid-transfer and opens it again with the code, once the
/// sender waits for it (`wait_for_return`) or at once.
async fn close_and_open_again(seed: u64, wait_for_return: bool) {
    const LEN: u64 = (MIB as u64) << 20;
    const CLOSE_AT: u64 = 24 << 20;
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let src = tempfile::tempdir().expect("temp dir");
    let file = src.path().join("resumed.bin");
    let bytes = noise(LEN as usize, seed);
    std::fs::write(&file, &bytes).expect("file");
    let expected = blake3::hash(&bytes).to_hex().to_string();
    drop(bytes);
    let reopen = src.path().join("reopen");

    let sender = PeersSend::start(&url, &["--paths", "relay"], &file);
    let code = sender.code();
    let reopen_arg = reopen.to_str().expect("utf-8");
    let close_arg = CLOSE_AT.to_string();
    let args = [url.as_str(), &code, "--close-after", &close_arg, "--reopen-when", reopen_arg];
    let mut page = JsClient::spawn("peers_js_receive.mjs", &args);
    let accepted = page.expect_event("accepted", STEP).await;
    assert_eq!(accepted["staging"], true, "the page stages in the origin private file system: {accepted}");
    let closed = page.expect_event("closed", Duration::from_secs(120)).await;
    let closed_at = closed["after"].as_u64().expect("after");
    assert!((CLOSE_AT..LEN).contains(&closed_at), "closed mid-way: {closed}");

    if wait_for_return {
        sender.waiting_for_return(STEP).await;
    }
    std::fs::write(&reopen, b"").expect("the go-ahead");
    let resumed = page.expect_event("resumed", STEP).await;
    let kept = resumed["bytes"].as_u64().expect("bytes");
    assert!((CLOSE_AT..LEN).contains(&kept), "the page kept what it had verified: {resumed}");
    assert_eq!(kept % (8 << 20), 0, "whole 8 MiB segments (SEGMENT_BYTES) are kept: {resumed}");
    let shown = resumed["status_shown"].as_str().expect("status");
    assert!(
        shown.contains(&format!("resuming: {}.0 MiB already here", kept >> 20)),
        "the page says it resumes: {shown}"
    );
    let done = page.expect_event("done", Duration::from_secs(180)).await;
    assert_eq!(done["resumed"], kept, "{done}");
    assert_eq!(done["bytes"], LEN - kept, "only the rest came: {done}");
    assert_eq!(done["files"][0]["path"], "resumed.bin", "{done}");
    assert_eq!(done["files"][0]["size"], LEN, "{done}");
    assert_eq!(done["files"][0]["blake3"], expected.as_str(), "the file the page saved is the file sent");
    assert_eq!(done["staging_left"], serde_json::json!([]), "the staging is deleted once saved: {done}");
    eprintln!("the page closed after {closed_at} bytes resumed at {kept} of {LEN} and received {}", done["bytes"]);
    let (status, stderr) = page.wait(STEP).await;
    assert!(status.success(), "page driver failed: {stderr}");
    let (ok, events) = tokio::time::timeout(STEP, sender.finish()).await.expect("the sender ends");
    assert!(ok, "the sender reports success: {events:?}");
    let last = events.iter().rev().find(|e| e["event"] == "status").unwrap_or_else(|| panic!("a status: {events:?}"));
    assert_eq!(last["bytes_resumed"].as_u64(), Some(kept), "the sender skipped the bytes the page had: {last}");
    server.shutdown().await;
}

/// A transfer larger than the origin's storage quota (set to 16 MiB through DevTools):
/// the page fails `NoSpace` ("not enough room in the browser's storage") and the sender
/// is told why. Chromium's `navigator.storage.estimate()` does not show the lowered
/// quota (it says 10 GB), so the refusal comes from the first write the quota refuses,
/// not from the check at the offer (`roomNeeded`, tested in Node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_storage_cannot_hold_the_transfer_fails_with_no_space() {
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let src = tempfile::tempdir().expect("temp dir");
    let file = src.path().join("too-big.bin");
    std::fs::write(&file, noise(32 << 20, 17)).expect("file");
    let sender = PeersSend::start(&url, &["--paths", "relay", "--rejoin-wait", "0"], &file);
    let quota = (16u64 << 20).to_string();
    let mut page = JsClient::spawn("peers_js_receive.mjs", &[&url, &sender.code(), "--quota", &quota]);
    let failed = page.expect_event("failed", STEP).await;
    assert_eq!((failed["kind"].as_str(), failed["code"].as_str()), (Some("Transfer"), Some("NoSpace")), "{failed}");
    assert!(failed["message"].as_str().is_some_and(|m| m.contains("not enough room")), "{failed}");
    let (status, _) = page.wait(STEP).await;
    assert!(!status.success(), "the page's driver reports the transfer did not happen");
    let (ok, events) = tokio::time::timeout(STEP, sender.finish()).await.expect("the sender ends");
    assert!(!ok, "the sender does not report success: {events:?}");
    let text = serde_json::to_string(&events).expect("json");
    eprintln!("the sender on a page without room: {text}");
    assert!(text.contains("not enough room"), "the sender is told why: {text}");
    server.shutdown().await;
}
