//! A hostile peer over a real socket.io connection: a device trusted in group A
//! only cannot call group B's RPCs, cannot read group B's changes, and cannot get
//! a forged or altered device message delivered.

use peers_device::device_message::DeviceMessage;
use peers_device::sync::{ChangeBatch, ChangeNotice, ListChanges, NetworkInfo};
use peers_sdk::Connection;
use peers_sdk::rpc::RemoteErrorCode;
use peers_tests::device::{TestDevice, WAIT, now_ms, refused_with, wait_for_value, wait_until};

const KIND: &str = "test.note";

/// The victim `v` is in group A with `h` and `m`, and in group B with `m` only.
/// `h` claims to be in B as well. Both dial `v` over socket.io.
async fn set_up() -> (TestDevice, TestDevice, TestDevice) {
    let (mut v, mut h, mut m) = (TestDevice::new("victim"), TestDevice::new("hostile"), TestDevice::new("member"));
    v.join("A", &[h.id(), m.id()]).await;
    v.join("B", &[m.id()]).await;
    h.join("A", &[v.id()]).await;
    h.join("B", &[v.id()]).await;
    m.join("B", &[v.id()]).await;
    let url = v.listen().await;
    for device in [&h, &m] {
        device.keep_dialing(v.id(), &url);
    }
    wait_until("both connections", || {
        [&h, &m].iter().all(|d| v.manager.connection(&d.id()).is_some() && d.manager.connection(&v.id()).is_some())
    })
    .await;
    (v, h, m)
}

fn to_victim(h: &TestDevice, v: &TestDevice) -> Connection {
    h.manager.connection(&v.id()).expect("h is connected to v")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_in_group_a_cannot_call_or_read_group_b() {
    let (v, h, m) = set_up().await;
    m.engine("B").put("secret", b"for B only").await.unwrap();
    v.engine("B").put("plan", b"also for B").await.unwrap();
    wait_for_value(v.engine("B"), "secret", Some(b"for B only")).await;
    wait_for_value(m.engine("B"), "plan", Some(b"also for B")).await;
    // Written after B's data: once it reached h, sync with h has run since.
    v.engine("A").put("shared", b"for A").await.unwrap();
    wait_for_value(h.engine("A"), "shared", Some(b"for A")).await;

    // h calls A's RPCs fine, and B's are refused as if they did not exist.
    let to_v = to_victim(&h, &v);
    let everything = ListChanges { since: 0, limit: 1000, skip_mine: false };
    let a_batch: ChangeBatch = to_v.emit("listChanges_A", &everything).await.unwrap();
    assert!(a_batch.changes.iter().any(|c| c.key == "shared"), "{a_batch:?}");
    let listed = to_v.emit::<_, ChangeBatch>("listChanges_B", &everything).await;
    assert!(refused_with(&listed, RemoteErrorCode::UnknownMethod), "{listed:?}");
    let info = to_v.emit::<_, NetworkInfo>("getNetworkInfo_B", &()).await;
    assert!(refused_with(&info, RemoteErrorCode::UnknownMethod), "{info:?}");
    let notice = to_v.emit::<_, ()>("notifyOfChanges_B", &ChangeNotice { head: 1 }).await;
    assert!(refused_with(&notice, RemoteErrorCode::UnknownMethod), "{notice:?}");

    // Nothing of B reached h's copy, and v never treats h as a member of B.
    for key in ["secret", "plan"] {
        assert_eq!(h.engine("B").get(key).await.unwrap(), None, "h read B's {key}");
    }
    h.engine("B").put("planted", b"x").await.unwrap();
    m.engine("B").put("later", b"y").await.unwrap();
    wait_for_value(v.engine("B"), "later", Some(b"y")).await;
    assert_eq!(v.engine("B").get("planted").await.unwrap(), None, "h's write got into B");
    for (device, peer) in [(&v, &h), (&h, &v)] {
        let status = device.manager.status();
        let b = status.groups.iter().find(|g| g.group.as_str() == "B").unwrap();
        assert!(b.members.iter().filter(|s| s.device == peer.id()).all(|s| !s.ready), "{b:?}");
        assert!(b.sync.iter().all(|p| p.device != peer.id()), "B synced with {:?}: {b:?}", peer.id());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_altered_device_message_is_refused_and_never_delivered() {
    let (v, h, m) = set_up().await;
    let mut inbox = v.manager.device_messages(KIND);
    let to_v = to_victim(&h, &v);
    let send = |message: DeviceMessage| {
        let to_v = to_v.clone();
        async move { to_v.emit::<_, ()>("peers:deviceMessage", &message).await }
    };
    let write = |keys: &peers_sdk::DeviceKeys, payload: &[u8]| {
        DeviceMessage::new(keys, v.id(), KIND, payload.to_vec(), now_ms(), 10_000, 2).unwrap()
    };

    // h signs with its own key but claims m wrote it.
    let mut impersonation = write(&h.keys, b"from m, honestly");
    impersonation.from = m.id();
    // h claims m wrote it and gives m's key, but can only sign with its own.
    let mut stolen_key = impersonation.clone();
    stolen_key.from_key = m.keys.signing_public().to_bytes();
    // A genuine message of m's that h carries, with its body changed on the way.
    let genuine = write(&m.keys, b"pay 10");
    let mut altered = genuine.clone();
    altered.payload = b"pay 1000".to_vec();
    // ... or with its expiry pushed back so it lives longer.
    let mut extended = genuine.clone();
    extended.expires_ms += 60_000;
    for (what, forged) in [
        ("an impersonation", impersonation),
        ("a stolen key", stolen_key),
        ("an altered body", altered),
        ("an extended life", extended),
    ] {
        let refused = send(forged).await;
        assert!(refused_with(&refused, RemoteErrorCode::Handler), "{what} was not refused: {refused:?}");
        let Err(peers_sdk::Error::Remote(error)) = &refused else { unreachable!() };
        assert!(error.message.contains("forged"), "{what}: {error}");
    }

    // The genuine message, carried unchanged by h, is delivered; its replay is not.
    send(genuine.clone()).await.unwrap();
    let replayed = send(genuine.clone()).await;
    assert!(refused_with(&replayed, RemoteErrorCode::Handler), "a replay was accepted: {replayed:?}");
    // A kind nobody on v receives is refused as busy, not dropped silently.
    let unwanted = DeviceMessage::new(&h.keys, v.id(), "nobody.listens", vec![], now_ms(), 10_000, 2).unwrap();
    let refused = send(unwanted).await;
    assert!(refused_with(&refused, RemoteErrorCode::Busy), "{refused:?}");
    // And h's own messages still get through.
    h.manager.send_device_message(v.id(), KIND, b"h's own".to_vec()).await.unwrap();

    let mut delivered = Vec::new();
    for _ in 0..2 {
        let message = tokio::time::timeout(WAIT, inbox.recv()).await.unwrap().unwrap();
        delivered.push((message.from, message.payload));
    }
    assert_eq!(delivered, [(m.id(), b"pay 10".to_vec()), (h.id(), b"h's own".to_vec())]);
    assert!(inbox.try_recv().is_err(), "a refused message was delivered");
}
