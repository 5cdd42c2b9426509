//! Checks of everything a client sends: ids, device ids, base64 fields, and
//! each signal kind's body against the size limits.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use peers_sdk::DeviceId;
use serde_json::Value;

use super::{ErrorCode, MAX_MESSAGE_ID_LEN, Rejection, SignalKind, clip};

// ---------------------------------------------------------------------------

/// Size limits of signal payloads.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PayloadLimits {
    /// Largest body of any signal, as compact JSON. Default: 64 KiB.
    pub max_body_bytes: usize,
    /// Largest `sdp` of an offer or answer. Default: 32 KiB.
    pub max_sdp_bytes: usize,
    /// Largest `candidate` of an ICE candidate. Default: 1 KiB.
    pub max_candidate_bytes: usize,
}

impl Default for PayloadLimits {
    fn default() -> Self {
        PayloadLimits { max_body_bytes: 64 * 1024, max_sdp_bytes: 32 * 1024, max_candidate_bytes: 1024 }
    }
}

/// Longest `sdpMid`, `usernameFragment`, `type` or error `message` in a body.
const MAX_SHORT_FIELD: usize = 256;
/// Longest `message` of an `error` signal.
const MAX_ERROR_MESSAGE: usize = 1024;

fn bad(message: impl Into<String>) -> Rejection {
    Rejection::new(ErrorCode::BadRequest, message)
}

/// Checks a message id: 1 to [`MAX_MESSAGE_ID_LEN`] bytes of `A-Z a-z 0-9 . _ : -`.
pub fn validate_message_id(id: &str) -> Result<(), Rejection> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
    if id.is_empty() || id.len() > MAX_MESSAGE_ID_LEN || !id.chars().all(ok_char) {
        return Err(bad(format!("message id {:?} must be 1 to {MAX_MESSAGE_ID_LEN} of A-Z a-z 0-9 . _ : -", clip(id))));
    }
    Ok(())
}

/// Parses a device id from the wire.
pub fn parse_device_id(field: &str, text: &str) -> Result<DeviceId, Rejection> {
    text.parse().map_err(|_| bad(format!("{field} {:?} is not a device id (40 hex digits)", clip(text))))
}

/// Checks a signal body against its kind and the limits; returns its compact
/// JSON size.
pub fn validate_body(kind: SignalKind, body: &Value, limits: &PayloadLimits) -> Result<usize, Rejection> {
    let Value::Object(fields) = body else { return Err(bad(format!("{kind} body must be a JSON object"))) };
    let size = serde_json::to_vec(body).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > limits.max_body_bytes {
        return Err(Rejection::new(
            ErrorCode::TooLarge,
            format!("{kind} body is {size} bytes, over the limit of {}", limits.max_body_bytes),
        ));
    }
    let text = |name: &str, required: bool, max: usize| -> Result<(), Rejection> {
        match fields.get(name) {
            None | Some(Value::Null) if !required => Ok(()),
            Some(Value::String(s)) if s.len() <= max => Ok(()),
            Some(Value::String(s)) => Err(Rejection::new(
                ErrorCode::TooLarge,
                format!("{kind} {name} is {} bytes, over the limit of {max}", s.len()),
            )),
            None | Some(Value::Null) => Err(bad(format!("{kind} body needs a string {name}"))),
            Some(_) => Err(bad(format!("{kind} {name} must be a string"))),
        }
    };
    match kind {
        SignalKind::Offer | SignalKind::Answer => {
            text("sdp", true, limits.max_sdp_bytes)?;
            if fields.get("sdp").and_then(Value::as_str).is_some_and(str::is_empty) {
                return Err(bad(format!("{kind} sdp is empty")));
            }
            text("type", false, MAX_SHORT_FIELD)?;
        }
        SignalKind::IceCandidate => {
            text("candidate", true, limits.max_candidate_bytes)?;
            text("sdpMid", false, MAX_SHORT_FIELD)?;
            text("usernameFragment", false, MAX_SHORT_FIELD)?;
            match fields.get("sdpMLineIndex") {
                None | Some(Value::Null) => {}
                Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= u64::from(u16::MAX)) => {}
                Some(_) => return Err(bad("ice-candidate sdpMLineIndex must be an integer 0..=65535")),
            }
        }
        SignalKind::Error => text("message", false, MAX_ERROR_MESSAGE)?,
        SignalKind::Ready | SignalKind::Cancel => {}
    }
    Ok(size)
}

/// Decodes base64 into exactly `N` bytes.
pub fn decode_fixed<const N: usize>(field: &str, text: &str) -> Result<[u8; N], Rejection> {
    if text.len() > 4 * N.div_ceil(3) + 4 {
        return Err(bad(format!("{field} is too long for {N} bytes")));
    }
    let bytes = STANDARD.decode(text).map_err(|_| bad(format!("{field} is not base64")))?;
    bytes.try_into().map_err(|_| bad(format!("{field} must be {N} bytes")))
}

/// Encodes bytes as base64 (standard alphabet, padded).
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}
