//! Signals: what two devices exchange through a signaling channel to open a WebRTC
//! connection, and the checks every incoming signal passes before anything uses it.
//!
//! Every signal names a *session*: one connection attempt, with an id the dialer
//! picks. A signal body is a JSON object:
//!
//! ```text
//! offer      { "session": "<id>", "sdp": "<SDP>" }
//! answer     { "session": "<id>", "sdp": "<SDP>" }
//! candidate  { "session": "<id>", "candidate": "candidate:…", "sdpMid": "0", "sdpMLineIndex": 0 }
//! cancel     { "session": "<id>", "message": "<text>" }
//! error      { "session": "<id>", "message": "<text>" }
//! ```
//!
//! The kind of signal (offer, answer, …) travels beside the body, as the signaling
//! server's message kind. Candidate fields use the browser's `RTCIceCandidateInit`
//! names so JavaScript peers can pass them straight through.

use std::fmt;

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::error::SignalRefusal;

/// Longest SDP accepted, in bytes. A data-channel-only SDP is about 1 KiB; this
/// leaves room for many inline candidates.
pub const MAX_SDP_LEN: usize = 32 * 1024;
/// Longest ICE candidate line accepted, in bytes.
pub const MAX_CANDIDATE_LEN: usize = 1024;
/// Longest session id accepted, in bytes.
pub const MAX_SESSION_ID_LEN: usize = 64;
/// Longest cancel or error reason kept, in bytes (longer ones are cut).
pub const MAX_REASON_LEN: usize = 256;
/// Longest `sdpMid` accepted, in bytes.
pub const MAX_MID_LEN: usize = 32;

/// The id of one connection attempt, chosen by the dialer: 1 to 64 characters from
/// `[0-9A-Za-z_-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

impl SessionId {
    /// A fresh random id (128 bits, hex).
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        OsRng.fill_bytes(&mut bytes);
        SessionId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SessionId {
    type Error = SignalRefusal;

    fn try_from(id: String) -> Result<Self, SignalRefusal> {
        let valid = !id.is_empty()
            && id.len() <= MAX_SESSION_ID_LEN
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid { Ok(SessionId(id)) } else { Err(SignalRefusal::BadSessionId) }
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> String {
        id.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}

/// One trickled ICE candidate, as the browser's `RTCIceCandidateInit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    /// The `candidate:` attribute line (without `a=`); empty marks the end of
    /// candidates.
    pub candidate: String,
    /// The media stream id the candidate belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// The index of the media section the candidate belongs to.
    #[serde(default, rename = "sdpMLineIndex", skip_serializing_if = "Option::is_none")]
    pub sdp_mline_index: Option<u16>,
}

/// What a signal carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignalPayload {
    /// The dialer's session description.
    Offer {
        /// SDP text.
        sdp: String,
    },
    /// The acceptor's session description.
    Answer {
        /// SDP text.
        sdp: String,
    },
    /// A trickled ICE candidate.
    Candidate(IceCandidate),
    /// The sender gives up on the session.
    Cancel {
        /// Why, for logs.
        reason: String,
    },
    /// The sender refused a signal of this session.
    Error {
        /// Why, for logs.
        reason: String,
    },
}

impl SignalPayload {
    /// A short name of the payload's kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            SignalPayload::Offer { .. } => "offer",
            SignalPayload::Answer { .. } => "answer",
            SignalPayload::Candidate(_) => "candidate",
            SignalPayload::Cancel { .. } => "cancel",
            SignalPayload::Error { .. } => "error",
        }
    }
}

/// A signal of one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebRtcSignal {
    /// The connection attempt it belongs to.
    pub session: SessionId,
    /// What it carries.
    pub payload: SignalPayload,
}

impl WebRtcSignal {
    /// Checks the limits and the shape of every field; the endpoint runs this on
    /// every incoming signal before it looks at it.
    pub fn validate(&self) -> Result<(), SignalRefusal> {
        match &self.payload {
            SignalPayload::Offer { sdp } | SignalPayload::Answer { sdp } => validate_sdp(sdp),
            SignalPayload::Candidate(candidate) => validate_candidate(candidate),
            SignalPayload::Cancel { reason } | SignalPayload::Error { reason } => {
                check_len("reason", reason.len(), MAX_REASON_LEN)
            }
        }
    }

    /// The JSON body of this signal (see the module documentation).
    pub fn body(&self) -> serde_json::Value {
        let session = self.session.as_str();
        match &self.payload {
            SignalPayload::Offer { sdp } | SignalPayload::Answer { sdp } => {
                serde_json::json!({ "session": session, "sdp": sdp })
            }
            SignalPayload::Candidate(candidate) => {
                let mut body = serde_json::json!({ "session": session, "candidate": candidate.candidate });
                if let Some(mid) = &candidate.sdp_mid {
                    body["sdpMid"] = mid.clone().into();
                }
                if let Some(index) = candidate.sdp_mline_index {
                    body["sdpMLineIndex"] = index.into();
                }
                body
            }
            SignalPayload::Cancel { reason } | SignalPayload::Error { reason } => {
                serde_json::json!({ "session": session, "message": reason })
            }
        }
    }

