//! Reaching a device: the [`Dialer`] trait a transport implements, its
//! [`DialError`], and the [`ConnectionClass`] that ranks the paths sockets take.
//!
//! These live here, not in `peers-device`, so a transport crate outside the
//! workspace can ship its dialer depending on `peers-sdk` alone. The
//! connection manager (`peers-device`) tries its dialers, keeps the best
//! connection by class, and hands over when a better one appears.
//!
//! # Classes come from paths, not transport names
//!
//! [`ConnectionClass::of`] reads the [`PathKind`] a socket reports
//! ([`Socket::path`](crate::Socket::path)); a socket that reports none (one
//! fixed path to an address, like socket.io or TCP) is classed by its
//! [`Locality`]:
//!
//! | what the socket reports                      | class                   |
//! |----------------------------------------------|-------------------------|
//! | no path, loopback or LAN                     | `Local`                 |
//! | `PathKind::Direct` or `NatTraversal`         | `WebRtcDirect` (a peer-to-peer path opened straight or through NATs) |
//! | `PathKind::Relayed` (TURN)                   | `WebRtcRelayed`         |
//! | no path, internet                            | `InternetDirect`        |
//! | `PathKind::ServerRelay`                      | `ServerRelay`           |
//!
//! So a hole-punched path on any transport ranks with WebRTC's, above TURN.
//! The class names are the ones `peers status` prints; the `WebRtc` in two of
//! them names the first transport with such paths, not a requirement.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::identity::DeviceId;
use crate::socket::{BoxSocket, Locality, PathInfo, PathKind, SocketInfo};

/// A way to open a socket to a device: a URL, WebRTC through a signaling
/// channel, a relay.
#[async_trait]
pub trait Dialer: Send + Sync + 'static {
    /// A short name for status and logs.
    fn name(&self) -> &str;

    /// The best class a socket from this dialer to `device` can have, or `None`
    /// if it has no way to reach that device. The manager does not try a dialer
    /// when it already holds a connection at least this good.
    fn class_for(&self, device: &DeviceId) -> Option<ConnectionClass>;

    /// How long a dial (socket plus handshake) may take. Default: 15 s.
    fn timeout(&self) -> Duration {
        Duration::from_secs(15)
    }

    /// Opens a socket to `device`.
    async fn dial(&self, device: DeviceId) -> Result<BoxSocket, DialError>;
}

/// Why a dial gave no socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The dialer knows no way to reach the device right now (no address
    /// known, its signaling link down); `why` says which.
    #[error("no route: {why}")]
    NoRoute {
        /// What is missing.
        why: &'static str,
    },
    /// The device or a server in between refused, with its reason (a
    /// relay request not delivered, a server at its limit).
    #[error("refused: {reason}")]
    Refused {
        /// The reason given.
        reason: String,
    },
    /// The dial took longer than its limit.
    #[error("no socket within {after:?}")]
    Timeout {
        /// The limit.
        after: Duration,
    },
    /// Every address the dialer tried failed; each failure in order.
    #[error("{} address(es) failed: {}", .0.len(), AttemptList(.0))]
    AllFailed(Vec<(String, DialError)>),
    /// The transport failed; its own error is the source.
    #[error("transport: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl DialError {
    /// Wraps a transport's own error.
    pub fn transport(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        DialError::Transport(Box::new(err))
    }
}

/// Renders [`DialError::AllFailed`]'s list: `addr: error; addr: error`.
struct AttemptList<'a>(&'a [(String, DialError)]);

impl fmt::Display for AttemptList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (address, err)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{address}: {err}")?;
        }
        Ok(())
    }
}

/// The class of a connection, in the manager's order of preference (best
/// first). Users read it to answer "am I direct or relayed?".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConnectionClass {
    /// A socket to a device on this machine or this LAN (loopback, private,
    /// link-local or configured ranges) that reports no path of its own.
    Local,
    /// A peer-to-peer path straight between the hosts or punched through NATs
    /// ([`PathKind::Direct`], [`PathKind::NatTraversal`]): WebRTC's host or
    /// reflexive candidates, or any transport that reports such a path.
    #[doc(alias = "NatTraversed")]
    WebRtcDirect,
    /// Through a TURN relay ([`PathKind::Relayed`]).
    #[doc(alias = "TurnRelayed")]
    WebRtcRelayed,
    /// A socket to a device's public address (socket.io or another socket
    /// that reports no path).
    InternetDirect,
    /// The signaling server's end-to-end encrypted frame relay
    /// ([`PathKind::ServerRelay`]): the last resort, which works even with UDP
    /// blocked.
    ServerRelay,
}

impl ConnectionClass {
    /// Every class, best first.
    pub const ALL: [ConnectionClass; 5] = [
        ConnectionClass::Local,
        ConnectionClass::WebRtcDirect,
        ConnectionClass::WebRtcRelayed,
        ConnectionClass::InternetDirect,
        ConnectionClass::ServerRelay,
    ];

