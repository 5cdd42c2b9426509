//! Group sync between devices over real socket.io connections on loopback, with
//! the SQLite engine on disk: three devices in two groups sync both ways and only
//! to members; a device that was offline catches up when it returns; concurrent
//! writes converge to the same value everywhere.

use peers_device::ManagerEvent;
use peers_device::sync::SqliteSyncEngine;
use peers_sdk::rpc::RemoteErrorCode;
use peers_tests::device::{TestDevice, refused_with, wait_for_value, wait_until};

/// `a` keeps `b` connected, dialing its listener; waits until both see it.
async fn connect(a: &TestDevice, b: &mut TestDevice) {
    let url = b.listen().await;
    a.keep_dialing(b.id(), &url);
    wait_until("the socket.io connection", || {
        a.manager.connection(&b.id()).is_some() && b.manager.connection(&a.id()).is_some()
    })
    .await;
}

/// Waits until every engine holds the same data (equal digests).
async fn wait_converged(engines: &[&SqliteSyncEngine]) {
    wait_until("the engines to converge", || engines.windows(2).all(|w| w[0].info().digest == w[1].info().digest))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_devices_in_two_groups_sync_both_ways_and_only_to_members() {
    let (mut a, mut b, mut c) = (TestDevice::new("a"), TestDevice::new("b"), TestDevice::new("c"));
    // "family": a, b and c. "work": a and b; c believes it is in "work" too, but
    // neither a nor b lists it.
    a.join("family", &[b.id(), c.id()]).await;
    b.join("family", &[a.id(), c.id()]).await;
    c.join("family", &[a.id(), b.id()]).await;
    a.join("work", &[b.id()]).await;
    b.join("work", &[a.id()]).await;
    c.join("work", &[a.id(), b.id()]).await;
    connect(&a, &mut b).await;
    connect(&b, &mut c).await;
    connect(&c, &mut a).await;

    // Writes on every device reach every member, whichever side dialed.
    a.engine("family").put("dinner", b"pasta").await.unwrap();
    c.engine("family").put("movie", b"heat").await.unwrap();
    a.engine("work").put("deadline", b"friday").await.unwrap();
    b.engine("work").put("meeting", b"monday").await.unwrap();
    for device in [&a, &b, &c] {
        wait_for_value(device.engine("family"), "dinner", Some(b"pasta")).await;
        wait_for_value(device.engine("family"), "movie", Some(b"heat")).await;
    }
    wait_for_value(b.engine("work"), "deadline", Some(b"friday")).await;
    wait_for_value(a.engine("work"), "meeting", Some(b"monday")).await;

    // c writes to its "work" copy, then a writes to "family" after it: once that
    // later write has reached every device, sync has run everywhere since both
    // "work" writes, and neither crossed to or from c.
    c.engine("work").put("intrusion", b"x").await.unwrap();
    a.engine("family").put("after", b"work writes").await.unwrap();
    for device in [&b, &c] {
        wait_for_value(device.engine("family"), "after", Some(b"work writes")).await;
    }
    assert_eq!(c.engine("work").get("deadline").await.unwrap(), None, "c read a's work data");
    assert_eq!(c.engine("work").get("meeting").await.unwrap(), None, "c read b's work data");
    for device in [&a, &b] {
        assert_eq!(device.engine("work").get("intrusion").await.unwrap(), None, "c's work write got in");
    }
    let to_a = c.manager.connection(&a.id()).unwrap();
    let listed = to_a.emit::<_, ()>("getNetworkInfo_work", &()).await;
    assert!(refused_with(&listed, RemoteErrorCode::UnknownMethod), "{listed:?}");

    // Every member is connected and ready in "family" on every device; c is
    // ready with nobody in "work".
    for device in [&a, &b, &c] {
        let status = device.manager.status();
        let family = status.groups.iter().find(|g| g.group.as_str() == "family").unwrap();
        assert!(family.members.iter().all(|m| m.connected && m.ready), "{family:?}");
    }
    let status = c.manager.status();
    let work = status.groups.iter().find(|g| g.group.as_str() == "work").unwrap();
    assert!(work.members.iter().all(|m| m.connected && !m.ready), "{work:?}");
    assert!(status.history.iter().any(|h| matches!(h.event, ManagerEvent::GroupReady { .. })));
    wait_converged(&[a.engine("family"), b.engine("family"), c.engine("family")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_was_offline_catches_up_when_it_returns() {
    let (mut a, mut b) = (TestDevice::new("a"), TestDevice::new("b"));
    a.join("notes", &[b.id()]).await;
    b.join("notes", &[a.id()]).await;
    let url_a = a.listen().await;
    b.keep_dialing(a.id(), &url_a);
    a.engine("notes").put("first", b"1").await.unwrap();
    wait_for_value(b.engine("notes"), "first", Some(b"1")).await;

    // b goes offline: its process ends, its database stays on disk.
    let (a_id, b_id) = (a.id(), b.id());
    let b = b.stop().await;
    wait_until("a to see b gone", || a.manager.connection(&b_id).is_none()).await;
    let written: Vec<(String, Vec<u8>)> = (0..300u32).map(|i| (format!("k{i}"), i.to_be_bytes().to_vec())).collect();
    for (key, value) in &written {
        a.engine("notes").put(key, value).await.unwrap();
    }
    a.engine("notes").put("first", b"overwritten").await.unwrap();

    // b comes back from its database, having written something while away.
    let b = b.restart().await;
    b.engine("notes").put("offline", b"written while away").await.unwrap();
    b.keep_dialing(a_id, &url_a);
    for (key, value) in &written {
        wait_for_value(b.engine("notes"), key, Some(value)).await;
    }
    wait_for_value(b.engine("notes"), "first", Some(b"overwritten")).await;
    wait_for_value(a.engine("notes"), "offline", Some(b"written while away")).await;
    wait_converged(&[a.engine("notes"), b.engine("notes")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_converge_to_the_same_value_everywhere() {
    let (mut a, mut b, mut c) = (TestDevice::new("a"), TestDevice::new("b"), TestDevice::new("c"));
    let ids = [a.id(), b.id(), c.id()];
    for device in [&mut a, &mut b, &mut c] {
        let others: Vec<_> = ids.iter().copied().filter(|id| *id != device.id()).collect();
        device.join("g", &others).await;
    }
    // A line: a and c reach each other's changes only through b.
    connect(&a, &mut b).await;
    connect(&c, &mut b).await;
    const WRITES: u8 = 60;
    const KEYS: u8 = 4;
    let writes = |device: &TestDevice, tag: u8| {
        let engine = device.engine("g").clone();
        async move {
            for i in 0..WRITES {
                engine.put(&format!("k{}", i % KEYS), &[tag, i]).await.unwrap();
            }
        }
    };
    tokio::join!(writes(&a, 1), writes(&b, 2), writes(&c, 3));
    wait_converged(&[a.engine("g"), b.engine("g"), c.engine("g")]).await;

    let snapshot = a.engine("g").snapshot().await.unwrap();
    assert_eq!(b.engine("g").snapshot().await.unwrap(), snapshot);
    assert_eq!(c.engine("g").snapshot().await.unwrap(), snapshot);
    assert_eq!(snapshot.len(), usize::from(KEYS));
    // Each device's later writes to a key carry later timestamps, so the value
    // every device settled on is some device's last write to that key.
    for (key, value) in &snapshot {
        let k: u8 = key[1..].parse().unwrap();
        let last = (0..WRITES).rev().find(|i| i % KEYS == k).unwrap();
        assert!(value.len() == 2 && (1..=3).contains(&value[0]) && value[1] == last, "{key} = {value:?}");
    }
    // And every device reports its members caught up.
    for device in [&a, &b, &c] {
        wait_until("the members to be caught up", || {
            device.manager.status().groups.iter().all(|g| g.sync.iter().all(|p| p.caught_up()))
        })
        .await;
    }
}