    /// Reads a signal of `kind` from its JSON body, checking every field. The
    /// body's size must have been bounded by the channel that delivered it.
    pub fn from_body(kind: SignalKindName, body: &serde_json::Value) -> Result<WebRtcSignal, SignalRefusal> {
        let text = |field: &'static str| -> Result<String, SignalRefusal> {
            body.get(field)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| SignalRefusal::BadBody(format!("missing string field {field:?}")))
        };
        let session = SessionId::try_from(text("session")?)?;
        let payload = match kind {
            SignalKindName::Offer => SignalPayload::Offer { sdp: text("sdp")? },
            SignalKindName::Answer => SignalPayload::Answer { sdp: text("sdp")? },
            SignalKindName::Candidate => {
                let candidate: IceCandidate = serde_json::from_value(body.clone())
                    .map_err(|e| SignalRefusal::BadBody(crate::error::bounded(e.to_string())))?;
                SignalPayload::Candidate(candidate)
            }
            SignalKindName::Cancel => SignalPayload::Cancel { reason: cut(text("message").unwrap_or_default()) },
            SignalKindName::Error => SignalPayload::Error { reason: cut(text("message").unwrap_or_default()) },
        };
        let signal = WebRtcSignal { session, payload };
        signal.validate()?;
        Ok(signal)
    }
}

/// The kinds of signal, as a signaling channel names them beside the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignalKindName {
    /// An offer.
    Offer,
    /// An answer.
    Answer,
    /// A trickled ICE candidate.
    Candidate,
    /// A cancellation.
    Cancel,
    /// A refusal.
    Error,
}

impl SignalPayload {
    /// The kind of this payload.
    pub fn kind_name(&self) -> SignalKindName {
        match self {
            SignalPayload::Offer { .. } => SignalKindName::Offer,
            SignalPayload::Answer { .. } => SignalKindName::Answer,
            SignalPayload::Candidate(_) => SignalKindName::Candidate,
            SignalPayload::Cancel { .. } => SignalKindName::Cancel,
            SignalPayload::Error { .. } => SignalKindName::Error,
        }
    }
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), SignalRefusal> {
    if len > max { Err(SignalRefusal::TooLarge { field, len, max }) } else { Ok(()) }
}

/// Cuts a reason to [`MAX_REASON_LEN`] on a char boundary.
pub(crate) fn cut(mut reason: String) -> String {
    peers_sdk::text::truncate(&mut reason, MAX_REASON_LEN);
    reason
}

fn validate_sdp(sdp: &str) -> Result<(), SignalRefusal> {
    check_len("sdp", sdp.len(), MAX_SDP_LEN)?;
    if !sdp.starts_with("v=0") {
        return Err(SignalRefusal::BadSdp("does not start with v=0".into()));
    }
    if !sdp.lines().any(|line| line.starts_with("m=application")) {
        return Err(SignalRefusal::BadSdp("no application (data channel) section".into()));
    }
    crate::sdp::sha256_fingerprint(sdp).map_err(|e| SignalRefusal::BadSdp(e.to_string()))?;
    Ok(())
}

fn validate_candidate(candidate: &IceCandidate) -> Result<(), SignalRefusal> {
    check_len("candidate", candidate.candidate.len(), MAX_CANDIDATE_LEN)?;
    if let Some(mid) = &candidate.sdp_mid {
        check_len("sdpMid", mid.len(), MAX_MID_LEN)?;
    }
    let line = candidate.candidate.strip_prefix("a=").unwrap_or(&candidate.candidate);
    if !line.is_empty() && !line.starts_with("candidate:") {
        return Err(SignalRefusal::BadCandidate("does not start with candidate:".into()));
    }
    if line.chars().any(|c| c.is_control()) {
        return Err(SignalRefusal::BadCandidate("control characters".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_checked() {
        assert!(SessionId::try_from(String::new()).is_err());
        assert!(SessionId::try_from("a b".to_string()).is_err());
        assert!(SessionId::try_from("x".repeat(MAX_SESSION_ID_LEN + 1)).is_err());
        assert!(SessionId::try_from("abc-DEF_09".to_string()).is_ok());
        let id = SessionId::random();
        assert_eq!(SessionId::try_from(id.to_string()).unwrap(), id);
        assert_ne!(SessionId::random(), id);
    }

    #[test]
    fn bodies_round_trip() {
        let session = SessionId::random();
        let candidate = IceCandidate {
            candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
        };
        let signals = [
            WebRtcSignal { session: session.clone(), payload: SignalPayload::Candidate(candidate) },
            WebRtcSignal { session: session.clone(), payload: SignalPayload::Cancel { reason: "bye".into() } },
            WebRtcSignal { session, payload: SignalPayload::Error { reason: "no".into() } },
        ];
        for signal in signals {
            let body = signal.body();
            assert_eq!(WebRtcSignal::from_body(signal.payload.kind_name(), &body).unwrap(), signal);
        }
    }

    #[test]
    fn hostile_bodies_are_refused() {
        let kind = SignalKindName::Offer;
        assert!(WebRtcSignal::from_body(kind, &serde_json::json!({})).is_err());
        assert!(WebRtcSignal::from_body(kind, &serde_json::json!({"session": 5, "sdp": "v=0"})).is_err());
        assert!(WebRtcSignal::from_body(kind, &serde_json::json!({"session": "s", "sdp": "hello"})).is_err());
        let huge = format!("v=0\r\nm=application\r\n{}", "a".repeat(MAX_SDP_LEN));
        assert!(matches!(
            WebRtcSignal::from_body(kind, &serde_json::json!({"session": "s", "sdp": huge})),
            Err(SignalRefusal::TooLarge { field: "sdp", .. })
        ));
        let bad = serde_json::json!({"session": "s", "candidate": "rm -rf"});
        assert!(WebRtcSignal::from_body(SignalKindName::Candidate, &bad).is_err());
        let long_reason = serde_json::json!({"session": "s", "message": "é".repeat(1000)});
        let cancel = WebRtcSignal::from_body(SignalKindName::Cancel, &long_reason).unwrap();
        assert!(matches!(cancel.payload, SignalPayload::Cancel { reason } if reason.len() <= MAX_REASON_LEN));
    }
}
