//! The manager over real socket.io on loopback: a device kept connected is
//! dialed, syncs, and is redialed after its connection drops.

mod common;

use std::sync::Arc;

use common::*;
use peers_device::ConnectionClass;
use peers_device::transports::{SocketIoDialer, SocketIoListener};
use peers_sdk::CloseReason;
use peers_transport_socketio::{ClientOptions, ServerOptions, SocketIoServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_device_is_dialed_synced_and_redialed_after_a_drop() {
    let (mut a, mut b) = (node("a"), node("b"));
    a.join("g", &[b.id]).await;
    b.join("g", &[a.id]).await;
    let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
    let listener = SocketIoListener::start(a.manager.clone(), server);
    let dialer = SocketIoDialer::new(ClientOptions::default());
    dialer.set_urls(a.id, vec![listener.url().to_owned()]);
    b.manager.add_dialer(Arc::new(dialer));
    b.manager.keep_connected(a.id);

    a.engine("g").put("before", b"1").await.unwrap();
    wait_value(b.engine("g"), "before", Some(b"1")).await;
    let status = b.manager.status();
    let active = status.active(&a.id).unwrap();
    assert_eq!((active.class, active.transport.as_str(), active.dialed), (ConnectionClass::Local, "socket.io", true));

    // a drops the connection; b dials again on its own and sync carries on.
    a.manager.connection(&b.id).unwrap().close(CloseReason::normal("test drop")).await;
    wait_until("b to see the drop", || b.manager.connection(&a.id).is_none()).await;
    a.engine("g").put("after", b"2").await.unwrap();
    wait_value(b.engine("g"), "after", Some(b"2")).await;
    assert!(b.manager.connection(&a.id).is_some());
    listener.shutdown().await;
}
