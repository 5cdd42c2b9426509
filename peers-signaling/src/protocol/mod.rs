//! The signaling wire protocol: JSON events over socket.io, shared by the server
//! and the client. `docs/signaling.md` is the prose version of this module.
//!
//! ```text
//! client                                   server
//!   ── connect (namespace /signaling) ──▶
//!   ◀── "challenge" {v, nonce}            fresh 32 random bytes per connection
//!   ── "register" {req, public_key, origin, signature} ──▶
//!          signature = ed25519("peers/v1 signaling register" || nonce || origin)
//!   ◀── reply {req, ok, device_id, queued}   then the queued "signal"s, in order
//!   ── "signal" {req, id, to, kind, body, ttl_ms?} ──▶
//!   ◀── reply {req, ok, id, outcome}     delivered | queued | expired, or an error
//!   ◀── "outcome" {id, to, outcome}      later: delivered from the queue, or expired
//!   ── "subscribe" {req, devices} ──▶  ◀── reply {req, ok, online}
//!   ◀── "presence" {device, online}
//! ```
//!
//! Every request is one JSON object. When the client asks for a socket.io ack, the
//! reply is the ack's argument; otherwise the server emits a `"reply"` event. Either
//! way the reply repeats the request's `req` number. (The Rust client uses
//! `"reply"` events: `rust_socketio` 0.6 draws ack ids from 0..999 at random and
//! mixes up acks whose ids collide.)

mod allow;
mod ice;
mod origin;
mod relay;
mod request;
mod session;
mod validate;

pub use allow::{
    ALLOW_DOMAIN, AllowList, AllowRequest, AllowUpdate, MAX_ALLOW, allow_message, register_message_v3, sign_allow,
};
pub use ice::{IceConfig, IceServerEntry};
pub use origin::{MAX_ORIGIN_LEN, origins_of_host, server_origin};
pub use relay::{
    RELAY_MAX_FRAME_LIMIT, RELAY_UNIT_BYTES, RELAY_WINDOW_BYTES, RELAY_WINDOW_FRAMES, RelayClose, RelayCredit,
    RelayFrame, RelayOpenRequest, RelayOpened, RelayRate, relay_event_units,
};
pub use request::{Registration, RelayEvent, Request, RequestKind, SessionRequest, Signal, split_event};
pub use session::{SessionKind, SessionState};

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The protocol version carried in the challenge. Version 2: the
/// registration signature covers the server's origin.
pub const PROTOCOL_VERSION: u32 = 2;
/// The socket.io namespace the server listens on by default.
pub const DEFAULT_NAMESPACE: &str = "/signaling";
/// The domain-separation prefix of the registration signature: the device signs
/// these 27 ASCII bytes, the 32 raw bytes of the challenge nonce, then the
/// server's origin ([`server_origin`]).
pub const REGISTER_DOMAIN: &[u8] = b"peers/v1 signaling register";
/// Length of a challenge nonce in bytes.
pub const NONCE_LEN: usize = 32;
/// Longest message id, in bytes.
pub const MAX_MESSAGE_ID_LEN: usize = 64;
/// Most devices one `"subscribe"` may name.
pub const MAX_SUBSCRIBE_BATCH: usize = 256;

