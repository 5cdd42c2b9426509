//! The signaling-server link over the real server on loopback: it registers
//! again after the server restarts, and the relay works through the new server.
//! (Relay-to-WebRTC upgrades are covered by the `tests` crate's `device_links.rs`.)

mod common;

use std::time::Duration;

use common::*;
use peers_device::transports::{LinkState, ReconnectOptions, SignalingServerLink};
use peers_device::{DialError, Dialer};
use peers_signaling::{ServerConfig, SignalingClientOptions, SignalingServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_registers_again_after_the_server_restarts() {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let (url, addr) = (server.url().unwrap(), server.local_addr().unwrap());
    let (a, b) = (node("a"), node("b"));
    let start = |node: &Node| {
        SignalingServerLink::start(
            node.manager.clone(),
            url.clone(),
            node.keys.clone(),
            SignalingClientOptions::default(),
            ReconnectOptions::default(),
            Duration::from_secs(15),
        )
    };
    let (link_a, link_b) = (start(&a), start(&b));
    link_a.registered(WAIT).await.unwrap();
    link_b.registered(WAIT).await.unwrap();

    server.shutdown().await;
    let mut state = link_a.state();
    tokio::time::timeout(WAIT, state.wait_for(|s| matches!(s, LinkState::Disconnected(_)))).await.unwrap().unwrap();
    // While it is down, a relay dial fails at once with a clear reason.
    let err = link_a.relay.dial(b.id).await.err().unwrap();
    assert!(matches!(err, DialError::NoRoute { .. }), "{err}");
    assert!(err.to_string().contains("not registered"), "{err}");

    let mut config = ServerConfig::in_memory();
    config.bind = addr;
    let server = SignalingServer::bind(config).await.unwrap();
    link_a.registered(WAIT).await.unwrap();
    link_b.registered(WAIT).await.unwrap();
    // And the relay works through the new server.
    // (b answers relay requests only from devices it trusts: it wants a too.)
    b.manager.keep_connected(a.id);
    a.manager.add_dialer(link_a.relay.clone());
    a.manager.keep_connected(b.id);
    wait_until("a relayed connection", || a.manager.connection(&b.id).is_some()).await;
    server.shutdown().await;
}
