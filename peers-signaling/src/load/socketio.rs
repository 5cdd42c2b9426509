//! The lean client of the reference socket.io baseline
//! (`tests/js/socketio_relay_server.mjs`: Node's `socket.io` server with its
//! default settings and the smallest relay an application would write): the
//! device's name in the handshake query, the default namespace joined, then
//! `"offer"` events `{dst, payload}` out and `{src, payload}` in. Like
//! PeerJS it has no replies, so a message is done when its target receives
//! it; the server's engine.io pings are answered.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::fleet::{Dialect, Fleet, Probe, Reaction};
use super::wire::{self, Packet, SOCKET_IO_PATH, Ws};
use crate::error::{Error, Result};

/// Dialling and joining must finish within this time.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// The namespace the baseline serves.
const NAMESPACE: &str = "/";
/// The one event the baseline relays.
const OFFER: &str = "offer";

/// One joined connection's protocol state.
#[derive(Debug)]
pub(crate) struct SocketIoDialect {
    fleet: Arc<Fleet>,
}

/// Dials device `index` with its name in the query and joins the namespace.
pub(crate) async fn open(fleet: &Arc<Fleet>, index: usize) -> Result<(Ws, SocketIoDialect)> {
    let id = fleet.ids.get(index).ok_or(Error::InvalidInput { what: "device index", detail: index.to_string() })?;
    let path = format!("{SOCKET_IO_PATH}&id={id}");
    let refused = |detail: String| Error::Connect { url: format!("ws://{}{path}", fleet.addr), detail };
    let mut ws = wire::dial(fleet.addr, fleet.source(index), &path).await?;
    let joined = async {
        loop {
            let text = match ws.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(refused(err.to_string())),
                None => return Err(refused("closed before joining".into())),
            };
            let answer = match wire::parse(text.as_str(), NAMESPACE) {
                Packet::Open => wire::join(NAMESPACE),
                Packet::Ping => wire::PONG.to_owned(),
                Packet::Joined => return Ok(()),
                Packet::Refused(why) => return Err(refused(format!("namespace refused: {why}"))),
                Packet::Disconnected => return Err(refused("disconnected before joining".into())),
                Packet::Event(..) | Packet::Other => continue,
            };
            ws.send(Message::text(answer)).await.map_err(|e| refused(e.to_string()))?;
        }
    };
    match tokio::time::timeout(OPEN_TIMEOUT, joined).await {
        Ok(Ok(())) => Ok((ws, SocketIoDialect { fleet: fleet.clone() })),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(Error::Timeout { what: "socket.io baseline join", after: OPEN_TIMEOUT }),
    }
}

impl Dialect for SocketIoDialect {
    fn on_text(&mut self, text: &str) -> Reaction {
        let tally = &self.fleet.tally;
        match wire::parse(text, NAMESPACE) {
            Packet::Ping => Reaction::Answer(wire::PONG.to_owned()),
            Packet::Disconnected => Reaction::Ended,
            Packet::Event(event, message) if event == OFFER => {
                tally.arrived(message.get("payload"));
                Reaction::Nothing
            }
            Packet::Event(event, _) => {
                tally.notice(&event);
                Reaction::Nothing
            }
            _ => Reaction::Nothing,
        }
    }

    fn probe_frame(&mut self, probe: &Probe) -> Result<String> {
        let to = self.fleet.ids.get(probe.to).cloned().unwrap_or_default();
        let frame = wire::event(NAMESPACE, OFFER, &json!({"dst": to, "payload": self.fleet.body(probe)}))?;
        self.fleet.tally.ledger().sent(probe.seq);
        Ok(frame)
    }

    fn keepalive(&self) -> Option<String> {
        None
    }
}
