//! peers-js over WebRTC against the Rust transport, as real processes: the Node
//! driver (`peers-js/dist/examples/webrtc-device.js`, built by `npx tsc -p peers-js`)
//! registers with the real signaling server on loopback and meets a Rust
//! `WebRtcEndpoint` through it with node-datachannel's `RTCPeerConnection` (offer,
//! answer and trickled candidates as `docs/transport-webrtc.md` gives them): the JS
//! side dials in one test and accepts the Rust side's dial in the other. Both sides
//! derive the same DTLS fingerprint binding from the two SDPs (mirrored), the
//! handshake binds it, and both skip the inner AEAD; RPCs go both ways, a 16 MiB
//! stream (JS to Rust, then Rust to JS) arrives with the BLAKE3 both sides computed,
//! and the Rust side's close reason reaches the JS side.

use std::sync::Arc;
use std::time::Duration;

use peers_sdk::{
    CloseCode, CloseReason, Connection, ConnectionConfig, DeviceId, DeviceInfo, DeviceKeys, Socket, TrustLevel,
    TrustStore,
};
use peers_tests::JsClient;
use peers_tests::peers_js::{Upload, driver, expose_echo_and_upload, hex, pattern_blake3, pattern_mib};
use peers_tests::webrtc::{Device, signaling_server};
use peers_transport_webrtc::WebRtcConfig;
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(30);
const STREAM_MIB: usize = 16;

/// The Rust side's connection: trusts only `js`, answers "rust.echo", hashes "upload".
fn rust_config(keys: Arc<DeviceKeys>, js: DeviceId) -> (ConnectionConfig, mpsc::UnboundedReceiver<Upload>) {
    let trust = TrustStore::new(TrustLevel::Unknown);
    trust.set(js, TrustLevel::Trusted);
    let (uploads_tx, uploads) = mpsc::unbounded_channel();
    let config = ConnectionConfig::new(keys, trust)
        .with_setup(move |connection| expose_echo_and_upload(connection, &uploads_tx));
    (config, uploads)
}

/// Both directions: the JS side dials (`js_accepts` false) or accepts the Rust side's dial.
async fn meet(js_accepts: bool) {
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    // All interfaces (the default): the same configuration a browser peer needs.
    let rust = Device::register(&url, "rust", WebRtcConfig::default()).await;
    let rust_id = rust.id().to_string();
    let stream_mib = STREAM_MIB.to_string();
    let mut args = vec![url.as_str(), rust_id.as_str(), "--stream-mib", stream_mib.as_str()];
    if js_accepts {
        args.push("--accept");
    }
    let mut js = JsClient::spawn(&driver("webrtc-device.js"), &args);
    let identity = js.expect_event("identity", STEP).await;
    let js_info = DeviceInfo::from_share_code(identity["share_code"].as_str().expect("share code"))
        .expect("the JS share code parses");
    assert_eq!(identity["device_id"], js_info.device_id.to_string());

    let socket = if js_accepts {
        tokio::time::timeout(STEP, rust.endpoint.connect(js_info.device_id))
            .await
            .expect("the JS device answers in time")
            .expect("the Rust side dials the JS device")
    } else {
        tokio::time::timeout(STEP, rust.endpoint.accept())
            .await
            .expect("the JS device dials over WebRTC")
            .expect("accept")
    };
    assert_eq!(socket.remote_device(), js_info.device_id, "the server-authenticated peer");
    let binding = socket.info().security.channel_binding.clone().expect("a WebRTC socket reports a binding");
    assert_eq!(binding.kind, peers_transport_webrtc::BINDING_KIND);
    let js_socket = js.expect_event("socket", STEP).await;
    assert_eq!(js_socket["binding"]["kind"], peers_transport_webrtc::BINDING_KIND, "{js_socket}");
    assert_eq!(js_socket["binding"]["local"], hex(&binding.remote), "JS's own fingerprint is Rust's remote one");
    assert_eq!(js_socket["binding"]["remote"], hex(&binding.local), "JS's remote fingerprint is Rust's own one");

    let (config, mut uploads) = rust_config(rust.keys.clone(), js_info.device_id);
    let handshake = async {
        if js_accepts {
            Connection::connect(Box::new(socket), config, Some(js_info.device_id)).await
        } else {
            Connection::accept(Box::new(socket), config).await
        }
    };
    let connection = tokio::time::timeout(STEP, handshake)
        .await
        .expect("handshake in time")
        .expect("the JS device completes the handshake with the binding");
    assert_eq!(connection.remote().device_id, js_info.device_id);
    assert!(!connection.is_encrypted(), "both sides bound DTLS and asked to skip the AEAD");
    let connected = js.expect_event("connected", STEP).await;
    assert_eq!(connected["encrypted"], false, "{connected}");
    assert_eq!(connected["peer"], rust_id, "{connected}");

    let echo = js.expect_event("echo", STEP).await;
    assert_eq!(echo["reply"]["text"], "HELLO OVER WEBRTC", "{echo}");
    assert_eq!(echo["reply"]["n"], 42, "{echo}");
    let reversed: String = connection.emit("js.reverse", "over webrtc").await.expect("the JS handler answers");
    assert_eq!(reversed, "ctrbew revo");

    let expected = pattern_blake3(STREAM_MIB);
    let size = (STREAM_MIB as u64) << 20;
    if js_accepts {
        let mut writer = connection.open_stream("download", "from rust").await.expect("the JS side accepts the stream");
        for i in 0..STREAM_MIB {
            writer.write(&pattern_mib(i)).await.expect("write within the JS side's credit");
        }
        writer.finish().await.expect("the JS handler reports success");
        let downloaded = js.expect_event("downloaded", STEP).await;
        assert_eq!(downloaded["meta"], "from rust", "{downloaded}");
        assert_eq!(downloaded["bytes"], size, "{downloaded}");
        assert_eq!(downloaded["blake3"], expected, "the JS side received the Rust side's pattern");
    } else {
        let streamed = js.expect_event("streamed", Duration::from_secs(120)).await;
        let upload = tokio::time::timeout(STEP, uploads.recv())
            .await
            .expect("upload in time")
            .expect("the upload handler finished");
        assert_eq!((upload.declared, upload.received), (size, size), "every byte arrived");
        assert_eq!(upload.blake3, expected, "the Rust side received the driver's pattern");
        assert_eq!(streamed["blake3"], expected, "the JS side hashed what it sent");
        eprintln!("peers-js over WebRTC: {streamed}");
    }

    connection.close(CloseReason::new(CloseCode::Normal, "rust done")).await;
    let closed = js.expect_event("closed", STEP).await;
    assert_eq!(closed["reason"]["code"], "Normal", "{closed}");
    assert_eq!(closed["reason"]["message"], "rust done", "{closed}");
    assert_eq!(closed["reason"]["by"], "Remote", "{closed}");
    assert_eq!(closed["reversed"], 1, "{closed}");
    let (status, stderr) = js.wait(STEP).await;
    assert!(status.success(), "driver failed: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_js_device_dials_a_rust_endpoint_binds_dtls_and_talks() {
    meet(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_endpoint_dials_a_peers_js_device_binds_dtls_and_talks() {
    meet(true).await;
}
