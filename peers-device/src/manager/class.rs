//! Connection classes: how good a path to a device is, best first.

use std::fmt;

use peers_sdk::socket::{Locality, TransportKind};
use peers_sdk::{PathInfo, PathKind, SocketInfo};
use serde::{Deserialize, Serialize};

/// The class of a connection, in the manager's order of preference (best first).
/// Users read it to answer "am I direct or relayed?".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConnectionClass {
    /// A socket to a device on this machine or this LAN (loopback, private,
    /// link-local or configured ranges).
    Local,
    /// WebRTC straight between the hosts or through NATs (host or reflexive
    /// candidates).
    WebRtcDirect,
    /// WebRTC through a TURN relay.
    WebRtcRelayed,
    /// socket.io (or another socket) to a device's public address.
    InternetDirect,
    /// The signaling server's end-to-end encrypted frame relay: the last resort,
    /// which works even with UDP blocked.
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

    /// Classifies a socket from what its transport reports.
    pub fn of(info: &SocketInfo, path: Option<&PathInfo>) -> ConnectionClass {
        match (&info.transport, path.map(|p| p.kind)) {
            (TransportKind::Relay, _) => ConnectionClass::ServerRelay,
            (TransportKind::WebRtc, Some(PathKind::Relayed)) => ConnectionClass::WebRtcRelayed,
            (TransportKind::WebRtc, _) => ConnectionClass::WebRtcDirect,
            (_, Some(PathKind::Relayed)) => ConnectionClass::ServerRelay,
            _ => match info.locality {
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
    use super::*;

    fn info(transport: TransportKind, locality: Locality) -> SocketInfo {
        SocketInfo::new(transport, 1024).with_locality(locality)
    }

    #[test]
    fn classes_follow_transport_locality_and_path() {
        use ConnectionClass::*;
        assert_eq!(ConnectionClass::of(&info(TransportKind::SocketIo, Locality::Lan), None), Local);
        assert_eq!(ConnectionClass::of(&info(TransportKind::SocketIo, Locality::Loopback), None), Local);
        assert_eq!(ConnectionClass::of(&info(TransportKind::SocketIo, Locality::Internet), None), InternetDirect);
        let webrtc = info(TransportKind::WebRtc, Locality::Internet);
        assert_eq!(ConnectionClass::of(&webrtc, Some(&PathInfo::new(PathKind::NatTraversal))), WebRtcDirect);
        assert_eq!(ConnectionClass::of(&webrtc, Some(&PathInfo::new(PathKind::Relayed))), WebRtcRelayed);
        assert_eq!(ConnectionClass::of(&info(TransportKind::Relay, Locality::Internet), None), ServerRelay);
        assert!(Local < WebRtcDirect && WebRtcDirect < WebRtcRelayed && WebRtcRelayed < InternetDirect);
        assert!(InternetDirect < ServerRelay);
    }
}
