//! The transport abstraction: a [`Socket`] carries whole frames, in order and
//! reliably, between two endpoints.
//!
//! `peers-sdk` has no network I/O of its own. Transports (socket.io, WebRTC, TCP,
//! the in-memory [`MemorySocket`] pair) implement [`Socket`]; everything above —
//! handshake, encryption, chunking, RPC — works on any of them. A transport that
//! has a byte stream (TCP, a Unix socket, a QUIC stream) needs only
//! [`FramedSocket`], which draws frame boundaries on it.
//!
//! A socket describes itself with [`SocketInfo`]: which transport it is, how local
//! the peer is (for the connection manager's preference), the largest frame it
//! carries, and what security the transport already provides. A transport that
//! offers a [`ChannelBinding`] lets the handshake tie the peer's identity to the
//! transport's own encryption.

mod framed;
mod lifecycle;
mod listener;
mod memory;

use std::borrow::Cow;
use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use framed::FramedSocket;
pub use lifecycle::SocketLifecycle;
pub use listener::Listener;
pub use memory::MemorySocket;

use crate::error::Result;

/// A bidirectional, message-oriented, ordered and reliable channel between two
/// endpoints. In the original TypeScript design this was `ISocket`.
///
/// # Contract
///
/// Implementations must guarantee, and the conformance suite
/// (`peers_sdk::conformance`, feature `test-utils`) checks:
///
/// - frames arrive whole, in the order they were sent, each exactly once;
/// - [`send`](Socket::send) waits when the peer is not keeping up (backpressure) and
///   never buffers without bound; a frame larger than
///   [`SocketInfo::max_frame_size`] fails with [`Error::FrameTooLarge`](crate::Error::FrameTooLarge)
///   and leaves the socket usable;
/// - after either side calls [`close`](Socket::close), both sides observe
///   [`SocketState::Closed`] with the closer's reason, frames sent before the close
///   are still delivered, and every later `send` or `recv` fails with
///   [`Error::Closed`](crate::Error::Closed);
/// - all methods take `&self` and may be called from several tasks at once.
#[doc(alias = "ISocket")]
#[async_trait]
pub trait Socket: Send + Sync + fmt::Debug + 'static {
    /// What this socket is and what its transport guarantees.
    fn info(&self) -> &SocketInfo;

    /// Sends one frame, waiting while the transport applies backpressure.
    async fn send(&self, frame: Bytes) -> Result<()>;

    /// Receives the next frame. Fails with [`Error::Closed`](crate::Error::Closed)
    /// once the socket is closed and every frame sent before the close was received.
    async fn recv(&self) -> Result<Bytes>;

    /// Closes the socket, telling the peer `reason`. Closing twice is harmless: the
    /// first reason wins.
    async fn close(&self, reason: CloseReason);

    /// The current state.
    fn state(&self) -> SocketState;

    /// Waits until the socket is closed and returns the reason.
    async fn closed(&self) -> CloseReason;

    /// The network path the socket's packets take right now, for transports that
    /// know it (WebRTC reads it from the selected ICE candidate pair). It can change
    /// during the socket's life. The default, for transports with one fixed path
    /// described by [`SocketInfo::locality`], is `None`.
    fn path(&self) -> Option<PathInfo> {
        None
    }
}

/// How a socket's packets travel, as far as its transport can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PathKind {
    /// Straight between the two hosts' own addresses (ICE host candidates).
    Direct,
    /// Through a NAT, with addresses learned from STUN or from the peer (ICE
    /// server- or peer-reflexive candidates).
    NatTraversal,
    /// Through a relay server the transport allocated (TURN).
    Relayed,
    /// Through the signaling server's frame relay (the frames stay sealed end
    /// to end).
    ServerRelay,
}

/// The path a socket's packets take, from [`Socket::path`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PathInfo {
    /// Direct, through a NAT, or relayed.
    pub kind: PathKind,
    /// The round-trip time the transport measured, if it measures one.
    pub rtt: Option<std::time::Duration>,
    /// This side's end of the path (for example `"udp 192.0.2.1:50000 host"`).
    pub local: Option<String>,
    /// The peer's end of the path.
    pub remote: Option<String>,
}

impl PathInfo {
    /// A path of `kind` with nothing else known.
    pub fn new(kind: PathKind) -> Self {
        PathInfo { kind, rtt: None, local: None, remote: None }
    }
}

