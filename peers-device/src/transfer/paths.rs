//! The paths of one transfer by code, and moving to a better one mid-way.
//!
//! After the PAKE each side runs a [`ConnectionManager`] of its ephemeral device that
//! trusts exactly the device the PAKE confirmed. The relay the PAKE ran on becomes its
//! first connection, so bytes move at once. Meanwhile the sender dials WebRTC (signaled
//! through the same signaling server, with the ICE servers it hands out: a direct path,
//! or TURN) and the receiver accepts it; the manager's usual preference (local, WebRTC
//! direct, WebRTC relayed, internet, server relay) decides which connection is active,
//! and switches when a better one is verified.
//!
//! ```text
//!  sender                                                receiver
//!   data stream on the relay ═════════════════════════▶ verify, store
//!   WebRTC dial (offer/answer/candidates via server) ──▶ accept; both managers verify it
//!   manager: webrtc-direct is better → active            manager: active
//!   pause: finish the stream after a whole chunk ═════▶ every chunk verified, saved: Ok
//!   offer again on WebRTC ────────────────────────────▶ Accept { from: the next chunk }
//!   data stream on WebRTC ════════════════════════════▶ ...
//!   the relay connection is idle: drained and retired by both managers
//! ```
//!
//! Nothing verified is sent again: a pause ends the stream at a chunk boundary and the
//! next offer starts after it. When a connection breaks instead, the next offer starts
//! after the receiver's last verified chunk.

use std::sync::Arc;
use std::time::Duration;

use peers_sdk::{CloseReason, Connection, DeviceId, DeviceInfo, DeviceKeys};
use peers_signaling::{RelaySocket, SignalingClient};
use peers_transport_webrtc::WebRtcEndpoint;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tracing::debug;

use super::live::LinkOptions;
use super::rendezvous::pinned_config;
use crate::manager::{ConnectionManager, ManagerConfig};
use crate::transports::{ServerSignaling, WebRtcDialer, WebRtcListener};
use crate::{ConnectionClass, Result};

/// A transfer's connection on which nothing at all arrived for this long is closed as
/// dead (the manager's default is 3 s), and the transfer goes on over another (or,
/// with none left and the receiver offline, the sender waits for it to come back).
pub(super) const LIVENESS_TIMEOUT: Duration = Duration::from_secs(10);

/// Which side of the transfer this is: the sender dials better paths, the receiver
/// accepts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// Dials.
    Sender,
    /// Accepts.
    Receiver,
}

/// A change of the paths to the peer.
pub(super) enum Change {
    /// Another connection is active now.
    Active(Connection),
    /// No connection is left.
    Lost,
}

/// The connections of one transfer to the confirmed device.
pub(super) struct Paths {
    manager: ConnectionManager,
    peer: DeviceId,
    side: Side,
    events: broadcast::Receiver<crate::manager::ManagerEvent>,
    _webrtc: Option<WebRtcListener>,
}

impl Paths {
    /// Starts the manager of `keys`, pinned to `peer`, with `setup` run on every
    /// connection (before the peer can call), and WebRTC through `webrtc` (the sender
    /// dials, the receiver accepts); then adds `relay` as the first connection. A connection
    /// given up for a better one is drained for at most `drain` (an offer waiting for
    /// the receiving person's answer is not cut).
    pub(super) async fn start(
        side: Side,
        keys: Arc<DeviceKeys>,
        peer: &DeviceInfo,
        webrtc: Option<Arc<WebRtcEndpoint>>,
        drain: Duration,
        relay: RelaySocket,
        setup: impl Fn(&Connection) + Send + Sync + 'static,
    ) -> Result<Paths> {
        let mut config = ManagerConfig::new(pinned_config(keys, peer.clone()));
        config.drain_timeout = config.drain_timeout.max(drain);
        // A bulk transfer keeps a path busy; a busy WebRTC path on a loaded machine can
        // go quiet for a few seconds without being dead (the stall timeout ends a dead one).
        config.health.liveness_timeout = config.health.liveness_timeout.max(LIVENESS_TIMEOUT);
        let manager = ConnectionManager::new(config);
        manager.on_connection(move |conn, _| setup(conn));
        let events = manager.events();
        let webrtc = webrtc.and_then(|endpoint| match side {
            Side::Sender => {
                manager.add_dialer(Arc::new(WebRtcDialer::new(endpoint)));
                None
            }
            Side::Receiver => Some(WebRtcListener::start(manager.clone(), endpoint)),
        });
        let paths = Paths { manager, peer: peer.device_id, side, events, _webrtc: webrtc };
        paths.add_relay(relay).await?;
        if side == Side::Sender {
            paths.manager.keep_connected(paths.peer);
        }
        Ok(paths)
    }

    /// Adds a relay to the peer as a connection (the first, or a new one after the
    /// last ended).
    pub(super) async fn add_relay(&self, relay: RelaySocket) -> Result<()> {
        match self.side {
            Side::Sender => self.manager.dial(Box::new(relay), Some(self.peer)).await.map(|_| ()),
            Side::Receiver => self.manager.accept(Box::new(relay)).await.map(|_| ()),
        }
    }

    /// The active connection, if any.
    pub(super) fn active(&self) -> Option<Connection> {
        self.manager.connection(&self.peer)
    }

    /// Waits until the active connection is another than `current` (by session), or
    /// none is left.
    pub(super) async fn changed(&mut self, current: Option<&Connection>) -> Change {
        loop {
            match self.active() {
                Some(active) if current.is_none_or(|c| c.session_id() != active.session_id()) => {
                    return Change::Active(active);
                }
                None if current.is_some() => return Change::Lost,
                _ => {}
            }
            match self.events.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                // The manager is gone: nothing changes any more.
                Err(RecvError::Closed) => return std::future::pending().await,
            }
        }
    }

    /// Waits up to `wait` for an active connection.
    pub(super) async fn active_within(&mut self, wait: Duration) -> Option<Connection> {
        match tokio::time::timeout(wait, self.changed(None)).await {
            Ok(Change::Active(conn)) => Some(conn),
            _ => None,
        }
    }

    /// Closes every connection with `reason` (the peer sees it) and stops the manager.
    pub(super) async fn close(&self, reason: CloseReason) {
        if let Some(active) = self.active() {
            active.close(reason).await;
        }
        self.manager.shutdown().await;
    }
}

impl Drop for Paths {
    fn drop(&mut self) {
        // A cancelled transfer: its connections close without waiting for the caller.
        let manager = self.manager.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { manager.shutdown().await });
        }
    }
}

/// The WebRTC endpoint of a transfer, signaled through `client` (whose incoming
/// signals it takes: one per client, kept across the receivers a sender meets), or
/// `None` when `link` has no WebRTC.
pub(super) fn webrtc_endpoint(client: &SignalingClient, link: &LinkOptions) -> Option<Arc<WebRtcEndpoint>> {
    let config = link.webrtc.as_ref()?;
    match ServerSignaling::over_client(client.clone(), config.connect_timeout) {
        Some(signaling) => Some(Arc::new(WebRtcEndpoint::new(Arc::new(signaling), config.clone()))),
        None => {
            debug!("the signaling client's signals are taken: no WebRTC for this transfer");
            None
        }
    }
}

/// The class of `conn`'s path.
pub(super) fn class_of(conn: &Connection) -> ConnectionClass {
    ConnectionClass::of(conn.socket_info(), conn.path().as_ref())
}
