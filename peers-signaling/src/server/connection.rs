//! One client connection: socketioxide handlers for each event, the
//! registration state machine, and the replies.
//!
//! ```text
//!  connect ──(cap reached: connect_error)──▶ refused
//!     │ send "challenge" {nonce}; start the registration timer
//!     ▼
//!  AwaitingRegistration ──"register" with a good signature──▶ Registered(device)
//!     │ bad signature / no challenge left: reply error, disconnect
//!     │ timer fires: notice registration_timeout, disconnect
//!     ▼
//!  Registered ──"signal" / "subscribe" / "unsubscribe" / "ice-config"──▶ Registered
//!     │ same device registers elsewhere: notice replaced, disconnect
//!     ▼
//!  Closed (device offline unless it registered again elsewhere)
//! ```
//!
//! Handlers implement socketioxide's handler traits directly and run in the
//! connection's read loop (socketioxide spawns closure handlers, which could
//! reorder an offer and its candidates); nothing in them awaits.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::extract::ConnectInfo;
use ed25519_dalek::{Signature, VerifyingKey};
use peers_sdk::DeviceId;
use rand_core::{OsRng, RngCore};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json, json};
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::AckSender;
use socketioxide::handler::{ConnectHandler, DisconnectHandler, FromMessageParts, MessageHandler, Value};
use socketioxide::socket::{DisconnectReason, Socket as IoSocket};
use tracing::{debug, info};

use super::hub::{AfterUnlock, Peer, Relay};
use super::{Shared, metrics as m, now_ms, relay_requests, session_requests};
use crate::protocol::{
    self, Challenge, EmptyRequest, ErrorCode, NONCE_LEN, PROTOCOL_VERSION, RegisterRequest, Rejection, SignalKind,
    SignalRequest, SubscribeRequest, events,
};
use crate::ratelimit::Limited;

type Io = IoSocket<LocalAdapter>;

/// Marks our handler trait implementations (run in the read loop, in order).
#[derive(Debug)]
pub(crate) struct InOrder;

type MiddlewareFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Box<dyn fmt::Display + Send>>> + Send + 'a>>;

/// The namespace's connect middleware and handler.
#[derive(Clone)]
pub(crate) struct Namespace {
    pub(crate) shared: Arc<Shared>,
}

impl ConnectHandler<LocalAdapter, InOrder> for Namespace {
    fn call_middleware<'a>(&'a self, socket: Arc<Io>, _auth: &'a Option<Value>) -> MiddlewareFuture<'a> {
        let refusal = self.shared.refusal();
        Box::pin(async move {
            match refusal {
                None => Ok(()),
                Some(reason) => {
                    info!(sid = %socket.id, %reason, "refusing signaling connection");
                    m::rejected(ErrorCode::ServerFull);
                    Err(Box::new(reason) as Box<dyn fmt::Display + Send>)
                }
            }
        })
    }

    fn call(&self, socket: Arc<Io>, _auth: Option<Value>) {
        open(&self.shared, socket);
    }
}

fn open(shared: &Arc<Shared>, socket: Arc<Io>) {
    let live = shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
    let ip = socket.req_parts().extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let peer = Arc::new(Peer { id: shared.next_peer.fetch_add(1, Ordering::Relaxed), socket: Arc::downgrade(&socket) });
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let conn = Arc::new(Connection {
        shared: shared.clone(),
        peer: peer.clone(),
        ip,
        nonce: Mutex::new(Some(nonce)),
        device: Mutex::new(None),
    });
    for (event, kind) in [
        (events::REGISTER, Event::Register),
        (events::SIGNAL, Event::Signal),
        (events::SUBSCRIBE, Event::Subscribe),
        (events::UNSUBSCRIBE, Event::Unsubscribe),
        (events::ICE_CONFIG, Event::IceConfig),
        (events::SESSION_CREATE, Event::SessionCreate),
        (events::SESSION_JOIN, Event::SessionJoin),
        (events::SESSION_CLOSE, Event::SessionClose),
        (events::RELAY_OPEN, Event::RelayOpen),
        (events::RELAY_FRAME, Event::RelayFrame),
        (events::RELAY_CREDIT, Event::RelayCredit),
        (events::RELAY_CLOSE, Event::RelayClose),
    ] {
        socket.on(event, EventHandler { kind, conn: conn.clone() });
    }
    socket.on_fallback(EventHandler { kind: Event::Unknown, conn: conn.clone() });
    socket.on_disconnect(Closed { conn: conn.clone() });
    debug!(peer = peer.id, ?ip, "signaling connection open");
    let online = shared.hub().online_count();
    m::connections(live, online);
    peer.emit(events::CHALLENGE, &Challenge { v: PROTOCOL_VERSION, nonce: protocol::encode(&nonce) });

    let timeout = shared.config.registration_timeout;
    let weak = Arc::downgrade(&conn);
    tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        if let Some(conn) = weak.upgrade()
            && conn.device().is_none()
            && conn.peer.connected()
        {
            debug!(peer = conn.peer.id, "no registration in time");
            m::registration_failed(ErrorCode::RegistrationTimeout);
            conn.peer.emit(
                events::NOTICE,
                &Rejection::new(ErrorCode::RegistrationTimeout, format!("no registration within {timeout:?}")),
            );
            conn.peer.disconnect();
        }
    });
}

