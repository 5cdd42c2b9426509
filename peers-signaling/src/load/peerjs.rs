//! The lean PeerJS client, for the baseline: `GET /peerjs?key=peerjs&id=…&token=…`
//! upgraded to a WebSocket, `{"type":"OPEN"}` once accepted, then
//! `{"type":"OFFER","dst":…,"payload":…}` out and the same with `"src"` in.
//! PeerJS has no replies and no outcomes, so a message is done when its
//! target receives it. `{"type":"HEARTBEAT"}` keeps the connection alive.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::fleet::{Dialect, Fleet, Probe, Reaction};
use super::wire::{self, Ws};
use crate::error::{Error, Result};

/// Dialling and the `OPEN` message must come within this time.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// One PeerJS connection's protocol state.
#[derive(Debug)]
pub(crate) struct PeerJsDialect {
    fleet: Arc<Fleet>,
}

/// Connects device `index` as the PeerJS id the fleet gave it.
pub(crate) async fn open(fleet: &Arc<Fleet>, index: usize) -> Result<(Ws, PeerJsDialect)> {
    let id = fleet.ids.get(index).ok_or(Error::InvalidInput { what: "device index", detail: index.to_string() })?;
    let path = format!("/peerjs?key=peerjs&id={id}&token=t{index}");
    let refused = |detail: String| Error::Connect { url: format!("ws://{}{path}", fleet.addr), detail };
    let mut ws = wire::dial(fleet.addr, fleet.source(index), &path).await?;
    let opened = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                    match message.get("type").and_then(Value::as_str) {
                        Some("OPEN") => return Ok(()),
                        other => return Err(refused(format!("expected OPEN, got {other:?}: {message}"))),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(refused(err.to_string())),
                None => return Err(refused("closed before OPEN".into())),
            }
        }
    };
    match tokio::time::timeout(OPEN_TIMEOUT, opened).await {
        Ok(Ok(())) => Ok((ws, PeerJsDialect { fleet: fleet.clone() })),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(Error::Timeout { what: "PeerJS open", after: OPEN_TIMEOUT }),
    }
}

impl Dialect for PeerJsDialect {
    fn on_text(&mut self, text: &str) -> Reaction {
        let tally = &self.fleet.tally;
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            tally.notice("malformed frame");
            return Reaction::Nothing;
        };
        match message.get("type").and_then(Value::as_str) {
            Some("OFFER") => {
                tally.arrived(message.get("payload"));
            }
            Some(other) => tally.notice(other),
            None => tally.notice("frame without a type"),
        }
        Reaction::Nothing
    }

    fn probe_frame(&mut self, probe: &Probe) -> Result<String> {
        let to = self.fleet.ids.get(probe.to).cloned().unwrap_or_default();
        let frame = json!({"type": "OFFER", "dst": to, "payload": self.fleet.body(probe)}).to_string();
        self.fleet.tally.ledger().sent(probe.seq);
        Ok(frame)
    }

    fn keepalive(&self) -> Option<String> {
        Some(r#"{"type":"HEARTBEAT"}"#.to_owned())
    }
}
