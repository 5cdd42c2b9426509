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
//! Needs the `peers` binary built beside this test (`cargo build -p peers-device --bin
//! peers`), Node.js with `npm ci` in `tests/` and `peers-js/`, `npx tsc -p peers-js`, and
//! a Chromium binary (`$CHROMIUM_PATH`, or `chromium` on `$PATH`).

use std::time::Duration;

use peers_tests::JsClient;
use peers_tests::peers_js::{PeersSend, noise};
use peers_tests::webrtc::signaling_server;

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
