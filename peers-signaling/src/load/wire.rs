//! The lean clients' transport: one WebSocket per device, dialled from a
//! chosen loopback source address, and the few engine.io v4 / socket.io v5
//! text packets the signaling protocol needs.
//!
//! ```text
//! server → client   0{"sid",..}              engine.io open
//! client → server   40/signaling,            join the namespace
//! server → client   40/signaling,{"sid"}     joined   (44/signaling,{..}: refused)
//! either way        42/signaling,["event",{...}]
//! server → client   2                        ping; the client answers 3
//! client → server   41/signaling,            leave the namespace
//! ```
//!
//! Each WebSocket frame carries exactly one packet (engine.io v4 over
//! WebSocket never batches), so a frame parses on its own.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Serialize;
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::error::{Error, Result};

/// A lean client's WebSocket.
pub(crate) type Ws = WebSocketStream<TcpStream>;

/// Most distinct loopback source addresses the generator spreads devices over.
pub const MAX_SOURCE_ADDRESSES: usize = 250;

/// The loopback source address of device `index` when devices are spread over
/// `spread` addresses (`127.0.0.2` onwards). Real devices come from many
/// addresses; spreading keeps the server's per-IP limits and each address's
/// ephemeral ports out of the measurement.
pub(crate) fn source_address(index: usize, spread: usize) -> IpAddr {
    let slot = index % spread.clamp(1, MAX_SOURCE_ADDRESSES);
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, u8::try_from(2 + slot).unwrap_or(u8::MAX)))
}

/// Dials `ws://<server><path>` from `source`.
pub(crate) async fn dial(server: SocketAddr, source: IpAddr, path: &str) -> Result<Ws> {
    let failed = |detail: String| Error::Connect { url: format!("ws://{server}{path}"), detail };
    let socket = TcpSocket::new_v4().map_err(|e| failed(e.to_string()))?;
    socket.bind(SocketAddr::new(source, 0)).map_err(|e| failed(format!("binding {source}: {e}")))?;
    let stream = socket.connect(server).await.map_err(|e| failed(e.to_string()))?;
    stream.set_nodelay(true).map_err(|e| failed(e.to_string()))?;
    // Small buffers: 10,000 clients in one process must not each hold the
    // default 128 KiB read buffer. Messages are about 1 KiB.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(format!("ws://{server}{path}"), stream, Some(config))
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(ws)
}

/// The request path of a socket.io WebSocket connection.
pub(crate) const SOCKET_IO_PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// One received socket.io text packet, as far as the generator cares.
#[derive(Debug, PartialEq)]
pub(crate) enum Packet {
    /// engine.io open.
    Open,
    /// engine.io ping: answer [`PONG`].
    Ping,
    /// The namespace accepted the connection.
    Joined,
    /// The namespace refused the connection, with the server's text.
    Refused(String),
    /// The server left the namespace or closed the connection.
    Disconnected,
    /// An event with its one argument.
    Event(String, Value),
    /// Anything else (acks, other namespaces, binary).
    Other,
}

/// engine.io pong.
pub(crate) const PONG: &str = "3";

/// Reads one text frame.
pub(crate) fn parse(text: &str, namespace: &str) -> Packet {
    match text.as_bytes().first() {
        Some(b'0') => return Packet::Open,
        Some(b'1') => return Packet::Disconnected,
        Some(b'2') => return Packet::Ping,
        Some(b'4') => {}
        _ => return Packet::Other,
    }
    let Some(rest) = text.get(1..) else { return Packet::Other };
    let Some(kind) = rest.chars().next() else { return Packet::Other };
    let after_kind = &rest[kind.len_utf8()..];
    let body = if namespace == "/" {
        after_kind
    } else {
        match after_kind.strip_prefix(namespace).and_then(|r| r.strip_prefix(',')) {
            Some(body) => body,
            None if after_kind.strip_prefix(namespace) == Some("") => "",
            None => return Packet::Other,
        }
    };
    match kind {
        '0' => Packet::Joined,
        '1' => Packet::Disconnected,
        '4' => Packet::Refused(body.to_owned()),
        '2' => match serde_json::from_str::<(String, Value)>(body) {
            Ok((event, value)) => Packet::Event(event, value),
            Err(_) => Packet::Other,
        },
        _ => Packet::Other,
    }
}

/// `40<namespace>,`: join the namespace.
pub(crate) fn join(namespace: &str) -> String {
    format!("40{namespace},")
}

/// `41<namespace>,`: leave the namespace.
pub(crate) fn leave(namespace: &str) -> String {
    format!("41{namespace},")
}

/// `42<namespace>,["event",value]`.
pub(crate) fn event(namespace: &str, event: &str, value: &impl Serialize) -> Result<String> {
    let json = serde_json::to_string(&(event, value))
        .map_err(|e| Error::InvalidInput { what: "load generator event", detail: e.to_string() })?;
    Ok(format!("42{namespace},{json}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_packets_the_generator_meets() {
        let ns = "/signaling";
        assert_eq!(parse(r#"0{"sid":"x","pingInterval":25000}"#, ns), Packet::Open);
        assert_eq!(parse("2", ns), Packet::Ping);
        assert_eq!(parse(r#"40/signaling,{"sid":"y"}"#, ns), Packet::Joined);
        assert_eq!(
            parse(r#"44/signaling,{"message":"server_full"}"#, ns),
            Packet::Refused(r#"{"message":"server_full"}"#.into())
        );
        assert_eq!(
            parse(r#"42/signaling,["reply",{"req":1,"ok":true}]"#, ns),
            Packet::Event("reply".into(), json!({"req": 1, "ok": true}))
        );
        assert_eq!(parse(r#"42/other,["reply",{}]"#, ns), Packet::Other);
        assert_eq!(parse("41/signaling,", ns), Packet::Disconnected);
        assert_eq!(parse("42/signaling,[broken", ns), Packet::Other);
        assert_eq!(parse("", ns), Packet::Other);
        assert_eq!(event(ns, "signal", &json!({"a": 1})).unwrap(), r#"42/signaling,["signal",{"a":1}]"#);
    }

    #[test]
    fn spreads_devices_over_loopback_addresses() {
        assert_eq!(source_address(0, 100), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_address(101, 100), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(source_address(7, 0), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    }
}