/// Event names (client → server).
pub mod events {
    /// Registration with a signed challenge.
    pub const REGISTER: &str = "register";
    /// Relay a signal to a device.
    pub const SIGNAL: &str = "signal";
    /// Watch devices' presence.
    pub const SUBSCRIBE: &str = "subscribe";
    /// Stop watching devices' presence.
    pub const UNSUBSCRIBE: &str = "unsubscribe";
    /// Ask for the ICE server configuration.
    pub const ICE_CONFIG: &str = "ice-config";
    /// Create a transfer session joined by a code.
    pub const SESSION_CREATE: &str = "session-create";
    /// Join a session by its code.
    pub const SESSION_JOIN: &str = "session-join";
    /// Close a session with its token.
    pub const SESSION_CLOSE: &str = "session-close";
    /// The creator reopens a `pake` session for a new receiver.
    pub const SESSION_REOPEN: &str = "session-reopen";
    /// Server → client: a session of this device changed state.
    pub const SESSION: &str = "session";
    /// Ask for a frame relay with a device (request); server → both parties:
    /// the relay is open.
    pub const RELAY_OPEN: &str = "relay-open";
    /// A relayed frame, both directions.
    pub const RELAY_FRAME: &str = "relay-frame";
    /// Relay flow control: cumulative credit, both directions.
    pub const RELAY_CREDIT: &str = "relay-credit";
    /// A relay closes, both directions.
    pub const RELAY_CLOSE: &str = "relay-close";
    /// Replace this device's allow list (who may reach it).
    pub const ALLOW: &str = "allow";
    /// Server → client: the registration challenge.
    pub const CHALLENGE: &str = "challenge";
    /// Server → client: a reply to a request sent without a socket.io ack.
    pub const REPLY: &str = "reply";
    /// Server → client: an incoming signal (same name as the request).
    pub const INCOMING: &str = "signal";
    /// Server → client: a later outcome of a signal this device sent.
    pub const OUTCOME: &str = "outcome";
    /// Server → client: a watched device came online or went offline.
    pub const PRESENCE: &str = "presence";
    /// Server → client: a refusal with no request to reply to, or why the
    /// server is about to disconnect.
    pub const NOTICE: &str = "notice";
}

/// The message a device signs to register: [`REGISTER_DOMAIN`], the nonce,
/// then the server's `origin` (as [`server_origin`] writes it, ASCII, no
/// terminator).
///
/// ```text
/// "peers/v1 signaling register" (27 bytes) || nonce (32 bytes) || origin (1..=255 bytes)
/// ```
pub fn register_message(nonce: &[u8; NONCE_LEN], origin: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(REGISTER_DOMAIN.len() + NONCE_LEN + origin.len());
    message.extend_from_slice(REGISTER_DOMAIN);
    message.extend_from_slice(nonce);
    message.extend_from_slice(origin.as_bytes());
    message
}

/// Answers a server's [`Challenge`]: checks its version, decodes the nonce and
/// signs [`register_message`] with `keys` for the server at `url` (the URL
/// the client dialed; its origin is signed). The result is the `"register"`
/// request without its `req` number. Shared by [`SignalingClient`](crate::SignalingClient)
/// and any client that speaks the protocol itself.
pub fn answer_challenge(
    keys: &peers_sdk::DeviceKeys,
    challenge: &Challenge,
    url: &str,
) -> Result<RegisterRequest, String> {
    answer_challenge_allowing(keys, challenge, url, None)
}

/// Like [`answer_challenge`], with an allow list: only the devices on it
/// may reach this one through the server (the signature then covers the
/// list, [`register_message_v3`]). `None` is [`answer_challenge`]: everyone
/// may.
pub fn answer_challenge_allowing(
    keys: &peers_sdk::DeviceKeys,
    challenge: &Challenge,
    url: &str,
    allow: Option<&AllowList>,
) -> Result<RegisterRequest, String> {
    if challenge.v != PROTOCOL_VERSION {
        return Err(format!("unsupported version {}", challenge.v));
    }
    let origin = server_origin(url)?;
    let nonce = decode_fixed::<NONCE_LEN>("nonce", &challenge.nonce).map_err(|r| r.message)?;
    let message = match allow {
        None => register_message(&nonce, &origin),
        Some(list) => register_message_v3(&nonce, &origin, list),
    };
    let signature = keys.sign(&message);
    Ok(RegisterRequest {
        req: None,
        public_key: encode(keys.signing_public().as_bytes()),
        origin,
        signature: encode(&signature),
        allow: allow.map(AllowList::to_wire),
    })
}

/// The kinds of signal the server relays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignalKind {
    /// A WebRTC offer: body `{"sdp": "..."}`.
    Offer,
    /// A WebRTC answer: body `{"sdp": "..."}`.
    Answer,
    /// A trickled ICE candidate: body `{"candidate": "...", "sdpMid"?, "sdpMLineIndex"?}`.
    IceCandidate,
    /// The sender is ready (for instance to receive an offer).
    Ready,
    /// The sender abandons the exchange.
    Cancel,
    /// The sender reports a failure: body `{"message"?: "..."}`.
    Error,
}

