//! WebRTC interop with implementations nobody here wrote, through our signaling
//! server: a node-datachannel peer and a headless Chromium page each register like
//! any device (ed25519 challenge), dial a Rust device, and exchange frames both
//! ways: the Rust side greets, echoes every frame, and sees the JavaScript side's
//! close message with its reason.
//!
//! Needs Node.js with `npm ci` in `tests/`, and for the Chromium test a Chromium
//! binary (`$CHROMIUM_PATH`, or `chromium` on `$PATH`).

use std::time::Duration;

use bytes::Bytes;
use peers_sdk::socket::ClosedBy;
use peers_sdk::{CloseCode, Error as SdkError, Socket};
use peers_tests::JsClient;
use peers_tests::webrtc::{Device, pattern, signaling_server};
use peers_transport_webrtc::WebRtcConfig;

const FRAMES: usize = 40;
const DRIVER_TIME: Duration = Duration::from_secs(90);

async fn interop(script: &str) {
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    // All interfaces: browsers do not offer loopback candidates.
    let rust = Device::register(&url, "rust", WebRtcConfig::default()).await;
    let rust_id = rust.id().to_string();
    let frames = FRAMES.to_string();
    let mut js = JsClient::spawn(script, &[url.as_str(), rust_id.as_str(), frames.as_str()]);
    let registered = js.expect_event("registered", DRIVER_TIME).await;
    let js_id = registered["device_id"].as_str().expect("js device id").to_string();

    let socket = tokio::time::timeout(DRIVER_TIME, rust.endpoint.accept())
        .await
        .expect("the javascript peer never connected")
        .expect("accept");
    assert_eq!(socket.remote_device().to_string(), js_id);
    let binding = socket.info().security.channel_binding.clone().expect("binding");
    assert_eq!((binding.local.len(), binding.remote.len()), (32, 32));

    socket.send(Bytes::from(pattern(1000, 50_000))).await.expect("greeting");
    let mut echoed = 0;
    let reason = loop {
        match tokio::time::timeout(DRIVER_TIME, socket.recv()).await.expect("javascript peer went quiet") {
            Ok(frame) => {
                socket.send(frame).await.expect("echo");
                echoed += 1;
            }
            Err(SdkError::Closed { reason }) => break reason,
            Err(other) => panic!("recv failed: {other}"),
        }
    };
    assert_eq!(echoed, FRAMES, "frames received from the javascript peer");
    assert_eq!((reason.code, reason.message.as_str(), reason.by), (CloseCode::Normal, "js done", ClosedBy::Remote));

    let verified = js.expect_event("verified", DRIVER_TIME).await;
    assert_eq!(verified["frames"], FRAMES, "{verified}");
    js.expect_event("finished", DRIVER_TIME).await;
    let (status, stderr) = js.wait(DRIVER_TIME).await;
    assert!(status.success(), "{script} failed:\n{stderr}");
    eprintln!("{script}: {verified}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_datachannel_exchanges_frames_with_a_rust_device() {
    interop("webrtc_node_datachannel.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_exchanges_frames_with_a_rust_device() {
    interop("webrtc_chromium.mjs").await;
}