/// One connection's state, shared by its handlers.
#[derive(Debug)]
struct Connection {
    shared: Arc<Shared>,
    peer: Arc<Peer>,
    ip: Option<IpAddr>,
    /// The challenge; taken by the first registration attempt.
    nonce: Mutex<Option<[u8; NONCE_LEN]>>,
    device: Mutex<Option<DeviceId>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Connection {
    fn device(&self) -> Option<DeviceId> {
        *lock(&self.device)
    }

    fn registered(&self) -> Result<DeviceId, Rejection> {
        self.device().ok_or_else(|| Rejection::new(ErrorCode::NotRegistered, "register before sending requests"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Register,
    Signal,
    Subscribe,
    Unsubscribe,
    IceConfig,
    SessionCreate,
    SessionJoin,
    SessionClose,
    RelayOpen,
    RelayFrame,
    RelayCredit,
    RelayClose,
    Unknown,
}

#[derive(Clone)]
struct EventHandler {
    kind: Event,
    conn: Arc<Connection>,
}

/// Where a reply goes: the socket.io ack the client asked for, or a `"reply"`
/// event.
struct Replier {
    socket: Arc<Io>,
    ack_id: Option<i64>,
    req: Option<u64>,
}

impl Replier {
    fn send(self, result: Result<Map<String, Json>, Rejection>) {
        if let Err(rejection) = &result {
            m::rejected(rejection.code);
        }
        let value = protocol::reply(self.req, result);
        if self.ack_id.is_some() {
            let mut nothing = Value::Str("".into(), None);
            let Ok(ack) = AckSender::<LocalAdapter>::from_message_parts(&self.socket, &mut nothing, &self.ack_id);
            let _ = ack.send(&value);
        } else {
            let _ = self.socket.emit(events::REPLY, &value);
        }
    }
}

impl MessageHandler<LocalAdapter, InOrder> for EventHandler {
    fn call(&self, socket: Arc<Io>, value: Value, ack_id: Option<i64>) {
        let (name, payload) = match arguments(value) {
            Ok(parsed) => parsed,
            Err(rejection) => {
                Replier { socket, ack_id, req: None }.send(Err(rejection));
                return;
            }
        };
        let conn = &self.conn;
        let stream = match self.kind {
            Event::RelayFrame => Some(relay_requests::frame as RelayHandler),
            Event::RelayCredit => Some(relay_requests::credit as RelayHandler),
            Event::RelayClose => Some(relay_requests::close as RelayHandler),
            _ => None,
        };
        if let Some(handle) = stream {
            // Relay frames, credit and closes are bounded by the relay's flow
            // control and caps, not by the request rate; they get no reply, so
            // a refusal comes back as a notice.
            if let Err(rejection) = conn.registered().and_then(|device| handle(&conn.shared, device, payload)) {
                m::rejected(rejection.code);
                conn.peer.emit(events::NOTICE, &rejection);
            }
            return;
        }
        let replier = Replier { socket, ack_id, req: protocol::request_number(&payload) };
        if let Err(limited) = conn.shared.limiters.check(conn.ip, conn.device().as_ref()) {
            let whose = match limited {
                Limited::Device => "this device",
                Limited::Ip => "this address",
            };
            replier.send(Err(Rejection::new(ErrorCode::RateLimited, format!("too many requests from {whose}"))));
            return;
        }
        match self.kind {
            Event::Register => register(conn, payload, replier),
            Event::Signal => replier.send(signal(conn, payload)),
            Event::Subscribe => replier.send(subscribe(conn, payload, true)),
            Event::Unsubscribe => replier.send(subscribe(conn, payload, false)),
            Event::IceConfig => replier.send(ice_config(conn, payload)),
            Event::SessionCreate => replier
                .send(conn.registered().and_then(|device| session_requests::create(&conn.shared, device, payload))),
            Event::SessionJoin => replier.send(
                conn.registered().and_then(|device| session_requests::join(&conn.shared, conn.ip, device, payload)),
            ),
            Event::SessionClose => replier
                .send(conn.registered().and_then(|device| session_requests::close(&conn.shared, device, payload))),
            Event::RelayOpen => {
                replier.send(conn.registered().and_then(|device| relay_requests::open(&conn.shared, device, payload)))
            }
            Event::RelayFrame | Event::RelayCredit | Event::RelayClose => {}
            Event::Unknown => replier.send(Err(Rejection::new(
                ErrorCode::UnknownEvent,
                format!("unknown event {:?}", protocol::clip(&name)),
            ))),
        }
    }
}

type RelayHandler = fn(&Shared, DeviceId, Json) -> Result<(), Rejection>;

/// Splits socketioxide's `["event", payload]` text into the event name and its
/// one JSON argument.
fn arguments(value: Value) -> Result<(String, Json), Rejection> {
    let bad = |detail: &str| Rejection::new(ErrorCode::BadRequest, detail);
    let Value::Str(text, attachments) = value else { return Err(bad("binary packets are not part of the protocol")) };
    if attachments.is_some_and(|a| !a.is_empty()) {
        return Err(bad("binary attachments are not part of the protocol"));
    }
    let mut items: Vec<Json> = serde_json::from_str(text.as_str()).map_err(|_| bad("event is not a JSON array"))?;
    if items.len() != 2 {
        return Err(bad("an event carries exactly one JSON object"));
    }
    let payload = items.pop().unwrap_or(Json::Null);
    let name = match items.pop() {
        Some(Json::String(name)) => name,
        _ => return Err(bad("event name missing")),
    };
    Ok((name, payload))
}

pub(super) fn parse<T: DeserializeOwned>(what: &str, payload: Json) -> Result<T, Rejection> {
    serde_json::from_value(payload)
        .map_err(|e| Rejection::new(ErrorCode::BadRequest, format!("malformed {what} request: {e}")))
}

fn register(conn: &Arc<Connection>, payload: Json, replier: Replier) {
    let shared = &conn.shared;
    let outcome = (|| {
        if conn.device().is_some() {
            return Err(Rejection::new(ErrorCode::AlreadyRegistered, "this connection already registered"));
        }
        let request: RegisterRequest = parse("register", payload)?;
        let nonce = lock(&conn.nonce)
            .take()
            .ok_or_else(|| Rejection::new(ErrorCode::BadSignature, "the challenge was already used"))?;
        let key_bytes = protocol::decode_fixed::<32>("public_key", &request.public_key)?;
        let signature = protocol::decode_fixed::<64>("signature", &request.signature)?;
        let key = VerifyingKey::from_bytes(&key_bytes)
            .map_err(|_| Rejection::new(ErrorCode::BadRequest, "public_key is not an ed25519 key"))?;
        key.verify_strict(&protocol::register_message(&nonce), &Signature::from_bytes(&signature)).map_err(|_| {
            Rejection::new(ErrorCode::BadSignature, "the signature does not match this connection's challenge")
        })?;
        Ok(DeviceId::from_public_key(&key))
    })();
    let device = match outcome {
        Ok(device) => device,
        Err(rejection) => {
            info!(peer = conn.peer.id, code = %rejection.code, "registration refused");
            m::registration_failed(rejection.code);
            let already = rejection.code == ErrorCode::AlreadyRegistered;
            replier.send(Err(rejection));
            if !already {
                // The challenge is spent: this connection cannot register any more.
                let peer = conn.peer.clone();
                tokio::spawn(async move { peer.disconnect() });
            }
            return;
        }
    };
    let mut after = AfterUnlock::default();
    {
        let mut hub = shared.hub();
        *lock(&conn.device) = Some(device);
        let reply = |queued: usize| {
            let mut fields = Map::new();
            fields.insert("device_id".into(), Json::String(device.to_string()));
            fields.insert("queued".into(), Json::from(queued));
            replier.send(Ok(fields));
        };
        let delivered = hub.register(now_ms(), device, conn.peer.clone(), reply, &mut after);
        info!(%device, peer = conn.peer.id, delivered, "device registered");
    }
    after.run();
    shared.wake_expiry();
}

fn signal(conn: &Arc<Connection>, payload: Json) -> Result<Map<String, Json>, Rejection> {
    let from = conn.registered()?;
    let shared = &conn.shared;
    let request: SignalRequest = parse("signal", payload)?;
    protocol::validate_message_id(&request.id)?;
    let to = protocol::parse_device_id("to", &request.to)?;
    let kind: SignalKind = request.kind.parse()?;
    protocol::validate_body(kind, &request.body, &shared.config.payload)?;
    if to == from {
        return Err(Rejection::new(ErrorCode::SelfAddressed, "a device cannot signal itself"));
    }
    let ttl_ms = shared.config.queue.ttl_ms(request.ttl_ms);
    let id = request.id.clone();
    let relay = Relay { from, to, id: request.id, kind, body: request.body, ttl_ms };
    let (outcome, expires_at) = shared.hub().relay(now_ms(), relay)?;
    if expires_at.is_some() {
        shared.wake_expiry();
    }
    let mut fields = Map::new();
    fields.insert("id".into(), Json::String(id));
    fields.insert("outcome".into(), serde_json::to_value(outcome).unwrap_or(Json::Null));
    if let Some(expires_at) = expires_at {
        fields.insert("expires_at".into(), Json::from(expires_at));
    }
    Ok(fields)
}

fn subscribe(conn: &Arc<Connection>, payload: Json, add: bool) -> Result<Map<String, Json>, Rejection> {
    conn.registered()?;
    let request: SubscribeRequest = parse(if add { "subscribe" } else { "unsubscribe" }, payload)?;
    if request.devices.len() > protocol::MAX_SUBSCRIBE_BATCH {
        return Err(Rejection::new(
            ErrorCode::TooLarge,
            format!("at most {} devices per request", protocol::MAX_SUBSCRIBE_BATCH),
        ));
    }
    let devices =
        request.devices.iter().map(|d| protocol::parse_device_id("device", d)).collect::<Result<Vec<_>, _>>()?;
    let mut hub = conn.shared.hub();
    let mut fields = Map::new();
    if add {
        let online = hub.subscribe(&conn.peer, &devices, conn.shared.config.max_subscriptions)?;
        fields.insert("online".into(), json!(online.iter().map(ToString::to_string).collect::<Vec<_>>()));
    } else {
        hub.unsubscribe(conn.peer.id, &devices);
    }
    Ok(fields)
}

fn ice_config(conn: &Arc<Connection>, payload: Json) -> Result<Map<String, Json>, Rejection> {
    let device = conn.registered()?;
    let _: EmptyRequest = parse("ice-config", payload)?;
    let config = conn.shared.config.ice.config_for(&device, now_ms() / 1000);
    match serde_json::to_value(config) {
        Ok(Json::Object(fields)) => Ok(fields),
        _ => Err(Rejection::new(ErrorCode::Internal, "could not encode the ICE configuration")),
    }
}

/// The disconnect handler: the device goes offline (unless replaced) and its
/// subscriptions end.
struct Closed {
    conn: Arc<Connection>,
}

impl DisconnectHandler<LocalAdapter, InOrder> for Closed {
    fn call_with_defer(&self, socket: Arc<Io>, reason: DisconnectReason, defer: fn(Arc<Io>)) {
        let conn = &self.conn;
        let shared = &conn.shared;
        let live = shared.connections.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        let online = {
            let mut hub = shared.hub();
            if let Some(device) = conn.device()
                && hub.unregister(&device, conn.peer.id)
            {
                info!(%device, %reason, "device offline");
            }
            hub.forget_watcher(conn.peer.id);
            hub.online_count()
        };
        m::connections(live, online);
        debug!(peer = conn.peer.id, %reason, "signaling connection closed");
        defer(socket);
    }
}