impl SignalKind {
    /// Every kind, in protocol order.
    pub const ALL: [SignalKind; 6] = [
        SignalKind::Offer,
        SignalKind::Answer,
        SignalKind::IceCandidate,
        SignalKind::Ready,
        SignalKind::Cancel,
        SignalKind::Error,
    ];

    /// The kind's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Offer => "offer",
            SignalKind::Answer => "answer",
            SignalKind::IceCandidate => "ice-candidate",
            SignalKind::Ready => "ready",
            SignalKind::Cancel => "cancel",
            SignalKind::Error => "error",
        }
    }
}

impl fmt::Display for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignalKind {
    type Err = Rejection;

    fn from_str(s: &str) -> Result<Self, Rejection> {
        SignalKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| Rejection::new(ErrorCode::UnknownKind, format!("unknown signal kind {:?}", clip(s))))
    }
}

/// What became of a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Handed to the recipient's connection.
    Delivered,
    /// The recipient is offline; the message waits in its queue.
    Queued,
    /// The message's time to live ran out before the recipient came online.
    Expired,
}

/// Why the server refused something, as a code a program can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is not valid JSON of the expected shape (missing or unknown
    /// fields, wrong types).
    BadRequest,
    /// A field or the whole payload is over its size limit.
    TooLarge,
    /// The event name is not part of the protocol.
    UnknownEvent,
    /// The signal kind is not one of the six.
    UnknownKind,
    /// The connection has not registered yet.
    NotRegistered,
    /// The connection already registered.
    AlreadyRegistered,
    /// The registration signature does not verify for this connection's challenge.
    BadSignature,
    /// The recipient's queue, or the server's, is full; the message was not queued.
    QueueFull,
    /// The device or its address sent too much too fast.
    RateLimited,
    /// A quota of the sending device or its address (an IPv6 /64) is used up
    /// (queued messages or bytes); the message names which. Others' requests
    /// are unaffected.
    QuotaExceeded,
    /// Too many presence subscriptions on this connection.
    TooManySubscriptions,
    /// A device may not signal itself.
    SelfAddressed,
    /// The server cannot take more connections.
    ServerFull,
    /// This connection was replaced by a newer registration of the same device.
    Replaced,
    /// The client did not register in time.
    RegistrationTimeout,
    /// The recipient's connection cannot take more messages right now.
    RecipientBusy,
    /// The feature is not configured on this server.
    Unavailable,
    /// No session has this code or transfer id.
    SessionNotFound,
    /// The session already has its receiver.
    SessionTaken,
    /// The session's time ran out.
    SessionExpired,
    /// The session was closed (by a party, or locked after wrong codes).
    SessionClosed,
    /// The token does not belong to the session.
    BadToken,
    /// Too many sessions (this device's, or the server's).
    TooManySessions,
    /// Too many relays (this device's waiting requests, or the server's).
    TooManyRelays,
    /// The server failed (its store); the request had no effect.
    Internal,
    /// A code this version does not know (from a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code the server sends (all but [`ErrorCode::Unknown`]).
    pub const SENT: [ErrorCode; 25] = [
        ErrorCode::BadRequest,
        ErrorCode::TooLarge,
        ErrorCode::UnknownEvent,
        ErrorCode::UnknownKind,
        ErrorCode::NotRegistered,
        ErrorCode::AlreadyRegistered,
        ErrorCode::BadSignature,
        ErrorCode::QueueFull,
        ErrorCode::RateLimited,
        ErrorCode::QuotaExceeded,
        ErrorCode::TooManySubscriptions,
        ErrorCode::SelfAddressed,
        ErrorCode::ServerFull,
        ErrorCode::Replaced,
        ErrorCode::RegistrationTimeout,
        ErrorCode::RecipientBusy,
        ErrorCode::Unavailable,
        ErrorCode::SessionNotFound,
        ErrorCode::SessionTaken,
        ErrorCode::SessionExpired,
        ErrorCode::SessionClosed,
        ErrorCode::BadToken,
        ErrorCode::TooManySessions,
        ErrorCode::TooManyRelays,
        ErrorCode::Internal,
    ];

    /// The code's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnknownEvent => "unknown_event",
            ErrorCode::UnknownKind => "unknown_kind",
            ErrorCode::NotRegistered => "not_registered",
            ErrorCode::AlreadyRegistered => "already_registered",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::SelfAddressed => "self_addressed",
            ErrorCode::ServerFull => "server_full",
            ErrorCode::Replaced => "replaced",
            ErrorCode::RegistrationTimeout => "registration_timeout",
            ErrorCode::RecipientBusy => "recipient_busy",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::SessionNotFound => "session_not_found",
            ErrorCode::SessionTaken => "session_taken",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::SessionClosed => "session_closed",
            ErrorCode::BadToken => "bad_token",
            ErrorCode::TooManySessions => "too_many_sessions",
            ErrorCode::TooManyRelays => "too_many_relays",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: a code and a human-readable explanation (at most
/// [`Rejection::MAX_MESSAGE_LEN`] bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// What kind of refusal.
    pub code: ErrorCode,
    /// Details for people and logs.
    pub message: String,
}

