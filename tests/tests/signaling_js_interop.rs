//! The signaling server against a JavaScript client (`socket.io-client` 4.x and
//! `@noble/ed25519` 3.x, driven by `tests/js/signaling_client.mjs`): the JS side
//! registers with a real signature over the documented message, watches a Rust
//! device, receives every kind of signal from it and echoes each back, and is
//! refused for a forged sender, an oversized SDP and an unknown kind.

use std::time::Duration;

use peers_sdk::{DeviceId, DeviceKeys};
use peers_signaling::{ClientEvent, Outcome, SignalKind, SignalingClient, SignalingClientOptions};
use peers_tests::JsClient;
use peers_tests::signaling::{SIGNALING_DRIVER, signaling_origin, signaling_server};
use serde_json::json;

const STEP: Duration = Duration::from_secs(10);

fn body(kind: SignalKind, n: usize) -> serde_json::Value {
    match kind {
        SignalKind::Offer | SignalKind::Answer => json!({"sdp": format!("v=0 rust {n}")}),
        SignalKind::IceCandidate => json!({"candidate": format!("candidate:{n} 1 udp 1 127.0.0.1 {n} typ host")}),
        _ => json!({"n": n}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_client_registers_and_exchanges_every_kind_with_a_rust_client() {
    let server = signaling_server().await;
    let rust_keys = DeviceKeys::generate("rust").unwrap();
    let rust =
        SignalingClient::connect(&server.url().unwrap(), &rust_keys, SignalingClientOptions::default()).await.unwrap();
    let mut rust_in = rust.incoming().unwrap();
    let mut rust_events = rust.events().unwrap();
    let rust_id = rust_keys.device_id().to_string();
    let mut js = JsClient::spawn(SIGNALING_DRIVER, &[&signaling_origin(&server), &rust_id]);

    let registered = js.expect_event("registered", STEP).await;
    let js_id: DeviceId = registered["device_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(registered["online"], json!([rust_id]), "the JS client sees the Rust device online");
    assert_eq!(rust.subscribe_presence(&[js_id]).await.unwrap(), vec![js_id], "the server registered the JS device");

    for (n, kind) in SignalKind::ALL.into_iter().enumerate() {
        let sent = rust.send(&js_id, kind, body(kind, n)).await.unwrap();
        assert_eq!(sent.outcome, Outcome::Delivered, "{kind}");
        let seen = js.expect_event("signal", STEP).await;
        assert_eq!(seen["signal"]["from"], json!(rust_id));
        assert_eq!(seen["signal"]["kind"], json!(kind.as_str()));
        assert_eq!(seen["signal"]["body"], body(kind, n));
        let echo = tokio::time::timeout(STEP, rust_in.recv()).await.unwrap().unwrap();
        assert_eq!((echo.from, echo.kind), (js_id, kind));
        assert_eq!(echo.body["echo"], json!(sent.id));
        assert_eq!(echo.body["body"], body(kind, n));
        let echoed = js.expect_event("echoed", STEP).await;
        assert_eq!(echoed["reply"]["outcome"], json!("delivered"));
    }

    for (name, code) in
        [("forged-from", "bad_request"), ("oversized-sdp", "too_large"), ("unknown-kind", "unknown_kind")]
    {
        let refused = js.expect_event("refused", STEP).await;
        assert_eq!((refused["name"].as_str(), refused["code"].as_str()), (Some(name), Some(code)), "{refused}");
    }
    let ice = js.expect_event("ice-config", STEP).await;
    assert_eq!(ice["reply"]["ok"], json!(true), "{ice}");
    assert_eq!(ice["reply"]["req"], json!(4242));
    js.expect_event("finished", STEP).await;
    let (status, stderr) = js.wait(STEP).await;
    assert!(status.success(), "driver failed: {stderr}");

    // The JS device left: the Rust watcher hears it, and nothing forged arrived.
    let offline = tokio::time::timeout(STEP, async {
        loop {
            if let Some(ClientEvent::Presence { device, online: false }) = rust_events.recv().await {
                break device;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(offline, js_id);
    assert!(rust_in.try_recv().is_err(), "a refused signal reached the Rust client");
    server.shutdown().await;
}
