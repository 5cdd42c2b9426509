//! The paths of one transfer by code, and moving to a better one mid-way.
//!
//! After the PAKE each side runs a [`ConnectionManager`] of its ephemeral device that
//! trusts exactly the device the PAKE confirmed. The relay the PAKE ran on becomes its
//! first connection, so bytes move at once. Meanwhile the sender dials WebRTC (signaled
//! through the same signaling server, with the ICE servers it hands out: a direct path,
//! or TURN) and the receiver accepts it; the sender also dials the receiver's local
//! socket (below) when it has one. The manager's usual preference (local, WebRTC
//! direct, WebRTC relayed, internet, server relay) decides which connection is active,
//! and switches when a better one is verified.
//!
//! The local socket: a receiver with [`LinkOptions::local`] listens for socket.io over
//! TCP (any port) before the PAKE, and its URLs go in the device info its `Confirm`
//! carries, as a daemon advertises its own; the sender dials them (at most 8), each
//! ranked by its address: local for loopback and private addresses, internet direct
//! for a public one. Whoever else reaches the port meets the pinned handshake and is
//! refused.
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

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use peers_sdk::{CloseReason, Connection, DeviceId, DeviceInfo, DeviceKeys};
use peers_signaling::RelaySocket;
use peers_transport_socketio::{ClientOptions, ServerOptions, SocketIoServer};
use peers_transport_webrtc::WebRtcEndpoint;
use tracing::debug;

use super::live::LinkOptions;
use super::reconnect::Signaling;
use super::rendezvous::pinned_config;
use crate::device::advertise::advertise_urls;
use crate::manager::{ConnectionManager, ManagerConfig};
use crate::netmon::interface_ips;
use crate::transports::{SocketIoDialer, SocketIoListener, WebRtcDialer, WebRtcListener};
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

/// The most connections a receiver's local socket holds at once (the sender needs one;
/// a few more let a redial overlap a dying one).
const MAX_LOCAL_CONNECTIONS: usize = 4;

/// The most local URLs a receiver advertises, and a sender dials.
const MAX_LOCAL_URLS: usize = 8;

/// The credit window of a transfer connection's incoming streams (the SDK's default
/// is 4 MiB). The window spans every byte between the sender's write and the
/// receiver's read, and a WebRTC socket alone buffers up to 4 MiB before SCTP sends
/// it, so 4 MiB left the channel idle between grants: over WebRTC on loopback the
/// transfer moved about 18 MB/s with it and 25 MB/s with this one (docs/BENCHMARKS.md,
/// "send by code"). With at most [`MAX_TRANSFER_STREAMS`] streams, a connection to the
/// one confirmed peer buffers at most 64 MiB of stream data.
const TRANSFER_STREAM_WINDOW: u64 = 16 * 1024 * 1024;

/// The most incoming streams on a transfer connection: the data stream, with room
/// for a new one while an earlier one is still being answered.
const MAX_TRANSFER_STREAMS: usize = 4;

/// The receiver's local socket: a socket.io listener, bound before the PAKE so that its
/// URLs can go in the receiver's device info.
pub(super) struct LocalListener {
    server: SocketIoServer,
    urls: Vec<String>,
}

impl LocalListener {
    /// Listens on `ip`, on a port the system picks; `None` (logged) when it cannot
    /// bind: the transfer goes on without a local socket.
    pub(super) async fn bind(ip: IpAddr) -> Option<LocalListener> {
        let mut options = ServerOptions::default();
        options.bind = SocketAddr::new(ip, 0);
        options.max_connections = MAX_LOCAL_CONNECTIONS;
        match SocketIoServer::bind(options).await {
            Ok(server) => {
                let mut urls = advertise_urls(&server.url(), server.local_addr(), &interface_ips());
                urls.truncate(MAX_LOCAL_URLS);
                Some(LocalListener { server, urls })
            }
            Err(err) => {
                debug!(%ip, %err, "no local socket for this transfer");
                None
            }
        }
    }

    /// The URLs the sender may dial.
    pub(super) fn urls(&self) -> Vec<String> {
        self.urls.clone()
    }
}

/// A local socket for one transfer: the receiver listens, the sender dials.
pub(super) enum Local {
    /// No local socket.
    Off,
    /// The receiver's listener.
    Listen(LocalListener),
    /// The sender dials the local URLs in the receiver's device info.
    Dial,
}