impl Rejection {
    /// Longest explanation sent.
    pub const MAX_MESSAGE_LEN: usize = 512;

    /// A rejection; the message is cut to [`Self::MAX_MESSAGE_LEN`].
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        peers_sdk::text::truncate(&mut message, Self::MAX_MESSAGE_LEN);
        Rejection { code, message }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Rejection {}

/// A short, printable excerpt of untrusted text for error messages.
pub(crate) fn clip(text: &str) -> String {
    let mut text = text.to_owned();
    peers_sdk::text::truncate(&mut text, 64);
    text
}

// ---------------------------------------------------------------------------
// Server → client
// ---------------------------------------------------------------------------

/// `"challenge"`: sent once, right after the client joins the namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// [`PROTOCOL_VERSION`].
    pub v: u32,
    /// 32 random bytes, base64 (standard alphabet, padded).
    pub nonce: String,
}

/// `"signal"` (server → client): a message from another device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveredSignalWire {
    /// The sender's message id.
    pub id: String,
    /// The sender, as the server authenticated it.
    pub from: String,
    /// The kind.
    pub kind: SignalKind,
    /// The body, as the sender gave it.
    pub body: Value,
    /// When the server accepted it (unix milliseconds).
    pub sent_at: u64,
    /// Whether it waited in the offline queue.
    pub queued: bool,
}

/// `"outcome"`: what became of a signal this device sent, after the reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeNotice {
    /// The message id the sender chose.
    pub id: String,
    /// The recipient.
    pub to: String,
    /// `delivered` (from the queue) or `expired`.
    pub outcome: OutcomeKind,
    /// When it happened (unix milliseconds).
    pub at: u64,
}

/// `"presence"`: a watched device came online or went offline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceNotice {
    /// The device.
    pub device: String,
    /// Whether it is now online.
    pub online: bool,
}

/// `"notice"`: a refusal without a request to reply to.
pub type Notice = Rejection;

// ---------------------------------------------------------------------------
// Client → server
// ---------------------------------------------------------------------------

/// `"register"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Correlates the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<u64>,
    /// The ed25519 public key, base64 (32 bytes).
    pub public_key: String,
    /// The server origin the device signed ([`server_origin`] of the URL it
    /// dialed); the server refuses one that is not its own.
    pub origin: String,
    /// The signature over [`register_message`], or over
    /// [`register_message_v3`] when `allow` is present, base64 (64 bytes).
    pub signature: String,
    /// The devices that may reach this one (at most [`MAX_ALLOW`]); absent:
    /// everyone may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
}

