//! Dialing through the manager: a slow better dialer does not delay a working
//! worse one, is retried on its backoff, and takes over once it succeeds; groups
//! and memberships change while connections are up.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use peers_device::{ConnectionClass, DialError, Dialer, ManagerEvent};
use peers_sdk::rpc::RemoteErrorCode;
use peers_sdk::socket::{Locality, TransportKind};
use peers_sdk::{BoxSocket, DeviceId};

/// Dials `target` by handing the far end of a posing pair to its manager.
struct PairDialer {
    name: &'static str,
    class: ConnectionClass,
    transport: TransportKind,
    locality: Locality,
    target: peers_device::ConnectionManager,
    /// Attempts before this one hang until the dialer's timeout.
    hang_first: usize,
    attempts: AtomicUsize,
}

#[async_trait]
impl Dialer for PairDialer {
    fn name(&self) -> &str {
        self.name
    }
    fn class_for(&self, device: &DeviceId) -> Option<ConnectionClass> {
        (*device == self.target.device_id()).then_some(self.class)
    }
    fn timeout(&self) -> Duration {
        Duration::from_millis(300)
    }
    async fn dial(&self, _device: DeviceId) -> Result<BoxSocket, DialError> {
        if self.attempts.fetch_add(1, Ordering::SeqCst) < self.hang_first {
            std::future::pending::<()>().await;
        }
        let (near, far) = pair(self.transport.clone(), self.locality);
        let target = self.target.clone();
        tokio::spawn(async move { target.accept(far).await });
        Ok(near)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_better_dialer_is_retried_and_takes_over_from_a_working_one() {
    let (mut a, mut b) = (node_with("a", |c| c.backoff.initial = Duration::from_millis(200)), node("b"));
    a.join("g", &[b.id]).await;
    b.join("g", &[a.id]).await;
    let webrtc = Arc::new(PairDialer {
        name: "fake-webrtc",
        class: ConnectionClass::WebRtcDirect,
        transport: TransportKind::WebRtc,
        locality: Locality::Internet,
        target: b.manager.clone(),
        hang_first: 2,
        attempts: AtomicUsize::new(0),
    });
    let internet = Arc::new(PairDialer {
        name: "fake-internet",
        class: ConnectionClass::InternetDirect,
        transport: TransportKind::SocketIo,
        locality: Locality::Internet,
        target: b.manager.clone(),
        hang_first: 0,
        attempts: AtomicUsize::new(0),
    });
    a.manager.add_dialer(webrtc.clone());
    a.manager.add_dialer(internet.clone());
    let mut events = a.manager.events();
    a.manager.keep_connected(b.id);

    // The internet connection carries traffic while WebRTC hangs.
    let first = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(ManagerEvent::Connected { class, .. }) = events.recv().await {
                return class;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(first, ConnectionClass::InternetDirect);
    a.engine("g").put("k", b"v").await.unwrap();
    wait_value(b.engine("g"), "k", Some(b"v")).await;

    // WebRTC is retried after its timeouts and takes over.
    wait_until("WebRTC to take over", || {
        a.manager.status().active(&b.id).is_some_and(|c| c.class == ConnectionClass::WebRtcDirect)
    })
    .await;
    assert!(webrtc.attempts.load(Ordering::SeqCst) >= 3, "WebRTC was not retried");
    let dial_failures = a
        .manager
        .status()
        .history
        .iter()
        .filter(|h| matches!(&h.event, ManagerEvent::DialFailed { dialer, .. } if dialer == "fake-webrtc"))
        .count();
    assert_eq!(dial_failures, 2);
    // Once the best class is held, the worse dialer is not tried again.
    let internet_attempts = internet.attempts.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(internet.attempts.load(Ordering::SeqCst), internet_attempts);
    a.engine("g").put("k", b"v2").await.unwrap();
    wait_value(b.engine("g"), "k", Some(b"v2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_members_change_while_connected() {
    let (mut a, mut b) = (node("a"), node("b"));
    link_local(&a, &b).await;
    // b is in "late" already; a joins it while connected.
    b.join("late", &[a.id]).await;
    a.join("late", &[b.id]).await;
    a.engine("late").put("x", b"1").await.unwrap();
    wait_value(b.engine("late"), "x", Some(b"1")).await;

    // a removes b from the group: b can no longer call its RPCs, and new writes
    // stay on a.
    let group = peers_device::GroupId::new("late").unwrap();
    a.manager.remove_member(&group, &b.id).await.unwrap();
    let to_a = b.manager.connection(&a.id).unwrap();
    let err = to_a.emit::<_, ()>("getNetworkInfo_late", &()).await.unwrap_err();
    assert!(matches!(&err, peers_sdk::Error::Remote(e) if e.code == RemoteErrorCode::UnknownMethod), "{err}");
    a.engine("late").put("x", b"2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.engine("late").get("x").await.unwrap(), Some(b"1".to_vec()));

    // Added back, sync resumes.
    a.manager.add_member(&group, b.id).await.unwrap();
    wait_value(b.engine("late"), "x", Some(b"2")).await;
    // And a group removed entirely stops being served.
    a.manager.remove_group(&group).await.unwrap();
    let err = to_a.emit::<_, ()>("getNetworkInfo_late", &()).await.unwrap_err();
    assert!(matches!(&err, peers_sdk::Error::Remote(e) if e.code == RemoteErrorCode::UnknownMethod), "{err}");
}
