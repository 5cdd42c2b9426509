//! The lean `peers-signaling` client: the real registration (the server's
//! challenge signed with the device's ed25519 key by
//! [`protocol::answer_challenge`], the helper [`SignalingClient`](crate::SignalingClient)
//! uses too), then `"signal"` requests with `req` numbers and the `"reply"`,
//! `"signal"`, `"outcome"` and `"notice"` events, fed to the ledger.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::fleet::{Dialect, Fleet, Probe, Reaction};
use super::ledger::{FirstOutcome, LaterOutcome};
use super::wire::{self, Packet, SOCKET_IO_PATH, Ws};
use crate::error::{Error, Result};
use crate::protocol::{
    self, Challenge, DeliveredSignalWire, OutcomeKind, OutcomeNotice, Rejection, SignalRequest, events,
};

/// Dialling, joining and registering must finish within this time.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// The `req` of the registration; signals use their sequence numbers (from 1).
const REGISTER_REQ: u64 = 0;

/// One registered connection's protocol state.
#[derive(Debug)]
pub(crate) struct SignalingDialect {
    fleet: Arc<Fleet>,
    namespace: String,
    /// Signals sent and not yet answered.
    awaiting: HashSet<u64>,
}

/// The signal's sequence number from its message id (`m<seq>`).
fn seq_of(id: &str) -> Option<u64> {
    id.strip_prefix('m')?.parse().ok()
}

/// Dials, joins the namespace and registers device `index`.
pub(crate) async fn open(fleet: &Arc<Fleet>, namespace: &str, index: usize) -> Result<(Ws, SignalingDialect)> {
    let mut ws = wire::dial(fleet.addr, fleet.source(index), SOCKET_IO_PATH).await?;
    let mut dialect =
        SignalingDialect { fleet: fleet.clone(), namespace: namespace.to_owned(), awaiting: HashSet::new() };
    let keys = fleet.keys.get(index).ok_or(Error::InvalidInput { what: "device index", detail: index.to_string() })?;
    let refused = |detail: String| Error::Connect { url: format!("ws://{}{SOCKET_IO_PATH}", fleet.addr), detail };
    let registration = async {
        loop {
            let text = match ws.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(refused(err.to_string())),
                None => return Err(refused("closed during registration".into())),
            };
            let answer = match wire::parse(text.as_str(), namespace) {
                Packet::Open => Some(wire::join(namespace)),
                Packet::Ping => Some(wire::PONG.to_owned()),
                Packet::Joined | Packet::Other => None,
                Packet::Refused(why) => return Err(refused(format!("namespace refused: {why}"))),
                Packet::Disconnected => return Err(refused("disconnected during registration".into())),
                Packet::Event(event, value) if event == events::CHALLENGE => {
                    let challenge: Challenge = serde_json::from_value(value).map_err(|e| refused(e.to_string()))?;
                    let mut request = protocol::answer_challenge(keys, &challenge, &format!("http://{}", fleet.addr))
                        .map_err(refused)?;
                    request.req = Some(REGISTER_REQ);
                    Some(wire::event(namespace, events::REGISTER, &request)?)
                }
                Packet::Event(event, value)
                    if event == events::REPLY && protocol::request_number(&value) == Some(REGISTER_REQ) =>
                {
                    return match protocol::parse_reply(value) {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(rejection)) => Err(refused(format!("registration refused: {rejection}"))),
                        Err(detail) => Err(refused(detail)),
                    };
                }
                Packet::Event(event, value) => {
                    dialect.on_event(&event, value);
                    None
                }
            };
            if let Some(answer) = answer {
                ws.send(Message::text(answer)).await.map_err(|e| refused(e.to_string()))?;
            }
        }
    };
    match tokio::time::timeout(OPEN_TIMEOUT, registration).await {
        Ok(Ok(())) => Ok((ws, dialect)),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(Error::Timeout { what: "load generator registration", after: OPEN_TIMEOUT }),
    }
}