/// A boxed socket, as the layers above hold them.
pub type BoxSocket = Box<dyn Socket>;

/// Whether a socket is usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketState {
    /// Frames flow both ways.
    Open,
    /// Closed; nothing more is sent or received.
    Closed(CloseReason),
}

/// Which side closed a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClosedBy {
    /// This side closed it (or its transport failed here).
    Local,
    /// The peer closed it.
    Remote,
}

/// Why a socket or connection closed, in broad classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CloseCode {
    /// An orderly close asked for by the application.
    Normal,
    /// The endpoint is going away (shutdown, the socket was dropped).
    GoingAway,
    /// The peer broke the protocol (bad frame, failed integrity check).
    ProtocolError,
    /// The peer is not trusted enough, or failed authentication.
    Refused,
    /// Something took too long (handshake, keep-alive).
    Timeout,
    /// The underlying transport failed (network error, server gone).
    TransportFailure,
    /// A limit was hit (too many connections, message too large).
    LimitExceeded,
    /// A better connection to the same device replaced this one.
    Replaced,
}

/// Why a socket or connection closed: a code, a human-readable message, and which
/// side closed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseReason {
    /// The class of reason.
    pub code: CloseCode,
    /// Details for people and logs.
    pub message: String,
    /// Who closed.
    pub by: ClosedBy,
}

impl CloseReason {
    /// Maximum length of a close message carried to the peer; longer ones are cut.
    pub const MAX_MESSAGE_LEN: usize = 256;

    /// A reason for a close made by this side.
    pub fn new(code: CloseCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        crate::text::truncate(&mut message, Self::MAX_MESSAGE_LEN);
        CloseReason { code, message, by: ClosedBy::Local }
    }

    /// An orderly close.
    pub fn normal(message: impl Into<String>) -> Self {
        Self::new(CloseCode::Normal, message)
    }

    /// The same reason as the peer sees it.
    pub fn as_remote(&self) -> Self {
        CloseReason { by: ClosedBy::Remote, ..self.clone() }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by = match self.by {
            ClosedBy::Local => "locally",
            ClosedBy::Remote => "by peer",
        };
        write!(f, "{:?} {by}: {}", self.code, self.message)
    }
}

/// The kind of transport under a socket.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportKind {
    /// The in-memory pair.
    Memory,
    /// socket.io over WebSocket.
    SocketIo,
    /// A WebRTC data channel.
    WebRtc,
    /// The signaling server's frame relay.
    Relay,
    /// Plain TCP.
    Tcp,
    /// A transport added by an integrator.
    Other(Cow<'static, str>),
}

/// How close the peer is on the network, for the connection manager's preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Locality {
    /// The same machine (or the same process).
    Loopback,
    /// The same local network: private, link-local or configured ranges.
    Lan,
    /// Anything else.
    Internet,
}

impl Locality {
    /// Classifies a peer address: loopback, LAN (RFC 1918 private, RFC 6598 shared
    /// address space, link-local, IPv6 unique-local and link-local), or internet.
    /// IPv4-mapped IPv6 addresses are classified as IPv4.
    pub fn of_ip(ip: std::net::IpAddr) -> Locality {
        use std::net::IpAddr;
        match ip.to_canonical() {
            ip if ip.is_loopback() => Locality::Loopback,
            IpAddr::V4(v4) if v4.is_private() || v4.is_link_local() => Locality::Lan,
            // 100.64.0.0/10, carrier-grade NAT and overlay networks such as Tailscale.
            IpAddr::V4(v4) if v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 => Locality::Lan,
            IpAddr::V6(v6) if v6.is_unique_local() || v6.is_unicast_link_local() => Locality::Lan,
            _ => Locality::Internet,
        }
    }
}

/// A value that ties a transport's own encryption to this particular session, such
/// as the DTLS certificate fingerprints of a WebRTC connection or a TLS exporter.
///
/// Both ends must compute the same bytes from their own view: `local` is this
/// side's value and `remote` the peer's (for a TLS exporter, both are the exporter
/// output). The handshake orders them by role, so a man in the middle who
/// terminates the transport on each side produces two different bindings and the
/// handshake fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelBinding {
    /// What kind of binding this is, for example `"dtls-sha256-fingerprints"` or
    /// `"tls-exporter"`. Both sides must use the same kind.
    pub kind: Cow<'static, str>,
    /// This side's value.
    pub local: Vec<u8>,
    /// The peer's value, as this side sees it.
    pub remote: Vec<u8>,
}

