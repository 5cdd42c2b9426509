//! Device messages over real socket.io connections: they reach a device two
//! hops away, once even when two routes carry them, die at their time to live,
//! and carry the WebRTC signaling of two devices that share a third, with no
//! signaling server at all.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use peers_device::device_message::DeviceMessage;
use peers_device::{ConnectionClass, ManagerEvent};
use peers_sdk::DeviceId;
use peers_tests::device::{ECHO, FreezableDevice, TestDevice, WAIT, wait_for_value, wait_until};
use tokio::sync::mpsc;

const KIND: &str = "test.note";

/// `from` dials `to`'s socket.io `url` once; waits until both hold the connection.
async fn connect(from: &TestDevice, to: &peers_device::ConnectionManager, url: &str) {
    let to_id = to.device_id();
    assert_eq!(from.dial_once(url, Some(to_id)).await.unwrap(), to_id);
    wait_until("both sides to hold the connection", || to.connection(&from.id()).is_some()).await;
}

async fn next(inbox: &mut mpsc::Receiver<DeviceMessage>) -> DeviceMessage {
    tokio::time::timeout(WAIT, inbox.recv()).await.expect("a device message in time").expect("the inbox is open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_messages_reach_a_device_two_hops_away_once_over_two_routes() {
    let (a, mut b, c, mut d) = (TestDevice::new("a"), TestDevice::new("b"), TestDevice::new("c"), TestDevice::new("d"));
    // A diamond: a reaches c through b and through d, never directly.
    let (url_b, url_d) = (b.listen().await, d.listen().await);
    for (from, via, url) in [(&a, &b, &url_b), (&a, &d, &url_d), (&c, &b, &url_b), (&c, &d, &url_d)] {
        connect(from, &via.manager, url).await;
    }
    assert!(a.manager.connection(&c.id()).is_none());
    let mut inbox = c.manager.device_messages(KIND);
    let hops = peers_tests::device::config(&a.keys, |_| {}).device_message_hops;

    const SENT: u32 = 20;
    for i in 0..SENT {
        a.manager.send_device_message(c.id(), KIND, i.to_be_bytes().to_vec()).await.unwrap();
    }
    let mut received = BTreeSet::new();
    for _ in 0..SENT {
        let message = next(&mut inbox).await;
        assert_eq!((message.from, message.to, message.kind.as_str()), (a.id(), c.id(), KIND));
        // One hop in between (b or d) took one hop off.
        assert_eq!(message.hops_left, hops - 1);
        assert!(received.insert(message.payload.clone()), "delivered twice: {:?}", message.payload);
    }
    let expected: BTreeSet<Vec<u8>> = (0..SENT).map(|i| i.to_be_bytes().to_vec()).collect();
    assert_eq!(received, expected);

    // Every message came both ways; the second copies were refused. A marker sent
    // after them on the same routes arrives after any of them would have.
    for marker in [b"marker 1", b"marker 2"] {
        a.manager.send_device_message(c.id(), KIND, marker.to_vec()).await.unwrap();
        assert_eq!(next(&mut inbox).await.payload, marker);
    }
    let extra = inbox.try_recv();
    assert!(extra.is_err(), "a message was delivered twice: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_message_held_up_past_its_time_to_live_is_not_delivered() {
    let lifetime = Duration::from_millis(1500);
    let a = TestDevice::with("a", |c| c.device_message_lifetime = lifetime);
    let c = TestDevice::new("c");
    // a and c reach each other only through b, which a test can stop.
    let b = FreezableDevice::start("b").await;
    connect(&a, &b.manager, &b.url).await;
    connect(&c, &b.manager, &b.url).await;
    let mut inbox = c.manager.device_messages(KIND);
    a.manager.send_device_message(c.id(), KIND, b"in time".to_vec()).await.unwrap();
    let delivered = next(&mut inbox).await;
    assert_eq!(delivered.payload, b"in time");
    assert_eq!(delivered.expires_ms - delivered.created_ms, lifetime.as_millis() as u64);

    // b stops while a message is on its way through it, for longer than the
    // message lives; when b runs again the message has expired.
    b.freeze().await;
    a.manager.send_device_message(c.id(), KIND, b"too late".to_vec()).await.unwrap();
    tokio::time::sleep(lifetime + Duration::from_millis(500)).await;
    b.thaw();
    // A message sent after b runs again arrives, and only it.
    a.manager.send_device_message(c.id(), KIND, b"after".to_vec()).await.unwrap();
    assert_eq!(next(&mut inbox).await.payload, b"after", "the expired message was delivered");
    assert!(inbox.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_set_up_over_device_messages_works_without_the_signaling_server() {
    // No signaling server in this test: a and c share only b.
    let (mut a, mut b, mut c) = (TestDevice::new("a"), TestDevice::new("b"), TestDevice::new("c"));
    a.join("g", &[c.id()]).await;
    c.join("g", &[a.id()]).await;
    let url_b = b.listen().await;
    connect(&a, &b.manager, &url_b).await;
    connect(&c, &b.manager, &url_b).await;
    let (dialer_a, _listener_a) = a.webrtc_over_device_messages();
    let (_dialer_c, _listener_c) = c.webrtc_over_device_messages();
    a.manager.add_dialer(Arc::new(dialer_a));
    a.manager.keep_connected(c.id());

    wait_until("a WebRTC connection between a and c", || {
        a.active_class(&c.id()) == Some(ConnectionClass::WebRtcDirect)
            && c.active_class(&a.id()) == Some(ConnectionClass::WebRtcDirect)
    })
    .await;
    let connection = a.manager.connection(&c.id()).unwrap();
    assert_eq!(format!("{:?}", connection.socket_info().transport), "WebRtc");
    let echoed: u64 = connection.emit(ECHO, &7u64).await.unwrap();
    assert_eq!(echoed, 7);
    // The group syncs over it, both ways.
    a.engine("g").put("from a", b"over webrtc").await.unwrap();
    c.engine("g").put("from c", b"over webrtc too").await.unwrap();
    wait_for_value(c.engine("g"), "from a", Some(b"over webrtc")).await;
    wait_for_value(a.engine("g"), "from c", Some(b"over webrtc too")).await;
    let ready: Vec<DeviceId> = a
        .history()
        .into_iter()
        .filter_map(|e| match e {
            ManagerEvent::GroupReady { device, .. } => Some(device),
            _ => None,
        })
        .collect();
    assert_eq!(ready, [c.id()]);
}
