//! peers-js in a browser against the Rust transport: a headless Chromium page
//! (`tests/js/peers_js_chromium.mjs` serves it on loopback, bundled by esbuild from
//! `peers-js/dist/examples/browser-device.js`) makes its keys and keeps them in
//! IndexedDB, registers with the real signaling server itself (socket.io-client in the
//! page), dials a Rust `WebRtcEndpoint` with the browser's own `RTCPeerConnection`, and
//! completes the handshake bound to the DTLS fingerprints (the AEAD skipped on both
//! sides); RPCs go both ways (a compressible answer arrives Brotli-compressed and the
//! page decodes it with brotli-wasm; the page's own stream pieces go out compressed),
//! a 16 MiB stream from the page and an 8 MiB one back arrive with the BLAKE3 both
//! sides computed, and the Rust side's close reason reaches the page; a second visit of
//! the page registers with the same device id, its keys read back from IndexedDB, and
//! accepts the Rust side's dial (the page's `WebRtcAcceptor`), the handshake proving
//! the keys. A page also sends a file by code to the real `peers receive`
//! (`sendByCode` over `blobSources`, on the relay), and a page dials a Rust socket.io
//! listener directly (a device's local socket), with the AEAD on.
//! Needs Node.js with `npm ci` in `tests/` and `peers-js/`, `npx tsc -p peers-js`, and
//! a Chromium binary (`$CHROMIUM_PATH`, or `chromium` on `$PATH`).

use std::sync::Arc;
use std::time::Duration;