/// `"signal"` (client → server).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    /// Correlates the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<u64>,
    /// The sender's message id: 1 to 64 of `A-Z a-z 0-9 . _ : -`.
    pub id: String,
    /// The recipient's device id (40 hex digits).
    pub to: String,
    /// The kind, as its wire name; checked separately so an unknown kind gets
    /// its own error code.
    pub kind: String,
    /// The body: a JSON object, checked per kind.
    pub body: Value,
    /// How long the message may wait for an offline recipient, in milliseconds;
    /// the server's default when absent, capped at its maximum. 0: deliver now
    /// or expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// `"subscribe"` / `"unsubscribe"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    /// Correlates the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<u64>,
    /// Device ids (at most [`MAX_SUBSCRIBE_BATCH`]).
    pub devices: Vec<String>,
}

/// `"session-create"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionCreateRequest {
    /// Correlates the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<u64>,
    /// Lifetime in milliseconds (server default when absent, capped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// `"secret"` (the default: code `NNNN-SSSSSS`) or `"pake"` (code `NNNN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SessionKind>,
}

/// `"session-join"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionJoinRequest {
    /// Correlates the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<u64>,
    /// The code, `NNNN-SSSSSS`, or `NNNN` alone for a `"pake"` session.
    pub code: String,
}

/// `"session-close"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionCloseRequest {
    /// Correlates the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<u64>,
    /// The session.
    pub transfer_id: String,
    /// The sender's or the receiver's token.
    pub token: String,
}

/// `"session-reopen"`: the creator of a joined `pake` session makes it take one
/// new join (its receiver vanished).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionReopenRequest {
    /// Correlates the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<u64>,
    /// The session.
    pub transfer_id: String,
    /// The sender's token.
    pub token: String,
}

/// `"session"` (server → client): a session of this device changed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionNotice {
    /// The session.
    pub transfer_id: String,
    /// Its new state.
    pub state: SessionState,
    /// The other party, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Why it closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A request with nothing but its correlation number (`"ice-config"`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyRequest {
    /// Correlates the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<u64>,
}

/// Builds a reply: `{"req", "ok": true, ...fields}` or
/// `{"req", "ok": false, "error": {"code", "message"}}`.
pub fn reply(req: Option<u64>, result: Result<Map<String, Value>, Rejection>) -> Value {
    let mut object = match result {
        Ok(fields) => {
            let mut object = fields;
            object.insert("ok".into(), Value::Bool(true));
            object
        }
        Err(rejection) => {
            let mut object = Map::new();
            object.insert("ok".into(), Value::Bool(false));
            object.insert("error".into(), serde_json::to_value(rejection).unwrap_or(Value::Null));
            object
        }
    };
    if let Some(req) = req {
        object.insert("req".into(), Value::from(req));
    }
    Value::Object(object)
}

/// Reads a reply built by [`reply`]: the success fields, or the rejection.
pub fn parse_reply(value: Value) -> Result<Result<Map<String, Value>, Rejection>, String> {
    let Value::Object(mut object) = value else { return Err("reply is not an object".into()) };
    match object.remove("ok") {
        Some(Value::Bool(true)) => Ok(Ok(object)),
        Some(Value::Bool(false)) => {
            let error = object.remove("error").ok_or("failed reply without an error")?;
            serde_json::from_value::<Rejection>(error).map(Err).map_err(|e| e.to_string())
        }
        _ => Err("reply without a boolean \"ok\"".into()),
    }
}

/// Reads the `req` number of a request that may be malformed, so even a
/// refusal of its shape can be correlated.
pub fn request_number(value: &Value) -> Option<u64> {
    value.get("req").and_then(Value::as_u64)
}

