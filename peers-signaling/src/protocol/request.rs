//! Every client request, parsed and checked once, with no I/O.
//!
//! The server turns each socket.io event into a [`Request`] before it looks at
//! its own state: the event's text is split by [`split_event`], its name gives
//! the [`RequestKind`], and [`Request::parse`] checks every field the server
//! acts on (ids, device ids, base64 keys, signal bodies against
//! [`PayloadLimits`], batch sizes). What needs state (the connection's
//! challenge, quotas, who is online) is left to the server. The fuzz target
//! `signaling_request` feeds this module arbitrary event texts.

use ed25519_dalek::{Signature, VerifyingKey};
use peers_sdk::DeviceId;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::validate::{decode_fixed, parse_device_id, validate_body, validate_message_id};
use super::{
    AllowList, AllowUpdate, EmptyRequest, ErrorCode, MAX_SUBSCRIBE_BATCH, PayloadLimits, RegisterRequest, Rejection,
    RelayClose, RelayCredit, RelayFrame, RelayOpenRequest, SessionCloseRequest, SessionCreateRequest,
    SessionJoinRequest, SessionReopenRequest, SignalKind, SignalRequest, SubscribeRequest, events, server_origin,
};

/// The events a client may send, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `"register"`.
    Register,
    /// `"signal"`.
    Signal,
    /// `"subscribe"`.
    Subscribe,
    /// `"unsubscribe"`.
    Unsubscribe,
    /// `"ice-config"`.
    IceConfig,
    /// `"session-create"`.
    SessionCreate,
    /// `"session-join"`.
    SessionJoin,
    /// `"session-close"`.
    SessionClose,
    /// `"relay-open"`.
    RelayOpen,
    /// `"relay-frame"` (no reply).
    RelayFrame,
    /// `"relay-credit"` (no reply).
    RelayCredit,
    /// `"relay-close"` (no reply).
    RelayClose,
    /// `"session-reopen"`.
    SessionReopen,
    /// `"allow"`.
    Allow,
}

impl RequestKind {
    /// Every kind, in protocol order.
    pub const ALL: [RequestKind; 14] = [
        RequestKind::Register,
        RequestKind::Signal,
        RequestKind::Subscribe,
        RequestKind::Unsubscribe,
        RequestKind::IceConfig,
        RequestKind::SessionCreate,
        RequestKind::SessionJoin,
        RequestKind::SessionClose,
        RequestKind::RelayOpen,
        RequestKind::RelayFrame,
        RequestKind::RelayCredit,
        RequestKind::RelayClose,
        RequestKind::SessionReopen,
        RequestKind::Allow,
    ];

    /// The event's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Register => events::REGISTER,
            RequestKind::Signal => events::SIGNAL,
            RequestKind::Subscribe => events::SUBSCRIBE,
            RequestKind::Unsubscribe => events::UNSUBSCRIBE,
            RequestKind::IceConfig => events::ICE_CONFIG,
            RequestKind::SessionCreate => events::SESSION_CREATE,
            RequestKind::SessionJoin => events::SESSION_JOIN,
            RequestKind::SessionClose => events::SESSION_CLOSE,
            RequestKind::RelayOpen => events::RELAY_OPEN,
            RequestKind::RelayFrame => events::RELAY_FRAME,
            RequestKind::RelayCredit => events::RELAY_CREDIT,
            RequestKind::RelayClose => events::RELAY_CLOSE,
            RequestKind::SessionReopen => events::SESSION_REOPEN,
            RequestKind::Allow => events::ALLOW,
        }
    }

    /// The kind an event name stands for; `None` for an event the protocol
    /// does not have (answered `unknown_event`).
    pub fn of(name: &str) -> Option<RequestKind> {
        RequestKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// A relay frame, credit or close: no reply, a refusal comes back as a
    /// `"notice"`.
    pub fn is_relay_event(self) -> bool {
        matches!(self, RequestKind::RelayFrame | RequestKind::RelayCredit | RequestKind::RelayClose)
    }
}

/// A request, parsed and checked.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Prove the device key. The signature is checked by the server against the
    /// connection's challenge. (Boxed: a key, a signature and a list, once
    /// per connection.)
    Register(Box<Registration>),
    /// Relay a signal.
    Signal(Signal),
    /// Watch these devices' presence.
    Subscribe(Vec<DeviceId>),
    /// Stop watching these devices.
    Unsubscribe(Vec<DeviceId>),
    /// Ask for ICE servers.
    IceConfig,
    /// A session request.
    Session(SessionRequest),
    /// Open a frame relay with this device.
    RelayOpen(DeviceId),
    /// A relay frame, credit or close.
    Relay(RelayEvent),
    /// Replace the device's allow list (its signature is checked by the server).
    Allow(AllowUpdate),
}

/// A `"register"` request with its fields decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The device's key.
    pub key: VerifyingKey,
    /// The server origin the device signed, as [`server_origin`] writes it.
    pub origin: String,
    /// The signature over [`register_message`](super::register_message),
    /// or [`register_message_v3`](super::register_message_v3) with `allow`.
    pub signature: Signature,
    /// The devices that may reach this one; `None`: everyone may.
    pub allow: Option<AllowList>,
}

