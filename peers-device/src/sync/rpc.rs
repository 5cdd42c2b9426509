//! A group over a `Connection`: its three RPCs registered for a member
//! ([`expose_group`]) and a member called through them ([`ConnectionPeer`]).

use std::sync::Arc;

use async_trait::async_trait;
use peers_sdk::rpc::RemoteError;
use peers_sdk::{Connection, DeviceId};

use super::{ChangeBatch, ChangeNotice, ListChanges, NetworkInfo, PeerDevice, SyncGroup};
use crate::error::{Error, Result};
use crate::group::GroupId;

/// Registers `group`'s RPCs (`listChanges_`, `getNetworkInfo_`, `notifyOfChanges_`
/// with the group id) on `connection`, answering as `group` would for the
/// connection's authenticated peer. Call it only for a peer that is a member: the
/// RPCs of groups it is not in are simply not there for it to call.
pub fn expose_group(connection: &Connection, group: Arc<dyn SyncGroup>) {
    let peer = connection.remote().device_id;
    let id = group.group_id().clone();
    let engine = group.clone();
    connection.expose_rpc(&id.list_changes_method(), move |request: ListChanges| {
        let engine = engine.clone();
        async move { engine.list_changes(&peer, request).await.map_err(RemoteError::handler) }
    });
    let engine = group.clone();
    connection.expose_rpc(&id.network_info_method(), move |(): ()| {
        let engine = engine.clone();
        async move { engine.get_network_info(&peer).await.map_err(RemoteError::handler) }
    });
    let engine = group;
    connection.expose_rpc(&id.notify_method(), move |notice: ChangeNotice| {
        let engine = engine.clone();
        async move { engine.notify_of_changes(&peer, notice).await.map_err(RemoteError::handler) }
    });
}

/// Removes `group`'s RPCs from `connection` (the peer left the group, or this
/// device did).
pub fn hide_group(connection: &Connection, group: &GroupId) {
    connection.remove_rpc(&group.list_changes_method());
    connection.remove_rpc(&group.network_info_method());
    connection.remove_rpc(&group.notify_method());
}

/// A member of `group` reached over a `Connection`.
#[derive(Debug, Clone)]
pub struct ConnectionPeer {
    connection: Connection,
    group: GroupId,
}

impl ConnectionPeer {
    /// The member at the other end of `connection`.
    pub fn new(connection: Connection, group: GroupId) -> Self {
        ConnectionPeer { connection, group }
    }

    fn failed(&self, source: peers_sdk::Error) -> Error {
        Error::Peer { device: self.connection.remote().device_id, source }
    }
}

#[async_trait]
impl PeerDevice for ConnectionPeer {
    fn device_id(&self) -> DeviceId {
        self.connection.remote().device_id
    }

    async fn list_changes(&self, request: ListChanges) -> Result<ChangeBatch> {
        self.connection.emit(&self.group.list_changes_method(), &request).await.map_err(|e| self.failed(e))
    }

    async fn get_network_info(&self) -> Result<NetworkInfo> {
        self.connection.emit(&self.group.network_info_method(), &()).await.map_err(|e| self.failed(e))
    }

    async fn notify_of_changes(&self, notice: ChangeNotice) -> Result<()> {
        self.connection.emit(&self.group.notify_method(), &notice).await.map_err(|e| self.failed(e))
    }
}
