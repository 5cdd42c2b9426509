//! The callbacks `rust_socketio` runs for each server event. They run in its
//! one polling task, in arrival order, and never wait: they parse, then hand
//! the result to a channel, a pending request or a relay.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use peers_sdk::DeviceId;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::relay::RelayCore;
use super::{ClientEvent, DeliveredSignal, Outcome, Shared, lock};
use crate::error::{Error, Result};
use crate::protocol::{
    self, Challenge, DeliveredSignalWire, OutcomeKind, OutcomeNotice, PresenceNotice, Rejection, SessionNotice, events,
};

type Done = Pin<Box<dyn Future<Output = ()> + Send>>;

fn done() -> Done {
    Box::pin(std::future::ready(()))
}

/// The one JSON argument of a server event.
fn argument<T: DeserializeOwned>(what: &'static str, payload: Payload) -> Result<T> {
    let malformed = |detail: String| Error::Protocol { what, detail };
    match payload {
        Payload::Text(mut values) if values.len() == 1 => {
            serde_json::from_value(values.pop().unwrap_or(Value::Null)).map_err(|e| malformed(e.to_string()))
        }
        _ => Err(malformed("expected one JSON argument".into())),
    }
}

/// Prefix of the error `rust_socketio` reports for a socket.io `connect_error`.
const CONNECT_ERROR_PREFIX: &str = "Received an ConnectError frame: ";

pub(super) fn callbacks(builder: ClientBuilder, shared: &Arc<Shared>) -> ClientBuilder {
    let on = |handle: fn(&Shared, Payload)| {
        let shared = shared.clone();
        move |payload: Payload, _: Client| -> Done {
            handle(&shared, payload);
            done()
        }
    };
    let error_shared = shared.clone();
    let close_shared = shared.clone();
    let relay_shared = shared.clone();
    builder
        .on(events::CHALLENGE, on(on_challenge))
        .on(events::REPLY, on(on_reply))
        .on(events::INCOMING, on(on_signal))
        .on(events::OUTCOME, on(on_outcome))
        .on(events::PRESENCE, on(on_presence))
        .on(events::NOTICE, on(on_notice))
        .on(events::SESSION, on(on_session))
        .on(events::RELAY_FRAME, on(on_relay_frame))
        .on(events::RELAY_CREDIT, on(on_relay_credit))
        .on(events::RELAY_CLOSE, on(on_relay_close))
        .on(events::RELAY_OPEN, move |payload: Payload, client: Client| -> Done {
            if let Some(orphan) = on_relay_open(&relay_shared, payload) {
                // Nobody waits for this relay any more (the caller gave up):
                // tell the peer so its end closes too.
                let close = crate::protocol::RelayClose {
                    relay: orphan,
                    code: peers_sdk::CloseCode::Refused,
                    message: "the device stopped waiting for this relay".into(),
                };
                tokio::spawn(async move {
                    if let Ok(value) = serde_json::to_value(close) {
                        let _ = client.emit(events::RELAY_CLOSE, Payload::Text(vec![value])).await;
                    }
                });
            }
            done()
        })
        .on(Event::Error, move |payload: Payload, _: Client| -> Done {
            let message = match payload {
                Payload::Text(values) => values
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => "error".into(),
            };
            let message = match message.strip_prefix(CONNECT_ERROR_PREFIX) {
                Some(detail) => format!(
                    "server refused the connection: {}",
                    serde_json::from_str::<Value>(detail)
                        .ok()
                        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or_else(|| detail.to_owned())
                ),
                None => format!("socket.io error: {message}"),
            };
            error_shared.close(message);
            done()
        })
        .on(Event::Close, move |_: Payload, _: Client| -> Done {
            close_shared.close("the server disconnected");
            done()
        })
}

fn on_challenge(shared: &Shared, payload: Payload) {
    match argument::<Challenge>("challenge", payload) {
        Ok(challenge) => {
            if let Some(tx) = lock(&shared.challenge).take() {
                let _ = tx.send(challenge);
            }
        }
        Err(err) => warn!(%err, "ignoring a malformed challenge"),
    }
}

fn on_reply(shared: &Shared, payload: Payload) {
    match argument::<Value>("reply", payload) {
        Ok(value) => match protocol::request_number(&value).and_then(|req| lock(&shared.pending).remove(&req)) {
            Some(tx) => {
                let _ = tx.send(value);
            }
            None => debug!("reply to no pending request (late after a timeout?)"),
        },
        Err(err) => warn!(%err, "ignoring a malformed reply"),
    }
}

fn on_signal(shared: &Shared, payload: Payload) {
    let signal = argument::<DeliveredSignalWire>("signal", payload).and_then(|wire| {
        let from = wire.from.parse().map_err(|_| Error::Protocol { what: "signal", detail: "bad sender id".into() })?;
        Ok(DeliveredSignal {
            id: wire.id,
            from,
            kind: wire.kind,
            body: wire.body,
            sent_at: wire.sent_at,
            queued: wire.queued,
        })
    });
    match signal {
        Ok(signal) => {
            if let Err(mpsc::error::TrySendError::Full(signal)) = shared.incoming.try_send(signal) {
                warn!(id = %signal.id, from = %signal.from, "incoming signal channel full; signal dropped");
                shared.event(ClientEvent::Dropped { id: signal.id, from: signal.from });
            }
        }
        Err(err) => warn!(%err, "ignoring a malformed signal"),
    }
}

