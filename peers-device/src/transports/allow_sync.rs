//! Keeping the signaling server's allow list for this device equal to the
//! manager's trust set ([`ConnectionManager::trust_set`]), so that a device
//! outside it cannot see this one come online, signal it, queue messages for
//! it or ask it for a relay (the server answers it as if this device did not
//! exist; `docs/signaling.md`, section 5a). It is the set the link already
//! filters incoming signals by, whatever the connection's `TrustPolicy`.
//!
//! ```text
//!  register ── with the trust set as it is then ──▶ server has it
//!  trust set changes (a kept device, a member, a connection) ──▶ "allow" with the new set
//!  before a signal or relay request to D ── D not in what the server has ──▶ "allow" first
//! ```
//!
//! The last rule is what lets a device that just trusted D dial it at once:
//! D's answer would otherwise reach a server that still counts D a stranger.

use std::time::Duration;

use peers_sdk::DeviceId;
use peers_signaling::{AllowList, SignalingClient};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::manager::ConnectionManager;

/// How long an `"allow"` request may take before the link goes on without it.
const ALLOW_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server holds, and where the trust set comes from.
#[derive(Debug)]
pub(crate) struct AllowSync {
    manager: ConnectionManager,
    /// The list the current registration holds at the server (`None`: no
    /// list, everyone may reach this device).
    synced: Mutex<Option<AllowList>>,
}

impl AllowSync {
    pub(crate) fn new(manager: ConnectionManager) -> Self {
        AllowSync { manager, synced: Mutex::new(None) }
    }

    /// The list to give the server now: the trust set, or no list when it
    /// is over the server's limit (then the device filters alone, as before).
    pub(crate) fn wanted(&self) -> Option<AllowList> {
        let set = self.manager.trust_set();
        match AllowList::new(set.iter().copied()) {
            Ok(list) => Some(list),
            Err(err) => {
                warn!(devices = set.len(), %err, "trust set too large for the server's allow list; sending none");
                None
            }
        }
    }

    /// A registration with `list` succeeded.
    pub(crate) async fn registered(&self, list: Option<AllowList>) {
        *self.synced.lock().await = list;
    }

    /// Sends the trust set if the server holds another list.
    pub(crate) async fn sync(&self, client: &SignalingClient) {
        let mut synced = self.synced.lock().await;
        let wanted = self.wanted();
        if *synced == wanted {
            return;
        }
        match tokio::time::timeout(ALLOW_TIMEOUT, client.set_allow(wanted.as_ref())).await {
            Ok(Ok(())) => {
                debug!(devices = wanted.as_ref().map_or(0, AllowList::len), "allow list sent to the server");
                *synced = wanted;
            }
            Ok(Err(err)) => warn!(%err, "the server refused the allow list"),
            Err(_) => warn!("the server did not answer the allow list in time"),
        }
    }

    /// Before signaling `to`: if the server does not let `to` reach this
    /// device yet, sends the trust set first (so `to`'s answer gets through).
    pub(crate) async fn before_contacting(&self, client: &SignalingClient, to: &DeviceId) {
        let listed = self.synced.lock().await.as_ref().is_none_or(|list| list.contains(to));
        if !listed {
            self.sync(client).await;
        }
    }
}
