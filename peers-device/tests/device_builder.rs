//! `Device::builder`: an application's device over real socket.io listeners on
//! loopback — peers added in one call, a custom trust policy, removal, and
//! advertised URLs that are never `0.0.0.0`.

use std::sync::Arc;
use std::time::Duration;

use peers_device::sync::{
    ChangeBatch, ChangeNotice, EngineOptions, ListChanges, NetworkInfo, PeerDevice, SqliteSyncEngine, SyncGroup,
};
use peers_device::{ConnectionClass, Device, GroupId};
use peers_sdk::{CloseCode, CloseReason, DeviceId, DeviceInfo, DeviceKeys, TrustLevel};

const WAIT: Duration = Duration::from_secs(15);

async fn device(
    name: &str,
    group: &GroupId,
    tune: impl FnOnce(peers_device::DeviceBuilder) -> peers_device::DeviceBuilder,
) -> (Device, SqliteSyncEngine) {
    let keys = Arc::new(DeviceKeys::generate(name).unwrap());
    let engine = SqliteSyncEngine::in_memory(group.clone(), keys.device_id(), EngineOptions::default()).await.unwrap();
    let builder = Device::builder().keys(keys).listen("127.0.0.1:0".parse().unwrap()).group(Arc::new(engine.clone()));
    (tune(builder).build().await.unwrap(), engine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_vouches_for_devices_nobody_added_and_removal_overrides_it() {
    let group = GroupId::new("g").unwrap();
    // The hub trusts every device of user "family" without adding it.
    let family = |info: &DeviceInfo| if info.user_id == "family" { TrustLevel::Trusted } else { TrustLevel::Unknown };
    let (hub, _) = device("hub", &group, |b| b.trust_policy(family)).await;
    let (member, _) = device("family", &group, |b| b).await;
    let (stranger, _) = device("stranger", &group, |b| b).await;

    member.add_peer(hub.info(), std::slice::from_ref(&group)).await.unwrap();
    stranger.add_peer(hub.info(), std::slice::from_ref(&group)).await.unwrap();
    let class = tokio::time::timeout(WAIT, hub.connected(&member.id())).await.expect("the vouched-for device got in");
    assert_eq!(class, ConnectionClass::Local);

    // The stranger keeps dialing and keeps being refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(hub.manager().status().active(&stranger.id()).is_none(), "a device nobody vouched for got in");

    // Removed: disconnected, and refused although the policy would vouch for it.
    hub.remove_peer(&member.id()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(hub.manager().status().active(&member.id()).is_none(), "a removed device is still (or again) connected");
    for d in [hub, member, stranger] {
        d.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_on_every_interface_advertises_dialable_urls_and_is_reached_through_them() {
    let group = GroupId::new("g").unwrap();
    let (wide, wide_engine) = device("wide", &group, |b| b.listen("0.0.0.0:0".parse().unwrap())).await;
    let (other, other_engine) = device("other", &group, |b| b).await;
    let urls = &wide.info().addresses;
    assert!(!urls.is_empty());
    for url in urls {
        assert!(!url.contains("0.0.0.0"), "advertised {url}");
        assert!(!url.contains(":0/"), "advertised the port asked for, not the one bound: {url}");
    }
    // The share code carries the URLs; the other device dials them.
    let code = wide.info().to_share_code();
    other.add_peer(&DeviceInfo::from_share_code(&code).unwrap(), std::slice::from_ref(&group)).await.unwrap();
    wide.add_peer(other.info(), std::slice::from_ref(&group)).await.unwrap();
    tokio::time::timeout(WAIT, other.connected(&wide.id())).await.expect("reached through an advertised URL");

    let mut arriving = other_engine.subscribe();
    wide_engine.put("k", b"v").await.unwrap();
    tokio::time::timeout(WAIT, async { while arriving.recv().await.is_ok_and(|c| c.key != "k") {} }).await.unwrap();
    assert_eq!(other_engine.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    wide.shutdown().await;
    other.shutdown().await;
}

#[tokio::test]
async fn a_device_without_keys_is_a_config_error() {
    let err = Device::builder().build().await.unwrap_err();
    assert!(matches!(err, peers_device::Error::Config { field: "keys", .. }), "{err}");
}

/// An application's group that takes its time to let a member go, as one
/// doing its own clean-up there would.
struct SlowToLetGo(SqliteSyncEngine);

#[async_trait::async_trait]
impl SyncGroup for SlowToLetGo {
    fn group_id(&self) -> &GroupId {
        self.0.group_id()
    }
    async fn list_changes(&self, from: &DeviceId, request: ListChanges) -> peers_device::Result<ChangeBatch> {
        self.0.list_changes(from, request).await
    }
    async fn get_network_info(&self, from: &DeviceId) -> peers_device::Result<NetworkInfo> {
        self.0.get_network_info(from).await
    }
    async fn notify_of_changes(&self, from: &DeviceId, notice: ChangeNotice) -> peers_device::Result<()> {
        self.0.notify_of_changes(from, notice).await
    }
    async fn peer_ready(&self, peer: Arc<dyn PeerDevice>) {
        self.0.peer_ready(peer).await;
    }
    async fn peer_gone(&self, device: &DeviceId) {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        self.0.peer_gone(device).await;
    }
}

/// The link drops and the devices dial again at once, while each group is
/// still letting the member of the old link go: the group hears of the new
/// link after that, not before, and goes on syncing over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_slow_to_let_a_link_go_still_syncs_over_the_next_one() {
    let group = GroupId::new("g").unwrap();
    let mut ends = Vec::new();
    for name in ["left", "right"] {
        let keys = Arc::new(DeviceKeys::generate(name).unwrap());
        let engine =
            SqliteSyncEngine::in_memory(group.clone(), keys.device_id(), EngineOptions::default()).await.unwrap();
        let builder = Device::builder().keys(keys).listen("127.0.0.1:0".parse().unwrap());
        let device = builder.group(Arc::new(SlowToLetGo(engine.clone()))).build().await.unwrap();
        ends.push((device, engine));
    }
    let ((left, left_engine), (right, right_engine)) = (&ends[0], &ends[1]);
    left.add_peer(right.info(), std::slice::from_ref(&group)).await.unwrap();
    right.add_peer(left.info(), std::slice::from_ref(&group)).await.unwrap();
    let sync = |round: &'static str| async move {
        for (from, to) in [(left_engine, right_engine), (right_engine, left_engine)] {
            let key = format!("{round}-{}", from.info().device);
            let mut arriving = to.subscribe();
            from.put(&key, b"v").await.unwrap();
            tokio::time::timeout(WAIT, async { while arriving.recv().await.is_ok_and(|c| c.key != key) {} })
                .await
                .unwrap_or_else(|_| panic!("{key} did not arrive"));
        }
    };
    tokio::time::timeout(WAIT, left.connected(&right.id())).await.unwrap();
    sync("first").await;

    let first = left.manager().connection(&right.id()).unwrap();
    first.close(CloseReason::new(CloseCode::TransportFailure, "the test cut the link")).await;
    let next = tokio::time::timeout(WAIT, left.manager().active_change(&right.id(), Some(&first))).await.unwrap();
    let next = match next {
        Some(next) => next,
        None => tokio::time::timeout(WAIT, left.manager().active_change(&right.id(), None)).await.unwrap().unwrap(),
    };
    assert_ne!(next.session_id(), first.session_id());
    // Past any letting-go still under way.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sync("after the cut").await;
    for (device, _) in ends {
        device.shutdown().await;
    }
}