/// The URLs of `peer`'s device info a sender dials for a local socket: socket.io URLs
/// (`http`, `https`), at most [`MAX_LOCAL_URLS`]. Each ranks by its address, as a
/// daemon's advertised URLs do: local for loopback and private addresses, internet
/// direct otherwise (a receiver whose interface has a public address).
pub(super) fn local_urls(peer: &DeviceInfo) -> Vec<String> {
    let socket_io = |url: &&String| url.starts_with("http://") || url.starts_with("https://");
    peer.addresses.iter().filter(socket_io).take(MAX_LOCAL_URLS).cloned().collect()
}

/// The connections of one transfer to the confirmed device.
pub(super) struct Paths {
    manager: ConnectionManager,
    peer: DeviceId,
    side: Side,
    _webrtc: Option<WebRtcListener>,
    local: Option<SocketIoListener>,
}

impl Paths {
    /// Starts the manager of `keys`, pinned to `peer`, with `setup` run on every
    /// connection (before the peer can call), WebRTC through `webrtc` (the sender
    /// dials, the receiver accepts) and the `local` socket; then adds `relay` as the
    /// first connection. A connection given up for a better one is drained for at most
    /// `drain` (an offer waiting for the receiving person's answer is not cut).
    #[allow(clippy::too_many_arguments)] // the parts of one start, each used once
    pub(super) async fn start(
        side: Side,
        keys: Arc<DeviceKeys>,
        peer: &DeviceInfo,
        webrtc: Option<Arc<WebRtcEndpoint>>,
        local: Local,
        drain: Duration,
        relay: RelaySocket,
        setup: impl Fn(&Connection) + Send + Sync + 'static,
    ) -> Result<Paths> {
        let mut config = ManagerConfig::new(pinned_config(keys, peer.clone()));
        config.connection.stream_window = TRANSFER_STREAM_WINDOW;
        config.connection.max_incoming_streams = MAX_TRANSFER_STREAMS;
        config.drain_timeout = config.drain_timeout.max(drain);
        // A bulk transfer keeps a path busy; a busy WebRTC path on a loaded machine can
        // go quiet for a few seconds without being dead (the stall timeout ends a dead one).
        config.health.liveness_timeout = config.health.liveness_timeout.max(LIVENESS_TIMEOUT);
        let manager = ConnectionManager::new(config);
        manager.on_connection(move |conn, _| setup(conn));
        let webrtc = webrtc.and_then(|endpoint| match side {
            Side::Sender => {
                manager.add_dialer(Arc::new(WebRtcDialer::new(endpoint)));
                None
            }
            Side::Receiver => Some(WebRtcListener::start(manager.clone(), endpoint)),
        });
        let local = match local {
            Local::Off => None,
            Local::Listen(listener) => Some(SocketIoListener::start(manager.clone(), listener.server)),
            Local::Dial => {
                let urls = local_urls(peer);
                if !urls.is_empty() {
                    let dialer = SocketIoDialer::new(ClientOptions::default());
                    dialer.set_urls(peer.device_id, urls);
                    manager.add_dialer(Arc::new(dialer));
                }
                None
            }
        };
        let paths = Paths { manager, peer: peer.device_id, side, _webrtc: webrtc, local };
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
    pub(super) async fn changed(&self, current: Option<&Connection>) -> Change {
        match self.manager.active_change(&self.peer, current).await {
            Some(active) => Change::Active(active),
            None => Change::Lost,
        }
    }

    /// Waits up to `wait` for an active connection.
    pub(super) async fn active_within(&self, wait: Duration) -> Option<Connection> {
        match tokio::time::timeout(wait, self.changed(None)).await {
            Ok(Change::Active(conn)) => Some(conn),
            _ => None,
        }
    }

    /// Closes every connection with `reason` (the peer sees it) and stops the manager.
    pub(super) async fn close(&mut self, reason: CloseReason) {
        if let Some(active) = self.active() {
            active.close(reason).await;
        }
        self.manager.shutdown().await;
        if let Some(local) = self.local.take() {
            local.shutdown().await;
        }
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

/// The WebRTC endpoint of a transfer, signaled through `signaling` (whose incoming
/// signals it takes, of every registration: one per transfer, kept across the
/// receivers a sender meets and the signaling server's restarts), or `None` when
/// `link` has no WebRTC.
pub(super) fn webrtc_endpoint(signaling: &Signaling, link: &LinkOptions) -> Option<Arc<WebRtcEndpoint>> {
    let config = link.webrtc.as_ref()?;
    match signaling.webrtc_signaling(config.connect_timeout) {
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
