//! `Device::builder`: an application's device over real socket.io listeners on
//! loopback — peers added in one call, a custom trust policy, removal, and
//! advertised URLs that are never `0.0.0.0`.

use std::sync::Arc;
use std::time::Duration;

use peers_device::sync::{EngineOptions, SqliteSyncEngine};
use peers_device::{ConnectionClass, Device, GroupId};
use peers_sdk::{DeviceInfo, DeviceKeys, TrustLevel};

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
