//! The relay events: `"relay-open"` (a request), and `"relay-frame"`,
//! `"relay-credit"`, `"relay-close"` (forwarded to the other party, no reply).
//! The bookkeeping is [`RelayTable`](crate::relay::RelayTable): this is the
//! local backend's part (`state_local.rs`); Redis mode has its own in
//! `cluster_relay.rs`.

use std::net::IpAddr;

use peers_sdk::{CloseCode, CloseReason, DeviceId};
use serde_json::Value as Json;
use tracing::{debug, info};

use super::hub::{Hub, Peer};
use super::state::RelayOpening;
use super::{Shared, now_ms};
use crate::protocol::{Rejection, RelayClose, RelayCredit, RelayEvent, RelayFrame, RelayOpened, events};
use crate::relay::{Ended, FrameRefusal, Opening};

/// `"relay-open"` in the local backend.
pub(super) fn open(
    shared: &Shared,
    device: DeviceId,
    origin: Option<IpAddr>,
    peer: DeviceId,
) -> Result<RelayOpening, Rejection> {
    let mut hub = shared.hub();
    let max_frame = hub.relays().limits().max_frame as u64;
    // A device that does not allow `device` is asked through its shadow: the
    // request waits like one for a device that does not exist, never pairs.
    let peer = if peer == device { peer } else { hub.address(&device, &peer) };
    let opening = match hub.relays().open(now_ms(), device, origin, peer)? {
        Opening::Waiting => RelayOpening::Waiting,
        Opening::Open(relay) => {
            info!(relay = relay.id, a = %relay.a, b = %relay.b, "relay open");
            for (party, other) in [(relay.a, relay.b), (relay.b, relay.a)] {
                let rate = Some(shared.config.rate_limits.relay_rate());
                let opened = RelayOpened { relay: relay.id, peer: other.to_string(), max_frame, rate };
                hub.emit_to(&party, events::RELAY_OPEN, &opened);
            }
            RelayOpening::Open { relay: relay.id }
        }
    };
    drop(hub);
    shared.wake_expiry();
    Ok(opening)
}

/// Tells both parties that a relay ended.
pub(super) fn tell_ended(hub: &Hub, ended: &Ended) {
    debug!(relay = ended.relay.id, code = ?ended.code, message = %ended.message, "relay closed");
    let notice = close_notice(ended.relay.id, ended.code, &ended.message);
    for party in [ended.relay.a, ended.relay.b] {
        hub.emit_to(&party, events::RELAY_CLOSE, &notice);
    }
}

pub(super) fn close_notice(relay: u64, code: CloseCode, message: &str) -> RelayClose {
    // `CloseReason::new` cuts the message to its wire limit.
    RelayClose { relay, code, message: CloseReason::new(code, message).message }
}

/// A relay event the sender may not send: tell it the relay is closed.
pub(super) fn refuse(hub: &Hub, device: &DeviceId, relay: u64, message: &str) {
    hub.emit_to(device, events::RELAY_CLOSE, &close_notice(relay, CloseCode::ProtocolError, message));
}

/// The decoded length of base64 `data`, if it is not longer than `max` bytes.
pub(super) fn decoded_len(data: &str, max: usize) -> Option<usize> {
    if data.len() > max.div_ceil(3) * 4 || !data.len().is_multiple_of(4) {
        return None;
    }
    let padding = data.bytes().rev().take_while(|&b| b == b'=').count();
    (data.len() / 4 * 3).checked_sub(padding)
}

/// A relay frame, credit or close from `device` (local backend).
pub(super) fn handle(shared: &Shared, device: DeviceId, event: RelayEvent) {
    match event {
        RelayEvent::Frame(frame) => forward_frame(shared, device, frame),
        RelayEvent::Credit(credit) => forward_credit(shared, device, credit),
        RelayEvent::Close(close) => forward_close(shared, device, close),
    }
}

fn forward_frame(shared: &Shared, device: DeviceId, frame: RelayFrame) {
    let mut hub = shared.hub();
    let max = hub.relays().limits().max_frame;
    // Malformed or oversized data counts as a frame over the limit: it ends
    // the relay (or, for a relay that does not exist, is refused).
    let len = decoded_len(&frame.data, max).unwrap_or(usize::MAX);
    match hub.relays().frame(frame.relay, &device, len) {
        Ok(to) => {
            if !hub.emit_to(&to, events::RELAY_FRAME, &frame)
                && let Some(ended) =
                    hub.relays().end(frame.relay, CloseCode::TransportFailure, "the other device is not taking frames")
            {
                tell_ended(&hub, &ended);
            }
        }
        Err(FrameRefusal::Unknown) => refuse(&hub, &device, frame.relay, "no such relay"),
        Err(FrameRefusal::Ended(ended)) => {
            if let Some(ended) = ended {
                tell_ended(&hub, &ended);
            }
        }
    }
}

fn forward_credit(shared: &Shared, device: DeviceId, credit: RelayCredit) {
    let mut hub = shared.hub();
    match hub.relays().credit(credit.relay, &device, credit.frames, credit.bytes) {
        Some(to) => {
            hub.emit_to(&to, events::RELAY_CREDIT, &credit);
        }
        None => refuse(&hub, &device, credit.relay, "no such relay"),
    }
}

fn forward_close(shared: &Shared, device: DeviceId, close: RelayClose) {
    let mut hub = shared.hub();
    if hub.relays_ref().peer_of(close.relay, &device).is_none() {
        // Closing a relay that is already gone is harmless.
        return;
    }
    if let Some(ended) = hub.relays().end(close.relay, close.code, &close.message) {
        let to = ended.relay.other(&device);
        if let Some(to) = to {
            hub.emit_to(&to, events::RELAY_CLOSE, &close_notice(close.relay, close.code, &close.message));
        }
    }
}

/// A relay event over the rate limits: its relay closes for both parties
/// (a dropped frame or credit would silently break the stream).
pub(super) fn rate_limited(shared: &Shared, peer: &Peer, device: DeviceId, payload: &Json) {
    let Some(relay) = payload.get("relay").and_then(Json::as_u64) else { return };
    let message = "relay events over the request rate";
    let close = close_notice(relay, CloseCode::LimitExceeded, message);
    shared.state.relay_event(shared, device, RelayEvent::Close(close.clone()));
    peer.emit(events::RELAY_CLOSE, &close);
}