use peers_sdk::{
    CloseCode, CloseReason, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, Socket, TrustLevel, TrustStore,
};
use peers_tests::JsClient;
use peers_tests::peers_js::{
    PeersReceive, compressible_text, expect_pattern_upload, expose_echo_and_upload, expose_text, hex, pattern_blake3,
    stream_pattern_to,
};
use peers_tests::webrtc::{Device, signaling_server};
use peers_transport_socketio::{ServerOptions, SocketIoServer};
use peers_transport_webrtc::WebRtcConfig;
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(40);
const STREAM_MIB: usize = 16;
const DOWNLOAD_MIB: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_device_registers_itself_talks_to_a_rust_endpoint_both_ways_and_keeps_its_id() {
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let rust = Device::register(&url, "rust", WebRtcConfig::default()).await;
    let rust_id = rust.id().to_string();
    let mut browser = JsClient::spawn("peers_js_chromium.mjs", &[&url, &rust_id, &STREAM_MIB.to_string()]);

    let identity = browser.expect_event("identity", Duration::from_secs(60)).await;
    assert_eq!(identity["visit"], 1, "{identity}");
    assert_eq!(identity["from_indexeddb"], false, "a fresh profile has no keys yet: {identity}");
    let page = DeviceInfo::from_share_code(identity["share_code"].as_str().expect("share code"))
        .expect("the page's share code parses");
    assert_eq!(identity["device_id"], page.device_id.to_string());
    eprintln!("Chromium's DecompressionStream takes brotli: {}", identity["decompression_stream_brotli"]);

    let socket = tokio::time::timeout(STEP, rust.endpoint.accept())
        .await
        .expect("the page dials over WebRTC in time")
        .expect("accept");
    assert_eq!(socket.remote_device(), page.device_id, "the peer the server authenticated is the page");
    let binding = socket.info().security.channel_binding.clone().expect("a WebRTC socket reports a binding");
    let page_socket = browser.expect_event("socket", STEP).await;
    assert_eq!(page_socket["binding"]["kind"], peers_transport_webrtc::BINDING_KIND, "{page_socket}");
    assert_eq!(page_socket["binding"]["local"], hex(&binding.remote), "the page's fingerprint is Rust's remote one");
    assert_eq!(page_socket["binding"]["remote"], hex(&binding.local), "the page's remote fingerprint is Rust's own");

    let trust = TrustStore::new(TrustLevel::Unknown);
    trust.set(page.device_id, TrustLevel::Trusted);
    let (uploads_tx, mut uploads) = mpsc::unbounded_channel();
    let config = ConnectionConfig::new(Arc::clone(&rust.keys), trust)
        .with_setup(move |connection| expose_echo_and_upload(connection, &uploads_tx))
        .with_setup(expose_text);
    let connection = tokio::time::timeout(STEP, Connection::accept(Box::new(socket), config))
        .await
        .expect("handshake in time")
        .expect("the page completes the handshake with the binding");
    assert_eq!(connection.remote().device_id, page.device_id);
    assert!(!connection.is_encrypted(), "both sides bound DTLS and asked to skip the AEAD");
    let connected = browser.expect_event("connected", STEP).await;
    assert_eq!(connected["encrypted"], false, "{connected}");
    assert_eq!(connected["peer"], rust_id, "{connected}");

    let echo = browser.expect_event("echo", STEP).await;
    assert_eq!(echo["reply"]["text"], "HELLO FROM A BROWSER", "{echo}");
    assert_eq!(echo["reply"]["n"], 42, "{echo}");
    // A compressible answer arrives Brotli-compressed: the page decodes it with brotli-wasm.
    let text = browser.expect_event("text", STEP).await;
    assert_eq!(text["length"], 300_000, "{text}");
    assert_eq!(text["blake3"], blake3::hash(compressible_text(300_000).as_bytes()).to_hex().as_str(), "{text}");
    let reversed: String = connection.emit("js.reverse", "in a browser").await.expect("the page's handler answers");
    assert_eq!(reversed, "resworb a ni");

    let streamed = expect_pattern_upload(&mut browser, &mut uploads, STREAM_MIB).await;
    eprintln!("peers-js in Chromium over WebRTC: {streamed}");

    // Rust to the page: compressible pieces, decoded with brotli-wasm under the page's credit.
    stream_pattern_to(&mut browser, &connection, DOWNLOAD_MIB, "to the page").await;

    connection.close(CloseReason::new(CloseCode::Normal, "rust done")).await;
    let closed = browser.expect_event("closed", STEP).await;
    assert_eq!(closed["reason"]["code"], "Normal", "{closed}");
    assert_eq!(closed["reason"]["message"], "rust done", "{closed}");
    assert_eq!(closed["reason"]["by"], "Remote", "{closed}");
    assert_eq!(closed["reversed"], 1, "{closed}");

    // The second visit: the same keys from IndexedDB, proven by the handshake when the
    // Rust side dials the device id it learned in the first visit.
    let again = browser.expect_event("identity", STEP).await;
    assert_eq!(again["visit"], 2, "{again}");
    assert_eq!(again["from_indexeddb"], true, "the second visit reads its keys back: {again}");
    assert_eq!(again["device_id"], identity["device_id"], "the same device across visits");
    assert_eq!(again["share_code"], identity["share_code"], "the same keys across visits");
    let socket = tokio::time::timeout(STEP, rust.endpoint.connect(page.device_id))
        .await
        .expect("the page answers in time")
        .expect("the Rust side dials the page's WebRtcAcceptor");
    let trust = TrustStore::new(TrustLevel::Unknown);
    trust.set(page.device_id, TrustLevel::Trusted);
    let config = ConnectionConfig::new(Arc::clone(&rust.keys), trust);
    let connection = tokio::time::timeout(STEP, Connection::connect(Box::new(socket), config, Some(page.device_id)))
        .await
        .expect("handshake in time")
        .expect("the page proves the same device id with its stored keys");
    let accepted = browser.expect_event("connected", STEP).await;
    assert_eq!(accepted["visit"], 2, "{accepted}");
    let reversed: String = connection.emit("js.reverse", "again").await.expect("the page's handler answers");
    assert_eq!(reversed, "niaga");
    connection.close(CloseReason::new(CloseCode::Normal, "bye")).await;
    let closed = browser.expect_event("closed", STEP).await;
    assert_eq!((closed["visit"].as_u64(), closed["reason"]["message"].as_str()), (Some(2), Some("bye")), "{closed}");
    browser.expect_event("finished", STEP).await;
    let (status, stderr) = browser.wait(STEP).await;
    assert!(status.success(), "driver failed: {stderr}");
}