/// What the transport guarantees on its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportSecurity {
    /// The transport encrypts frames (DTLS, TLS).
    pub confidential: bool,
    /// A channel binding, when the transport can export one.
    pub channel_binding: Option<ChannelBinding>,
}

/// Describes a socket.
///
/// Transports outside this crate build it with [`SocketInfo::new`] and the `with_`
/// methods, so fields can be added without breaking them:
///
/// ```
/// use peers_sdk::socket::{Locality, SocketInfo, TransportKind};
///
/// let info = SocketInfo::new(TransportKind::Tcp, 1 << 20)
///     .with_ip_addrs("192.168.1.2:4000".parse()?, "192.168.1.3:51000".parse()?);
/// assert_eq!(info.locality, Locality::Lan);
/// assert!(!info.security.confidential);
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketInfo {
    /// The transport.
    pub transport: TransportKind,
    /// How close the peer is.
    pub locality: Locality,
    /// This side's address, when the transport has one.
    pub local_addr: Option<String>,
    /// The peer's address as this side sees it, when the transport has one.
    pub peer_addr: Option<String>,
    /// The largest frame [`Socket::send`] accepts, in bytes.
    pub max_frame_size: usize,
    /// What the transport already guarantees.
    pub security: TransportSecurity,
}

impl SocketInfo {
    /// A socket of `transport` carrying frames up to `max_frame_size` bytes, with a
    /// peer on the internet, no addresses and no security of its own: the most
    /// cautious description, which the `with_` methods refine.
    pub fn new(transport: TransportKind, max_frame_size: usize) -> Self {
        SocketInfo {
            transport,
            locality: Locality::Internet,
            local_addr: None,
            peer_addr: None,
            max_frame_size,
            security: TransportSecurity::default(),
        }
    }

    /// How close the peer is.
    pub fn with_locality(mut self, locality: Locality) -> Self {
        self.locality = locality;
        self
    }

    /// This side's address, as the transport names it.
    pub fn with_local_addr(mut self, local: impl Into<String>) -> Self {
        self.local_addr = Some(local.into());
        self
    }

    /// The peer's address as this side sees it, as the transport names it.
    pub fn with_peer_addr(mut self, peer: impl Into<String>) -> Self {
        self.peer_addr = Some(peer.into());
        self
    }

    /// The addresses of an IP transport; the locality follows from the peer's
    /// ([`Locality::of_ip`]).
    pub fn with_ip_addrs(self, local: std::net::SocketAddr, peer: std::net::SocketAddr) -> Self {
        self.with_locality(Locality::of_ip(peer.ip()))
            .with_local_addr(local.to_string())
            .with_peer_addr(peer.to_string())
    }

    /// What the transport already guarantees.
    pub fn with_security(mut self, security: TransportSecurity) -> Self {
        self.security = security;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locality_classifies_addresses() {
        let of = |s: &str| Locality::of_ip(s.parse().unwrap());
        assert_eq!(of("127.0.0.1"), Locality::Loopback);
        assert_eq!(of("::1"), Locality::Loopback);
        assert_eq!(of("::ffff:127.0.0.1"), Locality::Loopback);
        assert_eq!(of("192.168.1.20"), Locality::Lan);
        assert_eq!(of("10.1.2.3"), Locality::Lan);
        assert_eq!(of("172.16.0.1"), Locality::Lan);
        assert_eq!(of("169.254.3.4"), Locality::Lan);
        assert_eq!(of("100.100.1.1"), Locality::Lan);
        assert_eq!(of("fd00::1"), Locality::Lan);
        assert_eq!(of("fe80::1"), Locality::Lan);
        assert_eq!(of("100.128.0.1"), Locality::Internet);
        assert_eq!(of("8.8.8.8"), Locality::Internet);
        assert_eq!(of("2001:db8::1"), Locality::Internet);
    }

    #[test]
    fn close_messages_are_bounded_on_a_char_boundary() {
        let long = "é".repeat(CloseReason::MAX_MESSAGE_LEN);
        let reason = CloseReason::normal(long);
        assert!(reason.message.len() <= CloseReason::MAX_MESSAGE_LEN);
        assert!(reason.message.chars().all(|c| c == 'é'));
        assert_eq!(reason.as_remote().by, ClosedBy::Remote);
    }
}