impl SignalingDialect {
    fn on_event(&mut self, event: &str, value: Value) -> Reaction {
        let tally = &self.fleet.tally;
        match event {
            events::REPLY => {
                let Some(req) = protocol::request_number(&value) else { return Reaction::Nothing };
                if !self.awaiting.remove(&req) {
                    return Reaction::Nothing;
                }
                let outcome = match protocol::parse_reply(value) {
                    Ok(Ok(fields)) => {
                        match fields.get("outcome").and_then(|o| serde_json::from_value(o.clone()).ok()) {
                            Some(OutcomeKind::Delivered) => FirstOutcome::Delivered,
                            Some(OutcomeKind::Queued) => FirstOutcome::Queued,
                            Some(OutcomeKind::Expired) => FirstOutcome::Expired,
                            None => FirstOutcome::Rejected("reply without an outcome".into()),
                        }
                    }
                    Ok(Err(rejection)) => FirstOutcome::Rejected(rejection.code.as_str().to_owned()),
                    Err(detail) => FirstOutcome::Rejected(format!("malformed reply: {detail}")),
                };
                tally.ledger().reply(req, outcome);
            }
            events::INCOMING => {
                let Ok(signal) = serde_json::from_value::<DeliveredSignalWire>(value) else {
                    tally.notice("malformed signal");
                    return Reaction::Nothing;
                };
                let Some(seq) = seq_of(&signal.id) else { return Reaction::Nothing };
                tally.ledger().received(seq);
                if !signal.queued
                    && let Some(sent_us) = signal.body.get("t").and_then(Value::as_u64)
                {
                    tally.latency(sent_us);
                }
            }
            events::OUTCOME => {
                let Ok(notice) = serde_json::from_value::<OutcomeNotice>(value) else { return Reaction::Nothing };
                let Some(seq) = seq_of(&notice.id) else { return Reaction::Nothing };
                let later = match notice.outcome {
                    OutcomeKind::Delivered => LaterOutcome::Delivered,
                    OutcomeKind::Expired => LaterOutcome::Expired,
                    OutcomeKind::Queued => return Reaction::Nothing,
                };
                tally.ledger().later(seq, later);
            }
            events::NOTICE => {
                let code = serde_json::from_value::<Rejection>(value)
                    .map_or_else(|_| "malformed notice".to_owned(), |r| r.code.as_str().to_owned());
                tally.notice(&code);
            }
            _ => {}
        }
        Reaction::Nothing
    }
}

impl Dialect for SignalingDialect {
    fn on_text(&mut self, text: &str) -> Reaction {
        match wire::parse(text, &self.namespace) {
            Packet::Ping => Reaction::Answer(wire::PONG.to_owned()),
            Packet::Event(event, value) => self.on_event(&event, value),
            Packet::Disconnected => Reaction::Ended,
            // The join's answer, accepted or refused (a full server), is the
            // leave barrier.
            Packet::Joined | Packet::Refused(_) => Reaction::Left,
            _ => Reaction::Nothing,
        }
    }

    fn probe_frame(&mut self, probe: &Probe) -> Result<String> {
        let to = self.fleet.ids.get(probe.to).cloned().unwrap_or_default();
        let request = SignalRequest {
            req: Some(probe.seq),
            id: format!("m{}", probe.seq),
            to,
            kind: "offer".into(),
            body: self.fleet.body(probe),
            ttl_ms: self.fleet.ttl_ms,
        };
        let frame = wire::event(&self.namespace, events::SIGNAL, &request)?;
        self.awaiting.insert(probe.seq);
        self.fleet.tally.ledger().sent(probe.seq);
        Ok(frame)
    }

    fn awaiting(&self) -> usize {
        self.awaiting.len()
    }

    /// Leave the namespace, then join it again without registering: the
    /// server handles a connection's packets in order, and the join's answer
    /// is queued behind every packet the server handed to this connection
    /// before it processed the leave (a delivery after that finds the device
    /// offline and is queued instead). So once the answer arrives, nothing
    /// delivered to this device is still on its way. The new, unregistered
    /// namespace connection just ends with the WebSocket.
    fn leave_frames(&self) -> Vec<String> {
        vec![wire::leave(&self.namespace), wire::join(&self.namespace)]
    }

    fn has_barrier(&self) -> bool {
        true
    }

    fn keepalive(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_carry_the_sequence_number() {
        assert_eq!(seq_of("m42"), Some(42));
        assert_eq!(seq_of("42"), None);
        assert_eq!(seq_of("mx"), None);
    }
}
