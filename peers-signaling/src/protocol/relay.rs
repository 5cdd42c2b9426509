//! The frame relay's messages (`docs/signaling.md` section 7), its window, frame
//! limit and the units its events cost in the rate limits.

use serde::{Deserialize, Serialize};

/// `"relay-open"` (client → server).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayOpenRequest {
    /// Correlates the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<u64>,
    /// The device to relay with (it must ask for this device too).
    pub peer: String,
}

/// `"relay-open"` (server → both parties).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayOpened {
    /// The relay's id.
    pub relay: u64,
    /// The other party.
    pub peer: String,
    /// The largest frame, in bytes (before base64).
    pub max_frame: u64,
    /// The rate this device's relay events are held to (absent from older
    /// servers): a client that paces its frames and credit to it is never
    /// closed for going over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RelayRate>,
}

/// The device's budget for relay events, in units ([`relay_event_units`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayRate {
    /// Units per second.
    pub units_per_second: u64,
    /// Units that may be spent at once.
    pub burst_units: u64,
}

/// Bytes of a relay event per unit of the rate limits.
pub const RELAY_UNIT_BYTES: usize = 16 * 1024;

/// What a relay frame (of `len` bytes before base64), credit or close
/// (`len` 0) costs in the rate limits' units: one per started
/// [`RELAY_UNIT_BYTES`]. A request of any other kind costs 16 units.
pub fn relay_event_units(len: usize) -> u32 {
    u32::try_from(len / RELAY_UNIT_BYTES + 1).unwrap_or(u32::MAX)
}

/// `"relay-frame"`: one frame, base64 (standard, padded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayFrame {
    /// The relay.
    pub relay: u64,
    /// The frame.
    pub data: String,
}

/// `"relay-credit"`: the receiver may now be sent up to `frames` frames and
/// `bytes` bytes in total since the relay opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayCredit {
    /// The relay.
    pub relay: u64,
    /// Cumulative frames allowed.
    pub frames: u64,
    /// Cumulative bytes allowed.
    pub bytes: u64,
}

/// Each side's initial relay window: frames and bytes it may receive before
/// its first grant. The bytes fit twice in a connection's outgoing buffer
/// (`ServerConfig::max_outgoing_bytes`, 512 KiB by default).
pub const RELAY_WINDOW_FRAMES: u64 = 64;
/// See [`RELAY_WINDOW_FRAMES`].
pub const RELAY_WINDOW_BYTES: u64 = 256 << 10;
/// The largest relay frame a server may offer (`max_frame` in `"relay-open"`'s
/// reply): its base64 must fit the default socket.io message limit (128 KiB)
/// with room for the event. A client caps what a server offers to it.
pub const RELAY_MAX_FRAME_LIMIT: usize = 90 * 1024;

/// `"relay-close"`: why a relay closed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayClose {
    /// The relay.
    pub relay: u64,
    /// The close code (`Normal`, `GoingAway`, `ProtocolError`, `LimitExceeded`, …).
    pub code: peers_sdk::CloseCode,
    /// Why, at most 256 bytes.
    pub message: String,
}