/// A `"signal"` request, checked: a valid id, recipient, kind and body.
#[derive(Clone, Debug, PartialEq)]
pub struct Signal {
    /// The sender's message id.
    pub id: String,
    /// The recipient.
    pub to: DeviceId,
    /// The kind.
    pub kind: SignalKind,
    /// The body, within the limits for its kind.
    pub body: Value,
    /// How long it may wait for an offline recipient (the server caps it).
    pub ttl_ms: Option<u64>,
}

/// The session requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionRequest {
    /// `"session-create"`.
    Create(SessionCreateRequest),
    /// `"session-join"`.
    Join(SessionJoinRequest),
    /// `"session-close"`.
    Close(SessionCloseRequest),
    /// `"session-reopen"`.
    Reopen(SessionReopenRequest),
}

/// The relay events that get no reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayEvent {
    /// A frame to forward; its length is checked against the relay's limit
    /// by the relay itself (an oversized frame ends the relay).
    Frame(RelayFrame),
    /// Credit to forward.
    Credit(RelayCredit),
    /// A close to forward.
    Close(RelayClose),
}

impl Request {
    /// Parses and checks the payload of a `kind` event.
    ///
    /// # Errors
    /// A [`Rejection`] with the code the client is sent: `bad_request` for a
    /// malformed field, `too_large` for one over its limit, `unknown_kind` for
    /// an unknown signal kind.
    pub fn parse(kind: RequestKind, payload: Value, limits: &PayloadLimits) -> Result<Request, Rejection> {
        Ok(match kind {
            RequestKind::Register => Request::Register(Box::new(Registration::parse(fields(kind, payload)?)?)),
            RequestKind::Signal => Request::Signal(Signal::parse(fields(kind, payload)?, limits)?),
            RequestKind::Subscribe => Request::Subscribe(devices(fields(kind, payload)?)?),
            RequestKind::Unsubscribe => Request::Unsubscribe(devices(fields(kind, payload)?)?),
            RequestKind::IceConfig => {
                let _: EmptyRequest = fields(kind, payload)?;
                Request::IceConfig
            }
            RequestKind::SessionCreate => Request::Session(SessionRequest::Create(fields(kind, payload)?)),
            RequestKind::SessionJoin => Request::Session(SessionRequest::Join(fields(kind, payload)?)),
            RequestKind::SessionClose => Request::Session(SessionRequest::Close(fields(kind, payload)?)),
            RequestKind::RelayOpen => {
                let request: RelayOpenRequest = fields(kind, payload)?;
                Request::RelayOpen(parse_device_id("peer", &request.peer)?)
            }
            RequestKind::RelayFrame => Request::Relay(RelayEvent::Frame(fields(kind, payload)?)),
            RequestKind::RelayCredit => Request::Relay(RelayEvent::Credit(fields(kind, payload)?)),
            RequestKind::RelayClose => Request::Relay(RelayEvent::Close(fields(kind, payload)?)),
            RequestKind::SessionReopen => Request::Session(SessionRequest::Reopen(fields(kind, payload)?)),
            RequestKind::Allow => Request::Allow(AllowUpdate::parse(fields(kind, payload)?)?),
        })
    }
}

impl Registration {
    fn parse(request: RegisterRequest) -> Result<Registration, Rejection> {
        let key = decode_fixed::<32>("public_key", &request.public_key)?;
        let signature = decode_fixed::<64>("signature", &request.signature)?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| Rejection::new(ErrorCode::BadRequest, "public_key is not an ed25519 key"))?;
        // An origin that is not already in its one written form would let two
        // spellings of one server carry the same signature differently.
        let origin = server_origin(&request.origin)
            .ok()
            .filter(|origin| origin == &request.origin)
            .ok_or_else(|| Rejection::new(ErrorCode::BadRequest, "origin is not written as scheme://host:port"))?;
        let allow = request.allow.as_deref().map(AllowList::parse).transpose()?;
        Ok(Registration { key, origin, signature: Signature::from_bytes(&signature), allow })
    }
}

impl Signal {
    fn parse(request: SignalRequest, limits: &PayloadLimits) -> Result<Signal, Rejection> {
        validate_message_id(&request.id)?;
        let to = parse_device_id("to", &request.to)?;
        let kind: SignalKind = request.kind.parse()?;
        validate_body(kind, &request.body, limits)?;
        Ok(Signal { id: request.id, to, kind, body: request.body, ttl_ms: request.ttl_ms })
    }
}

fn fields<T: DeserializeOwned>(kind: RequestKind, payload: Value) -> Result<T, Rejection> {
    serde_json::from_value(payload)
        .map_err(|e| Rejection::new(ErrorCode::BadRequest, format!("malformed {} request: {e}", kind.name())))
}

