//! Trusted devices at run time: what `peers trust` and `peers untrust` do to a
//! running daemon, and what its start does for every device already trusted.

use peers_sdk::{DeviceInfo, TrustLevel, TrustStore};
use tokio::sync::Mutex;
use tracing::info;

use super::data_dir::DataDir;
use crate::error::Result;
use crate::group::GroupId;
use crate::manager::ConnectionManager;
use crate::transports::SocketIoDialer;

/// The daemon's view of whom it trusts: `trusted.json`, the handshake's trust
/// store, the groups' members in the manager, and the devices it keeps
/// connected, changed together.
#[derive(Debug)]
pub(super) struct Members {
    pub(super) data: DataDir,
    pub(super) trust: TrustStore,
    pub(super) manager: ConnectionManager,
    pub(super) dialer: SocketIoDialer,
    /// The groups this daemon syncs.
    pub(super) groups: Vec<GroupId>,
    /// Whether devices without URLs can be reached (through a signaling server).
    pub(super) signaling: bool,
    /// One change of `trusted.json` at a time.
    pub(super) writing: Mutex<()>,
}

impl Members {
    /// Lets `device` connect, makes it a member of those of `groups` this
    /// daemon syncs, and dials it if it shares any.
    pub(super) async fn admit(&self, device: &DeviceInfo, groups: &[GroupId]) -> Result<()> {
        let id = device.device_id;
        self.trust.set(id, TrustLevel::Trusted);
        let mut shared = false;
        for group in groups.iter().filter(|g| self.groups.contains(g)) {
            self.manager.add_member(group, id).await?;
            shared = true;
        }
        if !shared {
            return Ok(());
        }
        if !device.addresses.is_empty() {
            self.dialer.set_urls(id, device.addresses.clone());
        }
        if !device.addresses.is_empty() || self.signaling {
            self.manager.keep_connected(id);
        }
        Ok(())
    }

    /// Trusts the device in `share_code` as a member of `groups` (at least
    /// one), records it, and connects to it. Returns it and all its groups.
    pub(super) async fn trust(&self, share_code: &str, groups: &[GroupId]) -> Result<(DeviceInfo, Vec<GroupId>)> {
        let _writing = self.writing.lock().await;
        let info = self.data.trust(share_code, groups)?;
        let all: Vec<GroupId> = self
            .data
            .trusted()?
            .into_iter()
            .find(|t| t.info().is_ok_and(|i| i.device_id == info.device_id))
            .map(|t| t.groups)
            .unwrap_or_default();
        self.admit(&info, &all).await?;
        info!(device = %info.device_id, user = %info.user_id, groups = ?all, "device trusted");
        Ok((info, all))
    }

    /// Stops trusting `device` (id, unique id prefix, or share code): it is
    /// refused at the handshake from now on, dropped from every group, no
    /// longer dialed, and its connections are closed.
    pub(super) async fn untrust(&self, device: &str) -> Result<DeviceInfo> {
        let _writing = self.writing.lock().await;
        let info = self.data.untrust(device)?;
        let id = info.device_id;
        self.trust.remove(&id);
        self.manager.forget(&id);
        self.dialer.set_urls(id, Vec::new());
        for group in &self.groups {
            self.manager.remove_member(group, &id).await?;
        }
        self.manager.disconnect(&id, "no longer trusted").await;
        info!(device = %id, user = %info.user_id, "device no longer trusted; disconnected");
        Ok(info)
    }
}