fn on_outcome(shared: &Shared, payload: Payload) {
    match argument::<OutcomeNotice>("outcome", payload) {
        Ok(notice) => {
            let Ok(to) = notice.to.parse() else { return warn!("outcome with a bad recipient id") };
            let outcome = match notice.outcome {
                OutcomeKind::Delivered => Outcome::Delivered,
                OutcomeKind::Expired => Outcome::Expired,
                OutcomeKind::Queued => Outcome::Queued { expires_at: 0 },
            };
            shared.event(ClientEvent::Outcome { id: notice.id, to, outcome });
        }
        Err(err) => warn!(%err, "ignoring a malformed outcome"),
    }
}

fn on_presence(shared: &Shared, payload: Payload) {
    match argument::<PresenceNotice>("presence", payload) {
        Ok(notice) => match notice.device.parse() {
            Ok(device) => shared.event(ClientEvent::Presence { device, online: notice.online }),
            Err(_) => warn!("presence with a bad device id"),
        },
        Err(err) => warn!(%err, "ignoring a malformed presence notice"),
    }
}

fn on_notice(shared: &Shared, payload: Payload) {
    match argument::<Rejection>("notice", payload) {
        Ok(notice) => shared.event(ClientEvent::Notice(notice)),
        Err(err) => warn!(%err, "ignoring a malformed notice"),
    }
}

/// Hands a newly opened relay to its `open_relay` call; returns its id if
/// nobody waits for it.
fn on_relay_open(shared: &Shared, payload: Payload) -> Option<u64> {
    let opened = match argument::<crate::protocol::RelayOpened>("relay-open", payload) {
        Ok(opened) => opened,
        Err(err) => {
            warn!(%err, "ignoring a malformed relay-open");
            return None;
        }
    };
    let Ok(peer) = opened.peer.parse::<DeviceId>() else {
        warn!("relay-open with a bad peer id");
        return None;
    };
    let max_frame = usize::try_from(opened.max_frame).unwrap_or(usize::MAX).min(crate::protocol::RELAY_MAX_FRAME_LIMIT);
    if let Some(rate) = opened.rate {
        lock(&shared.relay_pacer).set_rate(rate);
    }
    let core = RelayCore::new(opened.relay, peer, max_frame, shared.relay_pacer.clone());
    // Registered before the waiter runs, so frames that follow find it.
    lock(&shared.relays).insert(opened.relay, core.clone());
    let waiter = lock(&shared.relay_waiters).remove(&peer);
    if waiter.is_none_or(|waiter| waiter.send(core.clone()).is_err()) {
        lock(&shared.relays).remove(&opened.relay);
        core.close_quietly(peers_sdk::CloseReason::new(peers_sdk::CloseCode::Refused, "nobody waits for this relay"));
        return Some(opened.relay);
    }
    None
}

fn relay_core(shared: &Shared, relay: u64) -> Option<Arc<RelayCore>> {
    lock(&shared.relays).get(&relay).cloned()
}

fn on_relay_frame(shared: &Shared, payload: Payload) {
    match argument::<crate::protocol::RelayFrame>("relay-frame", payload) {
        Ok(frame) => match relay_core(shared, frame.relay) {
            Some(core) => core.on_frame(&frame.data),
            None => debug!(relay = frame.relay, "frame for a relay that is gone"),
        },
        Err(err) => warn!(%err, "ignoring a malformed relay frame"),
    }
}

fn on_relay_credit(shared: &Shared, payload: Payload) {
    match argument::<crate::protocol::RelayCredit>("relay-credit", payload) {
        Ok(credit) => {
            if let Some(core) = relay_core(shared, credit.relay) {
                core.on_credit(credit);
            }
        }
        Err(err) => warn!(%err, "ignoring a malformed relay credit"),
    }
}

fn on_relay_close(shared: &Shared, payload: Payload) {
    match argument::<crate::protocol::RelayClose>("relay-close", payload) {
        Ok(close) => {
            if let Some(core) = lock(&shared.relays).remove(&close.relay) {
                core.close_quietly(peers_sdk::CloseReason::new(close.code, close.message).as_remote());
            }
        }
        Err(err) => warn!(%err, "ignoring a malformed relay close"),
    }
}

fn on_session(shared: &Shared, payload: Payload) {
    match argument::<SessionNotice>("session", payload) {
        Ok(notice) => shared.event(ClientEvent::Session {
            transfer_id: notice.transfer_id,
            state: notice.state,
            peer: notice.peer.and_then(|p| p.parse().ok()),
            reason: notice.reason,
        }),
        Err(err) => warn!(%err, "ignoring a malformed session notice"),
    }
}
