//! The manager's handover rules over in-memory sockets posing as other
//! transports: a worse connection to a device never takes over, and a follower
//! whose `takeover` is lost follows the leader's `retire`. (The scenario
//! tests over real transports, in the `tests` crate's `device_*.rs`, cover the
//! upgrades, eviction, pings, self-connections and device messages.)

mod common;

use std::time::Duration;

use common::*;
use peers_device::{ConnectionClass, ManagerEvent};
use peers_sdk::ConnectionState;
use peers_sdk::socket::{Locality, TransportKind};

fn active_class(node: &Node, peer: &Node) -> Option<ConnectionClass> {
    node.manager.status().active(&peer.id).map(|c| c.class)
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
async fn a_follower_whose_takeover_is_lost_follows_the_leaders_retire() {
    // Draining long enough that the old connection closing on its own would not
    // pass for the fallback.
    let slow_drain = |c: &mut peers_device::ManagerConfig| c.drain_timeout = Duration::from_secs(60);
    let (a, b) = (node_with("a", slow_drain), node_with("b", slow_drain));
    let (leader, follower) = if a.id < b.id { (&a, &b) } else { (&b, &a) };
    // The follower stops hearing takeovers once it has adopted a connection (the
    // set-up runs just before the manager registers its own methods).
    follower.manager.on_connection(|connection, _| {
        let connection = connection.clone();
        tokio::spawn(async move {
            for _ in 0..50 {
                connection.remove_rpc("peers:takeover");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    });
    link(leader, follower, TransportKind::Relay, Locality::Internet).await;
    link_local(leader, follower).await;
    wait_until("both sides on the local connection and the relay closed", || {
        active_class(leader, follower) == Some(ConnectionClass::Local)
            && active_class(follower, leader) == Some(ConnectionClass::Local)
            && leader.manager.status().connections.len() == 1
            && follower.manager.status().connections.len() == 1
    })
    .await;
    assert!(follower.manager.status().history.iter().any(|h| matches!(
        h.event,
        ManagerEvent::Switched { from: ConnectionClass::ServerRelay, to: ConnectionClass::Local, .. }
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_open_across_an_upgrade_finishes_on_the_retired_connection() {
    use std::sync::{Arc, Mutex};

    const STREAM: &str = "test:upload";
    const PIECE: usize = 64 * 1024;
    // What the receiving side got: the bytes' hash and count, once the stream ended.
    let got: Arc<Mutex<Option<(blake3::Hash, usize)>>> = Arc::default();
    let record = got.clone();
    let receiving = move |c: &mut peers_device::ManagerConfig| {
        let record = record.clone();
        c.connection = c.connection.clone().with_setup(move |connection| {
            let record = record.clone();
            connection.expose_stream(STREAM, move |_: (), mut reader| {
                let record = record.clone();
                async move {
                    let (mut hasher, mut len) = (blake3::Hasher::new(), 0);
                    while let Some(piece) = reader.next().await.map_err(peers_sdk::rpc::RemoteError::handler)? {
                        hasher.update(&piece);
                        len += piece.len();
                    }
                    *record.lock().unwrap() = Some((hasher.finalize(), len));
                    Ok(())
                }
            });
        });
    };
    let (a, b) = (node("a"), node_with("b", receiving));
    link(&a, &b, TransportKind::Relay, Locality::Internet).await;
    wait_until("a relay connection", || active_class(&a, &b) == Some(ConnectionClass::ServerRelay)).await;
    let relayed = a.manager.connection(&b.id).unwrap();
    let data = peers_sdk::testdata::incompressible(64 * PIECE, 3);
    let mut writer = relayed.open_stream(STREAM, &()).await.unwrap();
    let (first, rest) = data.split_at(data.len() / 2);
    writer.write(first).await.unwrap();

    // A better connection arrives and takes over while the stream is half-way.
    link_local(&a, &b).await;
    wait_until("both sides on the local connection", || {
        active_class(&a, &b) == Some(ConnectionClass::Local) && active_class(&b, &a) == Some(ConnectionClass::Local)
    })
    .await;
    assert_eq!(relayed.state(), ConnectionState::Verified, "the retired connection was cut with a stream open on it");
    writer.write(rest).await.unwrap();
    writer.finish().await.unwrap();
    assert_eq!(*got.lock().unwrap(), Some((blake3::hash(&data), data.len())));

    // Drained: now it is retired and closed.
    wait_until("the relay connection to close", || {
        a.manager.status().connections.len() == 1 && b.manager.status().connections.len() == 1
    })
    .await;
    assert!(matches!(relayed.state(), ConnectionState::Closed(_)));
}
