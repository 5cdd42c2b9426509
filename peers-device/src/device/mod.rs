//! [`Device`]: an application's device in a dozen lines — keys, trust, groups,
//! a listener, the dialers and a signaling server, wired with defaults by
//! [`Device::builder`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use peers_device::sync::{EngineOptions, SqliteSyncEngine};
//! use peers_device::{Device, GroupId};
//! use peers_sdk::{DeviceInfo, DeviceKeys};
//!
//! # async fn run(peer: DeviceInfo) -> peers_device::Result<()> {
//! let keys = Arc::new(DeviceKeys::generate("alice")?);
//! let notes = GroupId::new("notes")?;
//! let engine = SqliteSyncEngine::open("notes.db".into(), notes.clone(), keys.device_id(), EngineOptions::default()).await?;
//! let device = Device::builder()
//!     .keys(keys)
//!     .listen("0.0.0.0:0".parse().unwrap())
//!     .signaling("https://signal.example.org/")
//!     .group(Arc::new(engine.clone()))
//!     .build()
//!     .await?;
//! // Another device, known from its share code (`DeviceInfo::from_share_code`).
//! device.add_peer(&peer, &[notes]).await?;
//! device.connected(&peer.device_id).await;
//! engine.put("hello", b"world").await?;
//! # Ok(()) }
//! ```

pub(crate) mod advertise;
mod builder;

use std::sync::Arc;

use peers_sdk::{DeviceId, DeviceInfo, DeviceKeys, TrustLevel, TrustStore};
use tokio::sync::{broadcast, watch};

pub use builder::DeviceBuilder;

use crate::ConnectionClass;
use crate::error::Result;
use crate::group::GroupId;
use crate::manager::ConnectionManager;
use crate::netmon::NetworkMonitor;
use crate::transports::{SignalingServerLink, SocketIoDialer, SocketIoListener, WebRtcListener};

/// A running device: a [`ConnectionManager`] with its transports, the groups
/// it syncs and the devices it trusts. Cloning shares it.
///
/// What it does not do: keep anything on disk (trusted devices and groups are
/// the application's to store and add again at start; `peers run` keeps them
/// in its data directory), or accept a device nobody added or the trust
/// policy vouches for.
#[derive(Clone, Debug)]
pub struct Device {
    inner: Arc<DeviceInner>,
}

#[derive(Debug)]
struct DeviceInner {
    keys: Arc<DeviceKeys>,
    info: DeviceInfo,
    manager: ConnectionManager,
    /// The devices added with `add_peer`.
    peers: TrustStore,
    dialer: SocketIoDialer,
    groups: Vec<GroupId>,
    /// The listener's URL, when it listens.
    listen_url: Option<String>,
    /// Taken by `shutdown`.
    listener: tokio::sync::Mutex<Option<SocketIoListener>>,
    signaling: Option<SignalingParts>,
    _network: Option<NetworkMonitor>,
}

/// What a signaling server adds: the registration and WebRTC through it.
#[derive(Debug)]
struct SignalingParts {
    link: Arc<SignalingServerLink>,
    _webrtc: WebRtcListener,
}

impl Device {
    /// Starts building a device.
    pub fn builder() -> DeviceBuilder {
        DeviceBuilder::new()
    }

    /// This device's id.
    pub fn id(&self) -> DeviceId {
        self.inner.keys.device_id()
    }

    /// This device as others see it: keys, user, and the URLs it advertises.
    /// Its [`to_share_code`](DeviceInfo::to_share_code) is what another device
    /// passes to [`add_peer`](Self::add_peer).
    pub fn info(&self) -> &DeviceInfo {
        &self.inner.info
    }

    /// This device's keys.
    pub fn keys(&self) -> &Arc<DeviceKeys> {
        &self.inner.keys
    }

    /// The connection manager, for RPCs of the application's own
    /// ([`on_connection`](ConnectionManager::on_connection)), device messages
    /// and status.
    pub fn manager(&self) -> &ConnectionManager {
        &self.inner.manager
    }

    /// The groups this device syncs.
    pub fn groups(&self) -> &[GroupId] {
        &self.inner.groups
    }

    /// The signaling registration, when a server was given.
    pub fn signaling(&self) -> Option<&Arc<SignalingServerLink>> {
        self.inner.signaling.as_ref().map(|s| &s.link)
    }

    /// Trusts `peer`, makes it a member of those of `groups` this device syncs,
    /// and, if it shares one of them (or `groups` is empty: a peer for the
    /// application's own RPCs), dials the URLs in its info and keeps it
    /// connected (through the signaling server too, when there is one). A
    /// peer whose groups are all foreign to this device is trusted, not
    /// dialed. Adding a device again updates its URLs and groups.
    pub async fn add_peer(&self, peer: &DeviceInfo, groups: &[GroupId]) -> Result<()> {
        let inner = &self.inner;
        let id = peer.device_id;
        inner.peers.set(id, TrustLevel::Trusted);
        let mut shared = groups.is_empty();
        for group in groups.iter().filter(|g| inner.groups.contains(g)) {
            inner.manager.add_member(group, id).await?;
            shared = true;
        }
        if !shared {
            return Ok(());
        }
        // The server learns the device may reach this one before it is dialed
        // (its answers would otherwise be taken for a stranger's).
        if let Some(signaling) = &inner.signaling {
            signaling.link.sync_allow().await;
        }
        if !peer.addresses.is_empty() {
            inner.dialer.set_urls(id, peer.addresses.clone());
        }
        if !peer.addresses.is_empty() || inner.signaling.is_some() {
            inner.manager.keep_connected(id);
        }
        Ok(())
    }

    /// Stops trusting `peer`: it is refused at the handshake from now on (even if
    /// the trust policy would vouch for it, until it is added again), dropped
    /// from every group, no longer dialed, and its connections are closed.
    pub async fn remove_peer(&self, peer: &DeviceId) -> Result<()> {
        let inner = &self.inner;
        inner.peers.set(*peer, TrustLevel::Untrusted);
        inner.manager.forget(peer);
        inner.dialer.set_urls(*peer, Vec::new());
        for group in &inner.groups {
            inner.manager.remove_member(group, peer).await?;
        }
        inner.manager.disconnect(peer, "no longer trusted").await;
        Ok(())
    }

    /// Waits until a connection to `peer` is active and returns its class. It
    /// waits as long as it takes: wrap it in a timeout.
    pub async fn connected(&self, peer: &DeviceId) -> ConnectionClass {
        let manager = &self.inner.manager;
        loop {
            // Subscribed before looking, so a connection made in between is seen.
            let mut events = manager.events();
            if let Some(active) = manager.status().active(peer) {
                return active.class;
            }
            match events.recv().await {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }

    /// The URL this device listens on, if it listens (as bound: for the URLs
    /// others dial, see [`info`](Self::info)).
    pub fn listen_url(&self) -> Option<&str> {
        self.inner.listen_url.as_deref()
    }

    /// Closes every connection and stops listening.
    pub async fn shutdown(&self) {
        self.inner.manager.shutdown().await;
        if let Some(listener) = self.inner.listener.lock().await.take() {
            listener.shutdown().await;
        }
    }
}

/// Tells the manager and the signaling link about each network change, until
/// the monitor stops.
pub(crate) async fn on_network_change(
    mut changes: watch::Receiver<u64>,
    manager: ConnectionManager,
    link: Option<Arc<SignalingServerLink>>,
) {
    while changes.changed().await.is_ok() {
        manager.network_changed();
        if let Some(link) = &link {
            link.network_changed();
        }
    }
}
