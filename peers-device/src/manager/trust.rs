//! Who may reach this device, and dropping a device that is no longer
//! trusted, at run time.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use peers_sdk::{CloseCode, CloseReason, Connection, DeviceId};
use tokio::sync::watch;
use tracing::debug;

use super::api::{ConnectionManager, lock};

impl ConnectionManager {
    /// Whether `device` is in this device's trust set: a member of one of its
    /// groups, kept connected ([`keep_connected`](Self::keep_connected)), or
    /// connected now (a connection is only up once the handshake and the trust
    /// policy accepted the peer). A lookup by device id, no handshake.
    pub fn trusts(&self, device: &DeviceId) -> bool {
        let state = lock(&self.inner.state);
        state.wanted.contains_key(device)
            || state.devices.contains_key(device)
            || state.groups.values().any(|group| group.members.contains(device))
    }

    /// The trust set ([`trusts`](Self::trusts)) as it is now: what a
    /// signaling link gives the server as this device's allow list.
    pub fn trust_set(&self) -> BTreeSet<DeviceId> {
        let state = lock(&self.inner.state);
        let mut set: BTreeSet<DeviceId> = state.wanted.keys().chain(state.devices.keys()).copied().collect();
        set.extend(state.groups.values().flat_map(|group| group.members.iter().copied()));
        set
    }

    /// Changes whenever the trust set may have changed.
    pub fn trust_changes(&self) -> watch::Receiver<u64> {
        self.inner.trust_changed.subscribe()
    }

    /// The check every signal and relay request from a signaling server passes
    /// before anything is done with it: `true` if `from` is trusted
    /// ([`trusts`](Self::trusts)); otherwise the refusal is counted (in
    /// [`status`](Self::status)'s `strangers_refused`), logged at debug, and the
    /// caller drops the request unanswered, so that a stranger gets no ICE
    /// candidate, no WebRTC session, no relay and no handshake message.
    pub(crate) fn admits(&self, from: &DeviceId, what: &str) -> bool {
        if self.trusts(from) {
            return true;
        }
        let refused = self.inner.strangers_refused.fetch_add(1, Ordering::Relaxed) + 1;
        debug!(%from, what, refused, "dropped a request from a device outside the trust set");
        false
    }

    /// Stops keeping `device` connected and closes every connection to it
    /// (the active one and any standby or retiring ones). Its groups are not
    /// touched: remove it from them with
    /// [`remove_member`](Self::remove_member) first, and stop trusting it in
    /// the connection's trust policy so that it cannot simply connect again.
    pub async fn disconnect(&self, device: &DeviceId, why: &str) {
        self.forget(device);
        let connections: Vec<Connection> = lock(&self.inner.state)
            .devices
            .get(device)
            .map(|links| links.links.iter().map(|link| link.connection.clone()).collect())
            .unwrap_or_default();
        for connection in connections {
            connection.close(CloseReason::new(CloseCode::Refused, why)).await;
        }
    }
}
