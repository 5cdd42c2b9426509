//! Groups over the ConnectionManager: three devices, two groups, changes sync
//! both ways and only to members, a device that was offline catches up, and
//! concurrent writes converge.

mod common;

use common::*;
use peers_device::ManagerEvent;
use peers_sdk::rpc::RemoteErrorCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_devices_two_groups_sync_only_to_members() {
    let (mut a, mut b, mut c) = (node("a"), node("b"), node("c"));
    // "family": a, b, c. "work": a and b only.
    a.join("family", &[b.id, c.id]).await;
    b.join("family", &[a.id, c.id]).await;
    c.join("family", &[a.id, b.id]).await;
    a.join("work", &[b.id]).await;
    b.join("work", &[a.id]).await;
    // c believes it is in "work" with a and b; they do not list it.
    c.join("work", &[a.id, b.id]).await;
    link_local(&a, &b).await;
    link_local(&b, &c).await;
    link_local(&a, &c).await;

    a.engine("family").put("dinner", b"pasta").await.unwrap();
    c.engine("family").put("movie", b"heat").await.unwrap();
    a.engine("work").put("deadline", b"friday").await.unwrap();
    for node in [&a, &b, &c] {
        wait_value(node.engine("family"), "dinner", Some(b"pasta")).await;
        wait_value(node.engine("family"), "movie", Some(b"heat")).await;
    }
    wait_value(b.engine("work"), "deadline", Some(b"friday")).await;
    // c's write to "work" stays on c, and c never sees a's "work" data.
    c.engine("work").put("intrusion", b"x").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(c.engine("work").get("deadline").await.unwrap(), None);
    assert_eq!(a.engine("work").get("intrusion").await.unwrap(), None);
    assert_eq!(b.engine("work").get("intrusion").await.unwrap(), None);
    // And c cannot even call the group's RPCs on a.
    let to_a = c.manager.connection(&a.id).unwrap();
    let err = to_a.emit::<_, ()>("getNetworkInfo_work", &()).await.unwrap_err();
    assert!(matches!(&err, peers_sdk::Error::Remote(e) if e.code == RemoteErrorCode::UnknownMethod), "{err}");

    let status = a.manager.status();
    let family = status.groups.iter().find(|g| g.group.as_str() == "family").unwrap();
    assert!(family.members.iter().all(|m| m.connected && m.ready), "{family:?}");
    assert!(status.history.iter().any(|h| matches!(h.event, ManagerEvent::GroupReady { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_was_offline_catches_up_when_it_returns() {
    let (mut a, mut b) = (node("a"), node("b"));
    a.join("g", &[b.id]).await;
    b.join("g", &[a.id]).await;
    link_local(&a, &b).await;
    a.engine("g").put("first", b"1").await.unwrap();
    wait_value(b.engine("g"), "first", Some(b"1")).await;

    // b goes offline.
    b.manager.shutdown().await;
    wait_until("a to see b gone", || a.manager.connection(&b.id).is_none()).await;
    for i in 0..300u32 {
        a.engine("g").put(&format!("k{i}"), &i.to_be_bytes()).await.unwrap();
    }
    // b comes back (a new manager over the same engine, as after a restart).
    let b2 = rebuild(&b);
    b2.manager.add_group(std::sync::Arc::new(b.engine("g").clone()), [a.id]).await;
    link_local(&a, &b2).await;
    wait_value(b.engine("g"), "k299", Some(&299u32.to_be_bytes())).await;
    wait_until("digests to match", || a.engine("g").info().digest == b.engine("g").info().digest).await;
}

/// A fresh manager with `node`'s keys.
fn rebuild(node: &Node) -> Node {
    use peers_sdk::{ConnectionConfig, DeviceInfo, TrustLevel};
    let trust = |_: &DeviceInfo| TrustLevel::Trusted;
    let config = peers_device::ManagerConfig::new(ConnectionConfig::new(node.keys.clone(), trust));
    Node {
        id: node.id,
        keys: node.keys.clone(),
        manager: peers_device::ConnectionManager::new(config),
        engines: node.engines.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_converge_everywhere() {
    let (mut a, mut b, mut c) = (node("a"), node("b"), node("c"));
    a.join("g", &[b.id, c.id]).await;
    b.join("g", &[a.id, c.id]).await;
    c.join("g", &[a.id, b.id]).await;
    link_local(&a, &b).await;
    link_local(&b, &c).await;
    let writes = |node: &Node, tag: u8| {
        let engine = node.engine("g").clone();
        async move {
            for i in 0..60u8 {
                engine.put(&format!("k{}", i % 4), &[tag, i]).await.unwrap();
            }
        }
    };
    tokio::join!(writes(&a, 1), writes(&b, 2), writes(&c, 3));
    wait_until("all three to converge", || {
        let d = a.engine("g").info().digest;
        b.engine("g").info().digest == d && c.engine("g").info().digest == d
    })
    .await;
    let snapshot = a.engine("g").snapshot().await.unwrap();
    assert_eq!(snapshot.len(), 4);
    assert_eq!(b.engine("g").snapshot().await.unwrap(), snapshot);
    assert_eq!(c.engine("g").snapshot().await.unwrap(), snapshot);
}
