//! The manager's connection rules over real `Connection`s: a better connection
//! takes over without losing calls, eviction at the limit, ping failures,
//! self-connections, and device messages over several hops.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use peers_device::device_message::DeviceMessage;
use peers_device::{ConnectionClass, ManagerEvent};
use peers_sdk::rpc::RemoteError;
use peers_sdk::socket::{Locality, TransportKind};

fn active_class(node: &Node, peer: &Node) -> Option<ConnectionClass> {
    node.manager.status().active(&peer.id).map(|c| c.class)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_better_connection_takes_over_and_no_call_in_flight_is_lost() {
    let (a, b) = (node("a"), node("b"));
    for n in [&a, &b] {
        n.manager.on_connection(|connection, _| {
            connection.expose_rpc("slow_echo", |n: u64| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, RemoteError>(n)
            });
        });
    }
    // Start on the signaling server's relay.
    link(&a, &b, TransportKind::Relay, Locality::Internet).await;
    assert_eq!(active_class(&a, &b), Some(ConnectionClass::ServerRelay));
    // Calls keep flowing from both sides while a local connection appears.
    let callers = [(&a, &b), (&b, &a)].map(|(caller, callee)| {
        let (manager, peer) = (caller.manager.clone(), callee.id);
        tokio::spawn(async move {
            let mut done = 0u64;
            for n in 0..100u64 {
                let connection = manager.connection(&peer).expect("a connection at all times");
                let echoed: u64 = connection.emit("slow_echo", &n).await.expect("call lost during the switch");
                assert_eq!(echoed, n);
                done += 1;
            }
            done
        })
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    link_local(&a, &b).await;
    for caller in callers {
        assert_eq!(caller.await.unwrap(), 100);
    }
    wait_until("both sides on the local connection", || {
        active_class(&a, &b) == Some(ConnectionClass::Local) && active_class(&b, &a) == Some(ConnectionClass::Local)
    })
    .await;
    wait_until("the relay connection to close", || a.manager.status().connections.len() == 1).await;
    let history = a.manager.status().history;
    assert!(history.iter().any(|h| matches!(
        h.event,
        ManagerEvent::Switched { from: ConnectionClass::ServerRelay, to: ConnectionClass::Local, .. }
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worse_connection_does_not_take_over() {
    let (a, b) = (node("a"), node("b"));
    link_local(&a, &b).await;
    link(&a, &b, TransportKind::Relay, Locality::Internet).await;
    wait_until("the relay connection to be retired and closed", || {
        a.manager.status().connections.len() == 1 && b.manager.status().connections.len() == 1
    })
    .await;
    assert_eq!(active_class(&a, &b), Some(ConnectionClass::Local));
    assert_eq!(active_class(&b, &a), Some(ConnectionClass::Local));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_limit_the_least_preferred_connection_is_evicted() {
    let hub = node_with("hub", |c| c.max_connections = 2);
    let (relay_peer, internet_peer, local_peer, another_relay) =
        (node("relay"), node("internet"), node("local"), node("relay2"));
    link(&hub, &relay_peer, TransportKind::Relay, Locality::Internet).await;
    link(&hub, &internet_peer, TransportKind::SocketIo, Locality::Internet).await;
    // A local newcomer evicts the relayed connection, the least preferred.
    link_local(&local_peer, &hub).await;
    wait_until("the relayed peer to be evicted", || hub.manager.connection(&relay_peer.id).is_none()).await;
    assert!(hub.manager.connection(&internet_peer.id).is_some());
    assert!(hub.manager.connection(&local_peer.id).is_some());
    assert!(hub.manager.status().history.iter().any(|h| matches!(
        h.event,
        ManagerEvent::Evicted { device, .. } if device == relay_peer.id
    )));
    // A newcomer worse than everything held is refused.
    let (near, far) = pair(TransportKind::Relay, Locality::Internet);
    let (_, accepted) = tokio::join!(another_relay.manager.dial(near, Some(hub.id)), hub.manager.accept(far));
    assert!(matches!(accepted, Err(peers_device::Error::ConnectionLimit { limit: 2 })), "{accepted:?}");
    assert_eq!(hub.manager.status().connections.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_pings_is_dropped_after_three_failures() {
    let fast = |c: &mut peers_device::ManagerConfig| {
        c.health.ping_interval = Duration::from_millis(50);
        c.health.ping_timeout = Duration::from_millis(200);
    };
    let (a, b) = (node_with("a", fast), node_with("b", fast));
    link_local(&a, &b).await;
    wait_until("a first ping answered", || a.manager.status().active(&b.id).is_some_and(|c| c.latency.is_some())).await;
    // b stops answering.
    b.manager.connection(&a.id).unwrap().remove_rpc("peers:ping");
    wait_until("a to drop b", || a.manager.connection(&b.id).is_none()).await;
    let history = a.manager.status().history;
    let closed = history.iter().find_map(|h| match &h.event {
        ManagerEvent::Closed { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(closed.as_deref().is_some_and(|r| r.contains("3 pings")), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_never_connects_to_itself() {
    let a = node("a");
    let (near, _far) = pair(TransportKind::Memory, Locality::Loopback);
    assert!(matches!(a.manager.dial(near, Some(a.id)).await, Err(peers_device::Error::SelfConnection)));
    // A second manager with the same keys (a clone of this device) is refused too.
    let twin = common::Node {
        id: a.id,
        keys: a.keys.clone(),
        manager: peers_device::ConnectionManager::new(peers_device::ManagerConfig::new(
            peers_sdk::ConnectionConfig::new(a.keys.clone(), |_: &peers_sdk::DeviceInfo| {
                peers_sdk::TrustLevel::Trusted
            }),
        )),
        engines: Default::default(),
    };
    let (near, far) = pair(TransportKind::Memory, Locality::Loopback);
    let (dialed, accepted) = tokio::join!(a.manager.dial(near, None), twin.manager.accept(far));
    assert!(dialed.is_err() && accepted.is_err(), "{dialed:?} {accepted:?}");
    assert!(a.manager.status().connections.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_messages_reach_two_hops_once_and_forgeries_are_refused() {
    let (a, b, c) = (node("a"), node("b"), node("c"));
    link_local(&a, &b).await;
    link_local(&b, &c).await;
    let mut inbox = c.manager.device_messages("hello");
    a.manager.send_device_message(c.id, "hello", b"over b".to_vec()).await.unwrap();
    let message = tokio::time::timeout(WAIT, inbox.recv()).await.unwrap().unwrap();
    assert_eq!((message.from, message.payload.as_slice()), (a.id, &b"over b"[..]));
    // A replay of the same message (as another route would bring it) is refused.
    let to_c = b.manager.connection(&c.id).unwrap();
    let replay = to_c.emit::<_, ()>("peers:deviceMessage", &message).await;
    assert!(replay.is_err(), "a duplicate was accepted");
    // A message claiming to be from a, signed by b, is refused.
    let mut forged = DeviceMessage::new(&b.keys, c.id, "hello", b"forged".to_vec(), now_ms(), 10_000, 2).unwrap();
    forged.from = a.id;
    assert!(to_c.emit::<_, ()>("peers:deviceMessage", &forged).await.is_err());
    // An expired message is refused.
    let old = DeviceMessage::new(&a.keys, c.id, "hello", b"old".to_vec(), now_ms() - 60_000, 1_000, 2).unwrap();
    assert!(to_c.emit::<_, ()>("peers:deviceMessage", &old).await.is_err());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(inbox.try_recv().is_err(), "nothing else was delivered");
    // A kind nobody on c receives is refused, not dropped.
    let unwanted = DeviceMessage::new(&a.keys, c.id, "nobody", vec![], now_ms(), 10_000, 2).unwrap();
    assert!(to_c.emit::<_, ()>("peers:deviceMessage", &unwanted).await.is_err());
    let _ = Arc::new(());
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}
