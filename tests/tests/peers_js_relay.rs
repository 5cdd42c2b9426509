//! peers-js over the signaling server's frame relay (`docs/signaling.md` §7), as real
//! processes: the Node driver `peers-js/dist/examples/relay-device.js` and a Rust
//! `SignalingClient` register with the real server on loopback and both open a relay
//! with each other; the JS side's `RelaySocket` and the Rust `RelaySocket` carry the
//! handshake (the relay has no security of its own, so both seal with the AEAD), RPCs
//! both ways, a 16 MiB stream from JS to Rust and a 3 MiB one back, each with the
//! BLAKE3 both sides computed, and the Rust side's close reason.

use std::sync::Arc;
use std::time::Duration;

use peers_sdk::{
    CloseCode, CloseReason, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, Socket, TrustLevel, TrustStore,
};
use peers_signaling::{SignalingClient, SignalingClientOptions};
use peers_tests::JsClient;
use peers_tests::peers_js::{driver, expect_pattern_upload, expose_echo_and_upload, stream_pattern_to};
use peers_tests::signaling::{signaling_origin, signaling_server};
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(30);
const STREAM_MIB: usize = 16;
const DOWNLOAD_MIB: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_js_device_and_a_rust_device_talk_through_the_frame_relay() {
    let server = signaling_server().await;
    let url = signaling_origin(&server);
    let keys = Arc::new(DeviceKeys::generate("rust").unwrap());
    let rust = SignalingClient::connect(&url, &keys, SignalingClientOptions::default())
        .await
        .expect("the Rust device registers");
    let rust_id = keys.device_id().to_string();
    let mut js =
        JsClient::spawn(&driver("relay-device.js"), &[&url, &rust_id, "--stream-mib", &STREAM_MIB.to_string()]);
    let identity = js.expect_event("identity", STEP).await;
    let js_info = DeviceInfo::from_share_code(identity["share_code"].as_str().expect("share code"))
        .expect("the JS share code parses");

    let socket = rust.open_relay(&js_info.device_id, STEP).await.expect("the relay opens once both asked");
    let relay = js.expect_event("relay", STEP).await;
    assert_eq!(relay["confidential"], false, "the relay has no security of its own: {relay}");
    assert_eq!(relay["maxFrameSize"], socket.info().max_frame_size, "both ends take the server's frame size: {relay}");

    let trust = TrustStore::new(TrustLevel::Unknown);
    trust.set(js_info.device_id, TrustLevel::Trusted);
    let (uploads_tx, mut uploads) = mpsc::unbounded_channel();
    let config = ConnectionConfig::new(Arc::clone(&keys), trust)
        .with_setup(move |connection| expose_echo_and_upload(connection, &uploads_tx));
    let connection = tokio::time::timeout(STEP, Connection::accept(Box::new(socket), config))
        .await
        .expect("handshake in time")
        .expect("the JS device completes the handshake over the relay");
    assert_eq!(connection.remote().device_id, js_info.device_id);
    assert!(connection.is_encrypted(), "over the relay both sides seal every frame");
    let connected = js.expect_event("connected", STEP).await;
    assert_eq!(connected["peer"], rust_id, "{connected}");
    assert!(connected["cipher"].is_string(), "the JS side seals too: {connected}");

    let echo = js.expect_event("echo", STEP).await;
    assert_eq!(echo["reply"]["text"], "HELLO OVER THE RELAY", "{echo}");
    assert_eq!(echo["reply"]["n"], 42, "{echo}");
    let reversed: String = connection.emit("js.reverse", "relayed").await.expect("the JS handler answers");
    assert_eq!(reversed, "deyaler");

    let streamed = expect_pattern_upload(&mut js, &mut uploads, STREAM_MIB).await;
    eprintln!("peers-js over the relay: {streamed}");

    // Rust to JS: the JS relay socket grants credit as its reader consumes.
    stream_pattern_to(&mut js, &connection, DOWNLOAD_MIB, "relayed").await;

    connection.close(CloseReason::new(CloseCode::Normal, "rust done")).await;
    let closed = js.expect_event("closed", STEP).await;
    assert_eq!(closed["reason"]["code"], "Normal", "{closed}");
    assert_eq!(closed["reason"]["message"], "rust done", "{closed}");
    assert_eq!(closed["reason"]["by"], "Remote", "{closed}");
    assert_eq!(closed["reversed"], 1, "{closed}");
    let (status, stderr) = js.wait(STEP).await;
    assert!(status.success(), "driver failed: {stderr}");
    rust.close().await;
}