fn devices(request: SubscribeRequest) -> Result<Vec<DeviceId>, Rejection> {
    if request.devices.len() > MAX_SUBSCRIBE_BATCH {
        return Err(Rejection::new(ErrorCode::TooLarge, format!("at most {MAX_SUBSCRIBE_BATCH} devices per request")));
    }
    request.devices.iter().map(|d| parse_device_id("device", d)).collect()
}

/// Splits a socket.io event's text, `["name", payload]`, into the event name
/// and its one JSON argument.
///
/// # Errors
/// `bad_request` when the text is not a JSON array of a name and one value.
pub fn split_event(text: &str) -> Result<(String, Value), Rejection> {
    let bad = |detail: &str| Rejection::new(ErrorCode::BadRequest, detail);
    let mut items: Vec<Value> = serde_json::from_str(text).map_err(|_| bad("event is not a JSON array"))?;
    if items.len() != 2 {
        return Err(bad("an event carries exactly one JSON object"));
    }
    let payload = items.pop().unwrap_or(Value::Null);
    match items.pop() {
        Some(Value::String(name)) => Ok((name, payload)),
        _ => Err(bad("event name missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: PayloadLimits =
        PayloadLimits { max_body_bytes: 64 * 1024, max_sdp_bytes: 32 * 1024, max_candidate_bytes: 1024 };

    fn device() -> String {
        "ab".repeat(20)
    }

    #[test]
    fn kinds_round_trip_by_name() {
        for kind in RequestKind::ALL {
            assert_eq!(RequestKind::of(kind.name()), Some(kind));
        }
        assert_eq!(RequestKind::of("nope"), None);
        assert_eq!(RequestKind::of("reply"), None, "server → client events are not requests");
    }

    #[test]
    fn a_signal_is_checked_field_by_field() {
        let ok = json!({"req": 1, "id": "m1", "to": device(), "kind": "offer", "body": {"sdp": "v=0"}});
        let Ok(Request::Signal(signal)) = Request::parse(RequestKind::Signal, ok, &LIMITS) else { panic!() };
        assert_eq!((signal.id.as_str(), signal.kind), ("m1", SignalKind::Offer));
        let cases = [
            (json!({"id": "m 1", "to": device(), "kind": "offer", "body": {"sdp": "x"}}), ErrorCode::BadRequest),
            (json!({"id": "m1", "to": "zz", "kind": "offer", "body": {"sdp": "x"}}), ErrorCode::BadRequest),
            (json!({"id": "m1", "to": device(), "kind": "hello", "body": {}}), ErrorCode::UnknownKind),
            (
                json!({"id": "m1", "to": device(), "kind": "offer", "body": {"sdp": "x".repeat(40_000)}}),
                ErrorCode::TooLarge,
            ),
            (
                json!({"id": "m1", "to": device(), "kind": "offer", "body": {"sdp": "x"}, "extra": 1}),
                ErrorCode::BadRequest,
            ),
            (json!([1, 2]), ErrorCode::BadRequest),
        ];
        for (payload, code) in cases {
            let err = Request::parse(RequestKind::Signal, payload.clone(), &LIMITS).unwrap_err();
            assert_eq!(err.code, code, "{payload}");
        }
    }

    #[test]
    fn subscriptions_are_bounded_per_request() {
        let many: Vec<String> = (0..=MAX_SUBSCRIBE_BATCH).map(|_| device()).collect();
        let err = Request::parse(RequestKind::Subscribe, json!({"devices": many}), &LIMITS).unwrap_err();
        assert_eq!(err.code, ErrorCode::TooLarge);
        let one = Request::parse(RequestKind::Unsubscribe, json!({"devices": [device()]}), &LIMITS).unwrap();
        assert_eq!(one, Request::Unsubscribe(vec![device().parse().unwrap()]));
    }

    #[test]
    fn a_registration_must_name_its_origin_in_one_form() {
        let keys = peers_sdk::DeviceKeys::generate("a").unwrap();
        let challenge =
            super::super::Challenge { v: super::super::PROTOCOL_VERSION, nonce: super::super::encode(&[7; 32]) };
        let answer = super::super::answer_challenge(&keys, &challenge, "http://example.org").unwrap();
        let payload = serde_json::to_value(&answer).unwrap();
        let Request::Register(registration) = Request::parse(RequestKind::Register, payload, &LIMITS).unwrap() else {
            panic!()
        };
        assert_eq!(registration.origin, "http://example.org:80");
        let mut other = serde_json::to_value(&answer).unwrap();
        other["origin"] = json!("HTTP://Example.org");
        let err = Request::parse(RequestKind::Register, other, &LIMITS).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
    }

    #[test]
    fn events_split_into_a_name_and_one_argument() {
        assert_eq!(split_event(r#"["signal",{"a":1}]"#).unwrap(), ("signal".into(), json!({"a": 1})));
        for bad in [r#"["signal"]"#, r#"["signal",1,2]"#, r#"[1,{}]"#, "{}", "", "["] {
            assert_eq!(split_event(bad).unwrap_err().code, ErrorCode::BadRequest, "{bad}");
        }
    }
}
