//! WebRTC between two devices that share a third, signaled through device
//! messages over their connections to it: no signaling server involved.

mod common;

use std::sync::Arc;

use common::*;
use peers_device::ConnectionClass;
use peers_device::transports::{DeviceMessageSignaling, WebRtcDialer, WebRtcListener};
use peers_transport_webrtc::{WebRtcConfig, WebRtcEndpoint};

fn endpoint(node: &Node) -> Arc<WebRtcEndpoint> {
    let signaling = Arc::new(DeviceMessageSignaling::new(node.manager.clone()));
    Arc::new(WebRtcEndpoint::new(signaling, WebRtcConfig::default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_set_up_over_device_messages_through_a_shared_device() {
    let (mut a, b, mut c) = (node("a"), node("b"), node("c"));
    a.join("g", &[c.id]).await;
    c.join("g", &[a.id]).await;
    // a and c both reach b, not each other.
    link_local(&a, &b).await;
    link_local(&c, &b).await;
    let (endpoint_a, endpoint_c) = (endpoint(&a), endpoint(&c));
    let _listener = WebRtcListener::start(c.manager.clone(), endpoint_c.clone());
    a.manager.add_dialer(Arc::new(WebRtcDialer::new(endpoint_a.clone())));
    a.manager.keep_connected(c.id);

    wait_until("a WebRTC connection from a to c", || {
        a.manager.status().active(&c.id).is_some_and(|l| l.transport == "webrtc")
    })
    .await;
    let link = a.manager.status().active(&c.id).cloned().unwrap();
    assert_eq!(link.class, ConnectionClass::WebRtcDirect);
    assert!(c.manager.connection(&a.id).is_some());
    // The group syncs over it.
    a.engine("g").put("over", b"webrtc").await.unwrap();
    wait_value(c.engine("g"), "over", Some(b"webrtc")).await;
}
