//! Trusted devices at run time: what `peers trust` and `peers untrust` do to a
//! running daemon, and what its start does for every device already trusted.

use peers_sdk::DeviceInfo;
use tokio::sync::Mutex;
use tracing::info;

use super::data_dir::DataDir;
use crate::device::Device;
use crate::error::Result;
use crate::group::GroupId;

/// The daemon's view of whom it trusts: `trusted.json` and the device's peers
/// (trust, group membership, dialing), changed together.
#[derive(Debug)]
pub(super) struct Members {
    pub(super) data: DataDir,
    pub(super) device: Device,
    /// One change of `trusted.json` at a time.
    pub(super) writing: Mutex<()>,
}

impl Members {
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
        self.device.add_peer(&info, &all).await?;
        info!(device = %info.device_id, user = %info.user_id, groups = ?all, "device trusted");
        Ok((info, all))
    }

    /// Stops trusting `device` (id, unique id prefix, or share code): it is
    /// refused at the handshake from now on, dropped from every group, no
    /// longer dialed, and its connections are closed.
    pub(super) async fn untrust(&self, device: &str) -> Result<DeviceInfo> {
        let _writing = self.writing.lock().await;
        let info = self.data.untrust(device)?;
        self.device.remove_peer(&info.device_id).await?;
        info!(device = %info.device_id, user = %info.user_id, "device no longer trusted; disconnected");
        Ok(info)
    }
}
