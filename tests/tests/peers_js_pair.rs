//! peers-js pairs by code with the real `peers pair` / `peers join` (`docs/protocol.md`
//! §9.6): the Node driver `peers-js/dist/examples/pair-by-code.js` (long-term keys in a
//! key file) and the `peers` binary with a data directory (no daemon: it writes
//! `trusted.json`) meet through the real signaling server on loopback. Each side gets
//! the other's long-term device and the groups, in both roles; a wrong code pairs
//! nothing and both sides are told.
//! Needs the `peers` binary built beside this test (`cargo build -p peers-device
//! --all-features --bin peers`), Node.js with `npm ci` in `tests/` and `peers-js/`, and
//! `npx tsc -p peers-js`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use peers_device::daemon::DataDir;
use peers_tests::JsClient;
use peers_tests::peers_js::driver;
use peers_tests::webrtc::signaling_server;

const STEP: Duration = Duration::from_secs(60);

fn peers(data: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(peers_tests::nat::workspace_binary("peers"));
    command
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("PEERS_SIGNALING_URL")
        .env_remove("PEERS_ADVERTISE")
        .env_remove("PEERS_DATA_DIR")
        .stdin(Stdio::null());
    command
}

/// A fresh data directory of user "rust-user"; its device id.
fn init(data: &Path) -> String {
    let out = peers(data, &["init", "--user", "rust-user"]).output().expect("peers init");
    assert!(out.status.success(), "peers init: {}", String::from_utf8_lossy(&out.stderr));
    DataDir::new(data).keys().expect("keys").device_id().to_string()
}

fn trusted(data: &Path) -> Vec<String> {
    let trusted = DataDir::new(data).trusted().expect("trusted");
    trusted.iter().map(|t| t.info().expect("info").device_id.to_string()).collect()
}

/// The JSON lines of a finished `peers` command, and whether it succeeded.
async fn json_lines(child: std::process::Child) -> (bool, Vec<serde_json::Value>) {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("output");
    let lines = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    (out.status.success(), lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_js_pairs_with_peers_join_and_joins_peers_pair() {
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, key) = (dir.path().join("rust"), dir.path().join("js.key"));
    let rust_id = init(&data);
    let key = key.to_str().expect("utf-8");

    // peers-js creates the code, the Rust side joins.
    let mut js = JsClient::spawn(&driver("pair-by-code.js"), &["pair", &url, key, "notes", "photos"]);
    let js_id = js.expect_event("keys", STEP).await["device"].as_str().expect("device").to_owned();
    let code = js.expect_event("code", STEP).await["code"].as_str().expect("code").to_owned();
    let join =
        peers(&data, &["join", &code, "--json", "--signaling", &url]).stdout(Stdio::piped()).spawn().expect("join");
    let paired = js.expect_event("paired", STEP).await;
    assert_eq!(
        (paired["device"].as_str(), paired["user"].as_str()),
        (Some(rust_id.as_str()), Some("rust-user")),
        "{paired}"
    );
    assert_eq!(paired["groups"], serde_json::json!(["notes", "photos"]));
    let (ok, events) = tokio::time::timeout(STEP, json_lines(join)).await.expect("join ends");
    assert!(ok, "peers join succeeds: {events:?}");
    let last = events.last().expect("an event");
    assert_eq!((last["event"].as_str(), last["device"].as_str()), (Some("paired"), Some(js_id.as_str())), "{last}");
    assert_eq!(last["groups"], serde_json::json!(["notes", "photos"]));
    assert_eq!(trusted(&data), vec![js_id.clone()], "the Rust side trusts the JS device");
    let (status, stderr) = js.wait(STEP).await;
    assert!(status.success(), "the JS side failed: {stderr}");

    // The Rust side creates the code, peers-js joins (the same JS keys, read back from the file).
    let mut pair = peers(&data, &["pair", "--group", "music", "--json", "--signaling", &url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("pair");
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(pair.stdout.as_mut().expect("stdout")), &mut first)
        .expect("the code line");
    let code_event: serde_json::Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{first:?}: {e}"));
    let code = code_event["code"].as_str().expect("code").to_owned();
    let mut js = JsClient::spawn(&driver("pair-by-code.js"), &["join", &url, key, &code]);
    assert_eq!(js.expect_event("keys", STEP).await["device"].as_str(), Some(js_id.as_str()), "the same JS device");
    let paired = js.expect_event("paired", STEP).await;
    assert_eq!(paired["device"].as_str(), Some(rust_id.as_str()), "{paired}");
    assert_eq!(paired["groups"], serde_json::json!(["music"]));
    let (ok, events) = tokio::time::timeout(STEP, json_lines(pair)).await.expect("pair ends");
    assert!(ok, "peers pair succeeds: {events:?}");
    let last = events.last().expect("an event");
    assert_eq!((last["event"].as_str(), last["device"].as_str()), (Some("paired"), Some(js_id.as_str())), "{last}");
    let (status, stderr) = js.wait(STEP).await;
    assert!(status.success(), "the JS side failed: {stderr}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_pairs_nothing_on_either_side() {
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, key) = (dir.path().join("rust"), dir.path().join("js.key"));
    init(&data);

    let mut js = JsClient::spawn(&driver("pair-by-code.js"), &["pair", &url, key.to_str().expect("utf-8"), "notes"]);
    let code = js.expect_event("code", STEP).await["code"].as_str().expect("code").to_owned();
    let (rest, last) = code.rsplit_once('-').expect("number-words");
    let wrong = format!("{rest}-{}", if last == "maple" { "orbit" } else { "maple" });
    let join =
        peers(&data, &["join", &wrong, "--json", "--signaling", &url]).stdout(Stdio::piped()).spawn().expect("join");
    let failed = js.expect_event("failed", STEP).await;
    assert_eq!((failed["kind"].as_str(), failed["code"].as_str()), (Some("Transfer"), Some("WrongCode")), "{failed}");
    let (ok, events) = tokio::time::timeout(STEP, json_lines(join)).await.expect("join ends");
    assert!(!ok, "peers join fails: {events:?}");
    let text = serde_json::to_string(&events).expect("json");
    assert!(text.contains("did not match"), "the Rust side says the code did not match: {text}");
    assert!(trusted(&data).is_empty(), "nothing trusted");
    server.shutdown().await;
}
