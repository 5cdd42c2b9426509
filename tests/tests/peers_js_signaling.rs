//! The peers-js signaling client (`peers-js/src/signaling.ts`) against the Rust
//! server and the Rust `SignalingClient`, as real processes: the Node driver
//! (`peers-js/dist/examples/signaling.js`, built by `npx tsc -p peers-js`)
//! registers with its v2 signature, signals a Rust device while that device is
//! offline (queued, then delivered when it registers, the JS side told
//! `delivered`), each sees the other's presence, the Rust device's answer
//! reaches the JS side and its echo comes back, and the JS side reports the
//! server's refusal of a signal to itself as a typed code.

use std::collections::HashMap;
use std::time::Duration;

use peers_sdk::{DeviceId, DeviceKeys};
use peers_signaling::{ClientEvent, Outcome, SignalKind, SignalingClient, SignalingClientOptions};
use peers_tests::JsClient;
use peers_tests::signaling::{signaling_origin, signaling_server};
use serde_json::{Value, json};

/// The driver, relative to `tests/js/` (where `JsClient` looks).
const DRIVER: &str = "../../peers-js/dist/examples/signaling.js";
const STEP: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_js_device_and_a_rust_device_signal_through_the_queue_and_see_each_other() {
    let server = signaling_server().await;
    let rust_keys = DeviceKeys::generate("rust").unwrap();
    let rust_id = rust_keys.device_id().to_string();
    let mut js = JsClient::spawn(DRIVER, &[&signaling_origin(&server), &rust_id]);

    // The JS device registers and signals the Rust device, which is offline.
    let registered = js.expect_event("registered", STEP).await;
    let js_id: DeviceId = registered["device_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(registered["queued"], json!(0));
    assert_eq!(js.expect_event("subscribed", STEP).await["online"], json!([]));
    let sent = js.expect_event("sent", STEP).await;
    assert_eq!(sent["result"]["outcome"], json!("queued"), "{sent}");
    let offer_id = sent["result"]["id"].as_str().unwrap().to_owned();

    // The Rust device registers: the queued offer is delivered, and it sees the JS device online.
    let rust =
        SignalingClient::connect(&server.url().unwrap(), &rust_keys, SignalingClientOptions::default()).await.unwrap();
    let mut rust_in = rust.incoming().unwrap();
    let mut rust_events = rust.events().unwrap();
    let offer = tokio::time::timeout(STEP, rust_in.recv()).await.unwrap().unwrap();
    assert_eq!(
        (offer.id.as_str(), offer.from, offer.kind, offer.queued),
        (offer_id.as_str(), js_id, SignalKind::Offer, true)
    );
    assert_eq!(offer.body, json!({"sdp": "v=0 from peers-js", "type": "offer"}));
    assert_eq!(rust.subscribe_presence(&[js_id]).await.unwrap(), vec![js_id]);

    let answer = rust.send(&js_id, SignalKind::Answer, json!({"sdp": "v=0 from rust"})).await.unwrap();
    assert_eq!(answer.outcome, Outcome::Delivered);

    // The JS side's view, in whatever order the server's events came.
    let mut seen: HashMap<String, Value> = HashMap::new();
    loop {
        let event = js.next_event(STEP).await;
        let name = event["event"].as_str().unwrap().to_owned();
        if name == "finished" {
            break;
        }
        assert!(seen.insert(name, event.clone()).is_none(), "twice: {event}");
    }
    assert_eq!(
        seen["presence"]["presence"],
        json!({"device": rust_id, "online": true}),
        "the JS side saw the Rust device come online"
    );
    assert_eq!(seen["outcome"]["outcome"]["id"], json!(offer_id));
    assert_eq!(seen["outcome"]["outcome"]["to"], json!(rust_id));
    assert_eq!(seen["outcome"]["outcome"]["outcome"], json!("delivered"));
    let signal = &seen["signal"]["signal"];
    assert_eq!((signal["id"].as_str(), signal["from"].as_str()), (Some(answer.id.as_str()), Some(rust_id.as_str())));
    assert_eq!((signal["kind"].clone(), signal["queued"].clone()), (json!("answer"), json!(false)));
    assert_eq!(signal["body"], json!({"sdp": "v=0 from rust"}));
    assert_eq!(seen["echoed"]["result"]["outcome"], json!("delivered"));
    assert_eq!(
        (seen["refused"]["kind"].clone(), seen["refused"]["code"].clone(), seen["refused"]["wire"].clone()),
        (json!("Signaling"), json!("SelfAddressed"), json!("self_addressed"))
    );
    assert!(!seen.contains_key("notice"), "unexpected notice: {:?}", seen.get("notice"));

    let echo = tokio::time::timeout(STEP, rust_in.recv()).await.unwrap().unwrap();
    assert_eq!((echo.from, echo.kind, echo.queued), (js_id, SignalKind::Ready, false));
    assert_eq!(echo.body, json!({"echo": answer.id}));
    let (status, stderr) = js.wait(STEP).await;
    assert!(status.success(), "driver failed: {stderr}");

    // The JS device left: the Rust watcher hears it, and nothing else arrived.
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
    rust.close().await;
    server.shutdown().await;
}
