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

/// Whether a signaling registration is up.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkState {
    /// Connecting or registering.
    Connecting,
    /// Registered; signals and relays work.
    Registered,
    /// Not registered; the reason, and a retry follows on the backoff.
    Disconnected(String),
}

impl LinkState {
    /// A short name for status tables.
    pub fn name(&self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Registered => "registered",
            LinkState::Disconnected(_) => "disconnected",
        }
    }
}

/// A signaling registration, as `peers status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignalingStatus {
    /// The server registered with, or being tried.
    pub url: String,
    /// Registered or not.
    pub state: LinkState,
    /// When `state` last changed.
    pub since: SystemTime,
    /// The last failure (a refused registration, a connection that ended), if any.
    pub last_error: Option<String>,
}

/// Why calls to a device take the path they take.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PathStatus {
    /// The peer.
    pub device: DeviceId,
    /// The active connection's class, if connected.
    pub class: Option<ConnectionClass>,
    /// The last failure of each better way (`"webrtc: ICE failed ..."`,
    /// `"webrtc: silent for 3 s"`), or that nothing better was tried or failed.
    pub why: String,
}

/// The most notes kept per device (one per way, the oldest dropped).
const MAX_PATH_NOTES: usize = 8;
/// The longest reason kept in a note.
const MAX_NOTE_LEN: usize = 200;

/// The last failure of each way of reaching one device.
#[derive(Clone, Debug, Default)]
pub(crate) struct PathNotes(Vec<(String, ConnectionClass, String)>);

impl PathNotes {
    /// `way` (a dialer or transport name) that gives `class` failed for `reason`.
    pub(crate) fn record(&mut self, way: &str, class: ConnectionClass, mut reason: String) {
        if reason.len() > MAX_NOTE_LEN {
            let mut end = MAX_NOTE_LEN;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        self.0.retain(|(w, _, _)| w != way);
        if self.0.len() >= MAX_PATH_NOTES {
            self.0.remove(0);
        }
        self.0.push((way.to_owned(), class, reason));
    }

    /// A link of `class` came up: failures of ways no better than it explain nothing now.
    pub(crate) fn connected(&mut self, class: ConnectionClass) {
        self.0.retain(|(_, c, _)| *c < class);
    }

    /// The explanation for being on `class` (`None`: not connected).
    pub(crate) fn why(&self, class: Option<ConnectionClass>) -> String {
        let better: Vec<String> = self
            .0
            .iter()
            .filter(|(_, c, _)| class.is_none_or(|active| *c < active))
            .map(|(way, _, reason)| format!("{way}: {reason}"))
            .collect();
        match (class, better.is_empty()) {
            (None, true) => "not connected".to_owned(),
            (None, false) => format!("not connected; {}", better.join("; ")),
            (Some(_), true) => "best path found".to_owned(),
            (Some(_), false) => better.join("; "),
        }
    }
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
    /// For each peer connected or kept connected, why it is on its path.
    pub paths: Vec<PathStatus>,
    /// The signaling registrations.
    pub signaling: Vec<SignalingStatus>,
    /// Recent events, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Signals and relay requests dropped unanswered because their sender is
    /// outside this device's trust set, since the manager started.
    pub strangers_refused: u64,
}

impl ManagerStatus {
    /// The active connection to `device`, if any.
    pub fn active(&self, device: &DeviceId) -> Option<&ConnectionStatus> {
        self.connections.iter().find(|c| c.active && c.device == *device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionClass::{ServerRelay, WebRtcDirect, WebRtcRelayed};

    #[test]
    fn path_notes_explain_only_better_ways_and_forget_what_a_new_link_answers() {
        let mut notes = PathNotes::default();
        assert_eq!(notes.why(Some(ServerRelay)), "best path found");
        notes.record("webrtc", WebRtcDirect, "ICE failed, no relayed candidates".into());
        notes.record("server-relay", ServerRelay, "not registered".into());
        assert_eq!(notes.why(Some(ServerRelay)), "webrtc: ICE failed, no relayed candidates");
        assert_eq!(
            notes.why(None),
            "not connected; webrtc: ICE failed, no relayed candidates; server-relay: not registered"
        );
        notes.record("webrtc", WebRtcDirect, "x".repeat(1000));
        assert_eq!(notes.why(Some(WebRtcRelayed)).len(), "webrtc: ".len() + MAX_NOTE_LEN, "one note per way, bounded");
        notes.connected(WebRtcDirect);
        assert_eq!(notes.why(None), "not connected");
        for i in 0..20 {
            notes.record(&format!("way{i}"), WebRtcDirect, "down".into());
        }
        assert_eq!(notes.0.len(), MAX_PATH_NOTES);
    }
}