    /// Classifies a socket by the path it reports, or by its locality when it
    /// reports none (see the [module docs](self)).
    pub fn of(info: &SocketInfo, path: Option<&PathInfo>) -> ConnectionClass {
        match path.map(|p| p.kind) {
            Some(PathKind::ServerRelay) => ConnectionClass::ServerRelay,
            Some(PathKind::Relayed) => ConnectionClass::WebRtcRelayed,
            Some(PathKind::Direct | PathKind::NatTraversal) => ConnectionClass::WebRtcDirect,
            None => match info.locality {
                Locality::Loopback | Locality::Lan => ConnectionClass::Local,
                Locality::Internet => ConnectionClass::InternetDirect,
            },
        }
    }

    /// Whether the path goes through a relay server.
    pub fn is_relayed(self) -> bool {
        matches!(self, ConnectionClass::WebRtcRelayed | ConnectionClass::ServerRelay)
    }

    /// A short name for tables and logs.
    pub fn name(self) -> &'static str {
        match self {
            ConnectionClass::Local => "local",
            ConnectionClass::WebRtcDirect => "webrtc-direct",
            ConnectionClass::WebRtcRelayed => "webrtc-relayed",
            ConnectionClass::InternetDirect => "internet",
            ConnectionClass::ServerRelay => "server-relay",
        }
    }
}

impl fmt::Display for ConnectionClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::socket::TransportKind;

    fn info(transport: TransportKind, locality: Locality) -> SocketInfo {
        SocketInfo::new(transport, 1024).with_locality(locality)
    }

    fn class(transport: TransportKind, locality: Locality, path: Option<PathKind>) -> ConnectionClass {
        ConnectionClass::of(&info(transport, locality), path.map(PathInfo::new).as_ref())
    }

    #[test]
    fn sockets_without_a_path_are_classed_by_locality() {
        use ConnectionClass::*;
        for transport in [TransportKind::SocketIo, TransportKind::Tcp, TransportKind::Other(Cow::Borrowed("quic"))] {
            assert_eq!(class(transport.clone(), Locality::Loopback, None), Local);
            assert_eq!(class(transport.clone(), Locality::Lan, None), Local);
            assert_eq!(class(transport, Locality::Internet, None), InternetDirect);
        }
    }

    #[test]
    fn reported_paths_decide_whatever_the_transport() {
        use ConnectionClass::*;
        let quic = || TransportKind::Other(Cow::Borrowed("quic"));
        for transport in [TransportKind::WebRtc, quic(), TransportKind::Tcp] {
            for locality in [Locality::Lan, Locality::Internet] {
                assert_eq!(class(transport.clone(), locality, Some(PathKind::Direct)), WebRtcDirect);
                assert_eq!(class(transport.clone(), locality, Some(PathKind::NatTraversal)), WebRtcDirect);
                assert_eq!(class(transport.clone(), locality, Some(PathKind::Relayed)), WebRtcRelayed);
                assert_eq!(class(transport.clone(), locality, Some(PathKind::ServerRelay)), ServerRelay);
            }
        }
        // The relay socket is ranked by its path, not by its transport's name.
        assert_eq!(class(TransportKind::Relay, Locality::Internet, Some(PathKind::ServerRelay)), ServerRelay);
    }

    #[test]
    fn a_hole_punched_path_on_a_new_transport_ranks_above_turn_and_the_internet() {
        let quic = TransportKind::Other(Cow::Borrowed("quic"));
        let punched = class(quic.clone(), Locality::Internet, Some(PathKind::NatTraversal));
        let turn = class(TransportKind::WebRtc, Locality::Internet, Some(PathKind::Relayed));
        let public_address = class(quic, Locality::Internet, None);
        assert!(punched < turn, "{punched} should rank above {turn}");
        assert!(punched < public_address, "{punched} should rank above {public_address}");
    }

    #[test]
    fn the_order_is_local_then_peer_to_peer_then_turn_then_internet_then_the_server() {
        use ConnectionClass::*;
        let mut shuffled = [ServerRelay, InternetDirect, Local, WebRtcRelayed, WebRtcDirect];
        shuffled.sort();
        assert_eq!(shuffled, ConnectionClass::ALL);
        assert!(ConnectionClass::ALL.iter().all(|c| c.is_relayed() == matches!(c, WebRtcRelayed | ServerRelay)));
        let names: Vec<_> = ConnectionClass::ALL.iter().map(|c| c.to_string()).collect();
        assert_eq!(names, ["local", "webrtc-direct", "webrtc-relayed", "internet", "server-relay"]);
    }

    #[test]
    fn dial_errors_say_what_failed() {
        let all = DialError::AllFailed(vec![
            ("http://a".into(), DialError::Timeout { after: Duration::from_secs(1) }),
            ("http://b".into(), DialError::Refused { reason: "full".into() }),
        ]);
        assert_eq!(all.to_string(), "2 address(es) failed: http://a: no socket within 1s; http://b: refused: full");
        let io = DialError::transport(std::io::Error::other("reset"));
        assert!(std::error::Error::source(&io).is_some());
    }
}
