//! peers-js in a browser against a real `peers run` daemon (a child process of this
//! test, `--signaling` to the real server): a headless Chromium page
//! (`tests/js/peers_js_chromium.mjs` in its `daemon` form, the page
//! `peers-js/examples/browser-device.ts` with `daemon-exercise.ts`) registers with the
//! server itself; the daemon is told to trust the page's share code in a group
//! (`peers trust CODE --group G`, through its control socket) and the page trusts the
//! daemon's; the daemon dials the page at once over WebRTC (the page accepts with its
//! `WebRtcAcceptor`), and they call RPCs both ways: the page calls the daemon's
//! `peers:ping` and reads the group's changes with `listChanges_G` (the value the test
//! put through the daemon), the daemon calls the page's `peers:groupReady` for the
//! group and its liveness `peers:ping`; the page's close reason reaches the daemon's
//! side and the daemon keeps running.
//! Needs the `peers` binary built beside this test (`cargo build -p peers-device --bin
//! peers`), Node.js with `npm ci` in `tests/` and `peers-js/`, `npx tsc -p peers-js`, and
//! a Chromium binary (`$CHROMIUM_PATH`, or `chromium` on `$PATH`).

use std::time::Duration;

use peers_sdk::DeviceInfo;
use peers_tests::JsClient;
use peers_tests::daemon::{expect_calls_both_ways, init, peers, run};
use peers_tests::webrtc::signaling_server;

const STEP: Duration = Duration::from_secs(40);
const GROUP: &str = "notes";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_device_and_a_peers_daemon_trust_each_other_connect_over_webrtc_and_call_both_ways() {
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("daemon");
    let code = init(&data, "alice").await;
    let daemon_id = DeviceInfo::from_share_code(&code).expect("the daemon's share code parses").device_id;
    let mut daemon = run(&data, &["--group", GROUP, "--signaling", &url], "signaling", STEP).await;
    peers(&data, &["put", GROUP, "greeting", "from the daemon"]).await;

    let mut browser = JsClient::spawn("peers_js_chromium.mjs", &[&url, "daemon", &code, GROUP]);
    let identity = browser.expect_event("identity", Duration::from_secs(60)).await;
    let page_code = identity["share_code"].as_str().expect("the page's share code");
    let page = DeviceInfo::from_share_code(page_code).expect("the page's share code parses");
    let trusted = peers(&data, &["trust", page_code, "--group", GROUP]).await;
    assert!(trusted.contains(&page.device_id.to_string()[..8]), "the daemon trusts the page: {trusted}");

    // The daemon dials the page it now trusts; the page accepts from the daemon only.
    let socket = browser.expect_event("socket", STEP).await;
    assert_eq!(socket["binding"]["kind"], peers_transport_webrtc::BINDING_KIND, "{socket}");
    let connected = browser.expect_event("connected", STEP).await;
    assert_eq!(connected["peer"], daemon_id.to_string(), "{connected}");

    // Page -> daemon: the control ping and the group's changes; daemon -> page: its
    // groupReady for the group and a liveness ping.
    expect_calls_both_ways(&mut browser, &daemon_id, GROUP, STEP).await;

    let closed = browser.expect_event("closed", STEP).await;
    assert_eq!(closed["reason"]["message"], "page done", "{closed}");
    assert_eq!(closed["reason"]["by"], "Local", "{closed}");
    browser.expect_event("finished", STEP).await;
    let (status, stderr) = browser.wait(STEP).await;
    assert!(status.success(), "driver failed: {stderr}");
    assert!(daemon.try_wait().expect("daemon state").is_none(), "the daemon keeps running after the page left");
    let _ = daemon.kill().await;
    server.shutdown().await;
}
