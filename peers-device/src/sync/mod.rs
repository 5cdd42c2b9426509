//! Per-group sync: the [`SyncGroup`] trait applications implement (the original
//! design's `IPeerDevice`), the [`PeerDevice`] view of a remote member, and the
//! reference engine, [`SqliteSyncEngine`].
//!
//! The protocol is pull-based and incremental:
//!
//! ```text
//!  A (writes)                                   B
//!  put(k, v) ─ seq 7 ─┐
//!                     └ notifyOfChanges_{g}({head: 7}) ──▶  wakes B's puller for A
//!                         ◀── listChanges_{g}({since: 4, limit}) ── (4 = B's checkpoint for A)
//!  {changes: [5, 6, 7], head: 7, more: false} ──────────▶  apply (last writer wins),
//!                                                          checkpoint(A) = 7
//! ```
//!
//! Notifications are batched (at most one per 20 ms, and none to the member a
//! change came from), pulls are paged ([`SyncLimits`]) with the next page asked
//! for while one is applied, each page in one transaction with its checkpoint, a
//! puller leaves out its own changes ([`ListChanges::skip_mine`]) except in the
//! periodic full re-read, which is the safety net, and a peer whose log went
//! backwards is re-read from the start.

mod clock;
mod engine;
mod rows;
mod rpc;
mod store;
#[cfg(test)]
mod store_tests;
mod types;

use std::sync::Arc;

use async_trait::async_trait;
use peers_sdk::DeviceId;

pub use engine::{EngineOptions, PeerSyncStatus, SqliteSyncEngine};
pub use rpc::{ConnectionPeer, expose_group, hide_group};
pub use store::{Applied, Entry};
pub use types::{Change, ChangeBatch, ChangeNotice, ListChanges, MAX_VALUE_LEN, NetworkInfo, SyncLimits};

use crate::error::Result;
use crate::group::GroupId;

/// A group's data as this device serves it to the group's other members.
///
/// The connection manager registers these three calls as the group's RPCs on
/// every connection to a member (and only to members), with `from` set to the
/// authenticated peer, and tells the engine when a member's side is ready or gone.
#[async_trait]
pub trait SyncGroup: Send + Sync + 'static {
    /// The group.
    fn group_id(&self) -> &GroupId;

    /// `listChanges_{groupId}`: changes after `request.since`, paged.
    async fn list_changes(&self, from: &DeviceId, request: ListChanges) -> Result<ChangeBatch>;

    /// `getNetworkInfo_{groupId}`: a summary to compare with.
    async fn get_network_info(&self, from: &DeviceId) -> Result<NetworkInfo>;

    /// `notifyOfChanges_{groupId}`: `from` has changes up to `notice.head`.
    async fn notify_of_changes(&self, from: &DeviceId, notice: ChangeNotice) -> Result<()>;

    /// A member's side of the group is ready (both sides registered the RPCs),
    /// or it moved to another link: `peer` replaces any handle given before.
    ///
    /// For one member, the manager calls `peer_ready` and
    /// [`peer_gone`](Self::peer_gone) one at a time, in the order it decided
    /// them, and waits for each before the member's next hand-off: return
    /// promptly (spawn the work), and never wait here on the manager.
    async fn peer_ready(&self, peer: Arc<dyn PeerDevice>);

    /// A member is no longer reachable through `peer_ready`'s handle.
    async fn peer_gone(&self, device: &DeviceId);

    /// How syncing with each ready member is going, for status displays. The
    /// default reports nothing.
    fn sync_status(&self) -> Vec<PeerSyncStatus> {
        Vec::new()
    }
}

/// Another member of a group, as this device calls it (`IPeerDevice`).
#[async_trait]
pub trait PeerDevice: Send + Sync + 'static {
    /// The member.
    fn device_id(&self) -> DeviceId;

    /// Calls its `listChanges`.
    async fn list_changes(&self, request: ListChanges) -> Result<ChangeBatch>;

    /// Calls its `getNetworkInfo`.
    async fn get_network_info(&self) -> Result<NetworkInfo>;

    /// Calls its `notifyOfChanges`.
    async fn notify_of_changes(&self, notice: ChangeNotice) -> Result<()>;
}