pub use validate::{PayloadLimits, decode_fixed, encode, parse_device_id, validate_body, validate_message_id};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn kinds_round_trip_by_name() {
        for kind in SignalKind::ALL {
            assert_eq!(kind.as_str().parse::<SignalKind>().unwrap(), kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
        }
        assert_eq!("bogus".parse::<SignalKind>().unwrap_err().code, ErrorCode::UnknownKind);
    }

    #[test]
    fn error_codes_match_their_wire_names() {
        for code in [ErrorCode::BadRequest, ErrorCode::QueueFull, ErrorCode::TooManySubscriptions, ErrorCode::Internal]
        {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        }
        let unknown: ErrorCode = serde_json::from_value(json!("from_the_future")).unwrap();
        assert_eq!(unknown, ErrorCode::Unknown);
    }

    #[test]
    fn bodies_are_checked_per_kind() {
        let limits = PayloadLimits::default();
        assert!(validate_body(SignalKind::Offer, &json!({"sdp": "v=0"}), &limits).is_ok());
        assert_eq!(validate_body(SignalKind::Offer, &json!({}), &limits).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(validate_body(SignalKind::Answer, &json!("v=0"), &limits).unwrap_err().code, ErrorCode::BadRequest);
        let big = "x".repeat(limits.max_sdp_bytes + 1);
        assert_eq!(
            validate_body(SignalKind::Offer, &json!({"sdp": big}), &limits).unwrap_err().code,
            ErrorCode::TooLarge
        );
        let candidate =
            json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
        assert!(validate_body(SignalKind::IceCandidate, &candidate, &limits).is_ok());
        let wrong_index = json!({"candidate": "", "sdpMLineIndex": -1});
        assert!(validate_body(SignalKind::IceCandidate, &wrong_index, &limits).is_err());
        assert!(validate_body(SignalKind::Ready, &json!({}), &limits).is_ok());
        let huge = json!({"pad": "x".repeat(limits.max_body_bytes)});
        assert_eq!(validate_body(SignalKind::Cancel, &huge, &limits).unwrap_err().code, ErrorCode::TooLarge);
    }

    #[test]
    fn message_ids_and_device_ids_are_checked() {
        assert!(validate_message_id("m-1.a_b:c").is_ok());
        for bad_id in ["", "has space", "ü", &"x".repeat(MAX_MESSAGE_ID_LEN + 1)] {
            assert!(validate_message_id(bad_id).is_err(), "{bad_id:?} accepted");
        }
        assert!(parse_device_id("to", &"ab".repeat(20)).is_ok());
        assert!(parse_device_id("to", "abc").is_err());
    }

    #[test]
    fn fixed_base64_is_checked() {
        assert_eq!(decode_fixed::<3>("k", &encode(&[1, 2, 3])).unwrap(), [1, 2, 3]);
        assert!(decode_fixed::<3>("k", &encode(&[1, 2])).is_err());
        assert!(decode_fixed::<3>("k", "!!!!").is_err());
        assert!(decode_fixed::<32>("k", &"A".repeat(10_000)).is_err());
    }

    #[test]
    fn the_signed_message_is_domain_then_nonce_then_origin() {
        let nonce = [7u8; NONCE_LEN];
        let message = register_message(&nonce, "http://127.0.0.1:7000");
        assert_eq!(&message[..REGISTER_DOMAIN.len()], b"peers/v1 signaling register");
        assert_eq!(&message[REGISTER_DOMAIN.len()..REGISTER_DOMAIN.len() + NONCE_LEN], &nonce);
        assert_eq!(&message[REGISTER_DOMAIN.len() + NONCE_LEN..], b"http://127.0.0.1:7000");
    }

    proptest! {
        #[test]
        fn replies_round_trip(req in proptest::option::of(any::<u64>()), ok in any::<bool>(), text in ".{0,600}") {
            let result = if ok {
                let mut fields = Map::new();
                fields.insert("text".into(), Value::String(text.clone()));
                Ok(fields)
            } else {
                Err(Rejection::new(ErrorCode::QueueFull, text.clone()))
            };
            let value = reply(req, result.clone());
            prop_assert_eq!(request_number(&value), req);
            let mut parsed = parse_reply(value).unwrap();
            if let Ok(fields) = &mut parsed {
                fields.remove("req");
            }
            prop_assert_eq!(parsed, result);
        }

        #[test]
        fn signal_requests_round_trip(id in "[a-z0-9]{1,64}", ttl in proptest::option::of(any::<u64>()), sdp in ".{1,100}") {
            let request = SignalRequest {
                req: Some(1), id, to: "ab".repeat(20), kind: "offer".into(), body: json!({"sdp": sdp}), ttl_ms: ttl,
            };
            let text = serde_json::to_string(&request).unwrap();
            prop_assert_eq!(serde_json::from_str::<SignalRequest>(&text).unwrap(), request);
        }
    }
}
