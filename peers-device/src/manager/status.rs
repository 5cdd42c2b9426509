//! What the manager reports: a [`ManagerStatus`] snapshot and a stream of
//! [`ManagerEvent`]s. Both are plain data, so applications and the `peers status`
//! command can answer "am I direct or relayed?" without reading logs.

use std::time::{Duration, SystemTime};

use peers_sdk::{DeviceId, PathInfo};

use super::class::ConnectionClass;
use crate::group::GroupId;
use crate::sync::PeerSyncStatus;

/// Something that happened to the manager's connections or groups.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManagerEvent {
    /// A connection to `device` was verified and added.
    Connected {
        /// The peer.
        device: DeviceId,
        /// Its class.
        class: ConnectionClass,
        /// The transport's name (`socket.io`, `webrtc`, ...).
        transport: String,
    },
    /// Traffic to `device` moved to a connection of class `to`.
    Switched {
        /// The peer.
        device: DeviceId,
        /// The class of the connection given up.
        from: ConnectionClass,
        /// The class of the connection now used.
        to: ConnectionClass,
    },
    /// A connection to `device` closed.
    Closed {
        /// The peer.
        device: DeviceId,
        /// Its class.
        class: ConnectionClass,
        /// Why.
        reason: String,
    },
    /// A connection was refused or dropped to respect the connection limit.
    Evicted {
        /// The peer whose connection was closed (or refused).
        device: DeviceId,
        /// The class of that connection.
        class: ConnectionClass,
    },
    /// Both sides registered `group`'s RPCs: sync with `device` can run.
    GroupReady {
        /// The group.
        group: GroupId,
        /// The peer.
        device: DeviceId,
    },
    /// This device's network changed; connections are being probed.
    NetworkChanged,
    /// A dial attempt failed.
    DialFailed {
        /// The device dialed.
        device: DeviceId,
        /// The dialer's name.
        dialer: String,
        /// Why.
        reason: String,
    },
}

/// A history entry: an event and when it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When.
    pub at: SystemTime,
    /// What.
    pub event: ManagerEvent,
}

/// One verified connection.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectionStatus {
    /// The peer.
    pub device: DeviceId,
    /// Its class.
    pub class: ConnectionClass,
    /// The transport's name.
    pub transport: String,
    /// The path, when the transport knows it (candidate types, RTT).
    pub path: Option<PathInfo>,
    /// The peer's address, when the transport has one.
    pub peer_addr: Option<String>,
    /// Whether calls to the peer use this connection now.
    pub active: bool,
    /// Superseded, serving the calls still in flight before it closes.
    pub retiring: bool,
    /// Whether this device dialed it.
    pub dialed: bool,
    /// Whether frames carry our own AEAD (false only over a bound, encrypted transport).
    pub encrypted: bool,
    /// Smoothed ping round-trip time.
    pub latency: Option<Duration>,
    /// Share of failed pings recently.
    pub error_rate: f64,
    /// When it was verified.
    pub since: SystemTime,
}

/// One member of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberStatus {
    /// The member.
    pub device: DeviceId,
    /// Connected at all.
    pub connected: bool,
    /// Both sides registered the group's RPCs on the active connection.
    pub ready: bool,
}

/// One group.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GroupStatus {
    /// The group.
    pub group: GroupId,
    /// Its other members, as configured here.
    pub members: Vec<MemberStatus>,
    /// The sync engine's per-member progress.
    pub sync: Vec<PeerSyncStatus>,
}

/// A snapshot of everything the manager knows.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ManagerStatus {
    /// This device.
    pub device: DeviceId,
    /// Every connection, active ones first.
    pub connections: Vec<ConnectionStatus>,
    /// Every group.
    pub groups: Vec<GroupStatus>,
    /// Recent events, oldest first.
    pub history: Vec<HistoryEntry>,
}

impl ManagerStatus {
    /// The active connection to `device`, if any.
    pub fn active(&self, device: &DeviceId) -> Option<&ConnectionStatus> {
        self.connections.iter().find(|c| c.active && c.device == *device)
    }
}
