//! Through the real signaling server on loopback: two devices start on its
//! end-to-end encrypted frame relay, WebRTC (signaled through the server) takes
//! over, and no call made during the switch is lost.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use peers_device::Dialer;
use peers_device::manager::backoff::BackoffOptions;
use peers_device::transports::{LinkState, SignalingServerLink, WebRtcDialer, WebRtcListener};
use peers_device::{ConnectionClass, ManagerEvent};
use peers_sdk::rpc::RemoteError;
use peers_signaling::{ClientOptions, ServerConfig, SignalingServer};
use peers_transport_webrtc::{WebRtcConfig, WebRtcEndpoint};

struct Online {
    link: SignalingServerLink,
    endpoint: Arc<WebRtcEndpoint>,
    _listener: WebRtcListener,
}

async fn go_online(node: &Node, url: &str) -> Online {
    let config = WebRtcConfig::default();
    let link = SignalingServerLink::start(
        node.manager.clone(),
        url.to_owned(),
        node.keys.clone(),
        ClientOptions::default(),
        BackoffOptions::default(),
        config.connect_timeout,
    );
    link.registered(WAIT).await.unwrap();
    let endpoint = Arc::new(WebRtcEndpoint::new(link.signaling.clone(), config));
    let listener = WebRtcListener::start(node.manager.clone(), endpoint.clone());
    Online { link, endpoint, _listener: listener }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_connection_upgrades_to_webrtc_without_losing_calls() {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let url = server.url().unwrap();
    let (mut a, mut b) = (node("a"), node("b"));
    a.join("g", &[b.id]).await;
    b.join("g", &[a.id]).await;
    for n in [&a, &b] {
        n.manager.on_connection(|connection, _| {
            connection.expose_rpc("echo", |n: u64| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, RemoteError>(n)
            });
        });
    }
    let (online_a, _online_b) = (go_online(&a, &url).await, go_online(&b, &url).await);

    // Relay first.
    a.manager.add_dialer(online_a.link.relay.clone());
    a.manager.keep_connected(b.id);
    wait_until("a relayed connection", || {
        a.manager.status().active(&b.id).is_some_and(|c| c.class == ConnectionClass::ServerRelay)
    })
    .await;
    a.engine("g").put("via", b"relay").await.unwrap();
    wait_value(b.engine("g"), "via", Some(b"relay")).await;

    // Calls in flight from both sides while WebRTC comes up and takes over.
    let callers = [(&a, &b), (&b, &a)].map(|(caller, callee)| {
        let (manager, peer) = (caller.manager.clone(), callee.id);
        tokio::spawn(async move {
            for n in 0..60u64 {
                let connection = manager.connection(&peer).expect("a connection at all times");
                let echoed: u64 = connection.emit("echo", &n).await.expect("a call was lost during the switch");
                assert_eq!(echoed, n);
            }
        })
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.manager.add_dialer(Arc::new(WebRtcDialer::new(online_a.endpoint.clone())));
    for caller in callers {
        caller.await.unwrap();
    }
    wait_until("WebRTC to take over on both sides", || {
        a.manager.status().active(&b.id).is_some_and(|c| c.class == ConnectionClass::WebRtcDirect)
            && b.manager.status().active(&a.id).is_some_and(|c| c.class == ConnectionClass::WebRtcDirect)
    })
    .await;
    assert!(a.manager.status().history.iter().any(|h| matches!(
        h.event,
        ManagerEvent::Switched { from: ConnectionClass::ServerRelay, to: ConnectionClass::WebRtcDirect, .. }
    )));
    a.engine("g").put("via", b"webrtc").await.unwrap();
    wait_value(b.engine("g"), "via", Some(b"webrtc")).await;
    wait_until("the relay to close", || a.manager.status().connections.len() == 1).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_registers_again_after_the_server_restarts() {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let (url, addr) = (server.url().unwrap(), server.local_addr().unwrap());
    let (a, b) = (node("a"), node("b"));
    let fast = || {
        let mut backoff = BackoffOptions::default();
        backoff.initial = Duration::from_millis(100);
        backoff
    };
    let start = |node: &Node| {
        SignalingServerLink::start(
            node.manager.clone(),
            url.clone(),
            node.keys.clone(),
            ClientOptions::default(),
            fast(),
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
    assert!(err.contains("not registered"), "{err}");

    let mut config = ServerConfig::in_memory();
    config.bind = addr;
    let server = SignalingServer::bind(config).await.unwrap();
    link_a.registered(WAIT).await.unwrap();
    link_b.registered(WAIT).await.unwrap();
    // And the relay works through the new server.
    a.manager.add_dialer(link_a.relay.clone());
    a.manager.keep_connected(b.id);
    wait_until("a relayed connection", || a.manager.connection(&b.id).is_some()).await;
    server.shutdown().await;
}