/// A page sends 32 MiB by code, as a file a person picked: the real `peers receive`
/// (`--paths relay`) takes it through the real signaling server, every chunk checked,
/// and the file it writes has the BLAKE3 of what the page offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_sends_a_file_by_code_to_peers_receive() {
    const MIB: usize = 32;
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let out = tempfile::tempdir().expect("temp dir");
    let mut browser = JsClient::spawn("peers_js_chromium.mjs", &[&url, "send", &MIB.to_string()]);
    let code = browser.expect_event("code", Duration::from_secs(90)).await;
    let code = code["code"].as_str().unwrap_or_else(|| panic!("{code}")).to_owned();
    let receiver = PeersReceive::start(&url, &code, out.path(), &["--paths", "relay"]);
    let accepted = browser.expect_event("accepted", Duration::from_secs(60)).await;
    assert_eq!(accepted["resumed"], 0, "{accepted}");
    let done = browser.expect_event("done", Duration::from_secs(120)).await;
    assert_eq!(done["bytes"].as_u64(), Some((MIB << 20) as u64), "{done}");
    assert_eq!(done["blake3"], pattern_blake3(MIB).as_str(), "the page offered the pattern: {done}");
    let (ok, events) =
        tokio::time::timeout(Duration::from_secs(60), receiver.finish()).await.expect("the receiver ends");
    assert!(ok, "the receiver reports success: {events:?}");
    let received = std::fs::read(out.path().join("pattern.bin")).expect("the received file");
    assert_eq!(blake3::hash(&received).to_hex().as_str(), pattern_blake3(MIB), "the file arrived byte for byte");
    browser.expect_event("finished", STEP).await;
    server.shutdown().await;
}

/// A page dials a Rust device's socket.io listener itself, as it would a device's local
/// socket: no signaling server, the browser's own WebSocket (socket.io-client in the
/// page), the handshake with the AEAD on (nothing to bind), RPCs both ways, a 16 MiB
/// stream from the page and an 8 MiB one back with their BLAKE3 checked, and the Rust
/// side's close reason reaching the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_dials_a_rust_socketio_listener_and_talks_both_ways() {
    let server = SocketIoServer::bind(ServerOptions::default()).await.expect("a socket.io listener on loopback");
    let origin = format!("http://{}", server.local_addr());
    let keys = Arc::new(DeviceKeys::generate("rust-user").expect("keys"));
    let rust_id = keys.device_id().to_string();
    let mut browser =
        JsClient::spawn("peers_js_chromium.mjs", &[&origin, "socketio", &rust_id, &STREAM_MIB.to_string()]);
    let identity = browser.expect_event("identity", Duration::from_secs(60)).await;
    let page = DeviceInfo::from_share_code(identity["share_code"].as_str().expect("share code"))
        .expect("the page's share code parses");

    let trust = TrustStore::new(TrustLevel::Unknown);
    trust.set(page.device_id, TrustLevel::Trusted);
    let (uploads_tx, mut uploads) = mpsc::unbounded_channel();
    let config = ConnectionConfig::new(Arc::clone(&keys), trust)
        .with_setup(move |connection| expose_echo_and_upload(connection, &uploads_tx))
        .with_setup(expose_text);
    let socket = tokio::time::timeout(STEP, server.accept()).await.expect("the page dials").expect("listener up");
    let socket_event = browser.expect_event("socket", STEP).await;
    assert!(socket_event["binding"].is_null(), "a WebSocket has no DTLS fingerprint to bind: {socket_event}");
    let connection = tokio::time::timeout(STEP, Connection::accept(Box::new(socket), config))
        .await
        .expect("handshake in time")
        .expect("the page completes the handshake");
    assert_eq!(connection.remote().device_id, page.device_id);
    assert!(connection.is_encrypted(), "no channel binding over socket.io: both sides seal");
    let connected = browser.expect_event("connected", STEP).await;
    assert_eq!((connected["encrypted"].as_bool(), connected["peer"].as_str()), (Some(true), Some(rust_id.as_str())));

    let echo = browser.expect_event("echo", STEP).await;
    assert_eq!(echo["reply"]["text"], "HELLO FROM A BROWSER", "{echo}");
    let text = browser.expect_event("text", STEP).await;
    assert_eq!(text["blake3"], blake3::hash(compressible_text(300_000).as_bytes()).to_hex().as_str(), "{text}");
    let reversed: String = connection.emit("js.reverse", "over a websocket").await.expect("the page's handler answers");
    assert_eq!(reversed, "tekcosbew a revo");

    let streamed = expect_pattern_upload(&mut browser, &mut uploads, STREAM_MIB).await;
    eprintln!("peers-js in Chromium over socket.io: {streamed}");
    stream_pattern_to(&mut browser, &connection, DOWNLOAD_MIB, "to the page").await;

    connection.close(CloseReason::new(CloseCode::Normal, "rust done")).await;
    let closed = browser.expect_event("closed", STEP).await;
    assert_eq!(
        (closed["reason"]["message"].as_str(), closed["reason"]["by"].as_str()),
        (Some("rust done"), Some("Remote"))
    );
    browser.expect_event("finished", STEP).await;
    let (status, stderr) = browser.wait(STEP).await;
    assert!(status.success(), "driver failed: {stderr}");
}
