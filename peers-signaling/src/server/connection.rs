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
//! reorder an offer and its candidates); nothing in them awaits. They are
//! generic over the socket.io adapter. With the Redis backend, requests that
//! need Redis go, in arrival order, to one task per connection
//! ([`run_jobs`]), which awaits them one at a time (see `cluster.rs`).

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use ed25519_dalek::{Signature, VerifyingKey};
use peers_sdk::DeviceId;
use rand_core::{OsRng, RngCore};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json, json};
use socketioxide::adapter::Adapter;
use socketioxide::handler::{ConnectHandler, DisconnectHandler, MessageHandler, Value};
use socketioxide::socket::{DisconnectReason, Socket as IoSocket};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, info};

use super::hub::{AfterUnlock, Outgoing, Peer, PeerSocket, Relay};
use super::outgoing::{self, OutgoingBudget};
use super::{Shared, cluster, cluster_relay, cluster_sessions, metrics as m, now_ms, relay_requests, session_requests};
use crate::protocol::{
    self, Challenge, EmptyRequest, ErrorCode, NONCE_LEN, OutcomeKind, PROTOCOL_VERSION, RegisterRequest, Rejection,
    SignalKind, SignalRequest, SubscribeRequest, events,
};
use crate::ratelimit::Limited;

type Io<A> = IoSocket<A>;

/// Requests one connection may have waiting for its Redis task.
const JOBS_IN_FLIGHT: usize = 64;

/// Marks our handler trait implementations (run in the read loop, in order).
#[derive(Debug)]
pub(crate) struct InOrder;

type MiddlewareFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Box<dyn fmt::Display + Send>>> + Send + 'a>>;

/// The namespace's connect middleware and handler.
#[derive(Clone)]
pub(crate) struct Namespace {
    pub(crate) shared: Arc<Shared>,
}

impl<A: Adapter> ConnectHandler<A, InOrder> for Namespace {
    fn call_middleware<'a>(&'a self, socket: Arc<Io<A>>, _auth: &'a Option<Value>) -> MiddlewareFuture<'a> {
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

    fn call(&self, socket: Arc<Io<A>>, _auth: Option<Value>) {
        open(&self.shared, socket);
    }
}

fn open<A: Adapter>(shared: &Arc<Shared>, socket: Arc<Io<A>>) {
    let live = shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
    let extensions = &socket.req_parts().extensions;
    // Every per-address limit keys on the address's group (an IPv6 /64).
    let ip = outgoing::client_addr(extensions).map(|addr| crate::ratelimit::group(addr.ip()));
    let outgoing = extensions.get::<Arc<OutgoingBudget>>().map(|budget| {
        shared.engine_sessions.insert(socket.id.to_string(), budget);
        Outgoing { budget: budget.clone(), namespace: shared.config.namespace.as_str().into() }
    });
    // The origins a registration may sign: the configured ones, or those of
    // the Host header this connection was opened with.
    let origins: Arc<[String]> = if shared.config.public_origins.is_empty() {
        let parts = socket.req_parts();
        let host = parts.headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok());
        let host = host.or_else(|| parts.uri.authority().map(|a| a.as_str()));
        host.map(protocol::origins_of_host).unwrap_or_default().into()
    } else {
        shared.public_origins.clone()
    };
    let dyn_socket: Arc<dyn PeerSocket> = socket.clone();
    let peer = Arc::new(Peer {
        id: shared.next_peer.fetch_add(1, Ordering::Relaxed),
        socket: Arc::downgrade(&dyn_socket),
        outgoing,
    });
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let (jobs, queued_jobs) = if shared.cluster.is_some() {
        let (tx, rx) = mpsc::channel(JOBS_IN_FLIGHT);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let conn = Arc::new(Connection {
        shared: shared.clone(),
        peer: peer.clone(),
        ip,
        nonce: Mutex::new(Some(nonce)),
        origins,
        device: Mutex::new(None),
        jobs,
        watching: Mutex::new(HashSet::new()),
        registration_timer: Mutex::new(None),
    });
    if let Some(rx) = queued_jobs {
        tokio::spawn(run_jobs(Arc::downgrade(&conn), rx));
    }
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
    let timer = tokio::spawn(async move {
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
    // Ended at registration, so an idle device does not keep a timer.
    *lock(&conn.registration_timer) = Some(timer.abort_handle());
}

/// One connection's state, shared by its handlers.
#[derive(Debug)]
pub(super) struct Connection {
    pub(super) shared: Arc<Shared>,
    pub(super) peer: Arc<Peer>,
    ip: Option<IpAddr>,
    /// The challenge; taken by the first registration attempt.
    nonce: Mutex<Option<[u8; NONCE_LEN]>>,
    /// The server origins a registration signature may cover.
    origins: Arc<[String]>,
    pub(super) device: Mutex<Option<DeviceId>>,
    /// Redis mode: the connection's task, which runs its requests in order.
    jobs: Option<mpsc::Sender<Job>>,
    /// Redis mode: the devices this connection watches (their rooms).
    pub(super) watching: Mutex<HashSet<DeviceId>>,
    /// The task that disconnects the connection if it does not register in time.
    registration_timer: Mutex<Option<AbortHandle>>,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Connection {
    /// Redis mode: the address its rate limits in Redis are keyed by.
    #[cfg(feature = "redis")]
    pub(super) fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    pub(super) fn device(&self) -> Option<DeviceId> {
        *lock(&self.device)
    }

    /// Binds the connection to `device` (its registration succeeded).
    pub(super) fn bind(&self, device: DeviceId) {
        *lock(&self.device) = Some(device);
        if let Some(timer) = lock(&self.registration_timer).take() {
            timer.abort();
        }
    }

    pub(super) fn registered(&self) -> Result<DeviceId, Rejection> {
        self.device().ok_or_else(|| Rejection::new(ErrorCode::NotRegistered, "register before sending requests"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Event {
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
pub(super) struct Replier {
    socket: Arc<dyn PeerSocket>,
    peer: Arc<Peer>,
    ack_id: Option<i64>,
    req: Option<u64>,
}

impl Replier {
    pub(super) fn send(self, result: Result<Map<String, Json>, Rejection>) {
        if let Err(rejection) = &result {
            m::rejected(rejection.code);
        }
        let value = protocol::reply(self.req, result);
        let event = if self.ack_id.is_some() { None } else { Some(events::REPLY) };
        if !self.peer.admit(event, self.ack_id, &value, true) {
            return;
        }
        if self.ack_id.is_some() {
            self.socket.ack(self.ack_id, &value);
        } else {
            let _ = self.socket.emit_json(events::REPLY, &value);
        }
    }
}

/// A request waiting for the connection's Redis task.
struct Job {
    kind: Event,
    name: String,
    payload: Json,
    replier: Replier,
}

/// Redis mode: runs one connection's requests in arrival order, awaiting
/// Redis for each. Ends with the connection.
async fn run_jobs(conn: Weak<Connection>, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.recv().await {
        let Some(conn) = conn.upgrade() else { return };
        let Some(cluster) = conn.shared.cluster.clone() else { return };
        match cluster.allow(&conn.shared.config.rate_limits, conn.device().as_ref(), conn.ip).await {
            Ok(None) => {}
            Ok(Some(limited)) => {
                job.replier.send(Err(rate_limited(limited)));
                continue;
            }
            Err(rejection) => {
                job.replier.send(Err(rejection));
                continue;
            }
        }
        match job.kind {
            Event::Register => match verify_registration(&conn, job.payload) {
                Ok(device) => cluster::register(&cluster, &conn, device, job.replier).await,
                Err(rejection) => registration_refused(&conn, rejection, job.replier),
            },
            Event::Signal => job.replier.send(cluster::signal(&cluster, &conn, job.payload).await),
            Event::Subscribe => job.replier.send(cluster::subscribe(&cluster, &conn, job.payload, true).await),
            Event::Unsubscribe => job.replier.send(cluster::subscribe(&cluster, &conn, job.payload, false).await),
            Event::RelayOpen => job.replier.send(cluster_relay::open(&cluster, &conn, job.payload).await),
            kind @ (Event::SessionCreate | Event::SessionJoin | Event::SessionClose) => {
                job.replier.send(cluster_sessions::request(&cluster, &conn, kind, job.payload).await)
            }
            kind => handle(&conn, kind, &job.name, job.payload, job.replier),
        }
    }
}

pub(super) fn rate_limited(limited: Limited) -> Rejection {
    let whose = match limited {
        Limited::Device => "this device",
        Limited::Ip => "this address",
    };
    Rejection::new(ErrorCode::RateLimited, format!("too many requests from {whose}"))
}

impl<A: Adapter> MessageHandler<A, InOrder> for EventHandler {
    fn call(&self, socket: Arc<Io<A>>, value: Value, ack_id: Option<i64>) {
        let socket: Arc<dyn PeerSocket> = socket;
        let (name, payload) = match arguments(value) {
            Ok(parsed) => parsed,
            Err(rejection) => {
                let replier = Replier { socket, peer: self.conn.peer.clone(), ack_id, req: None };
                if self.kind == Event::Register && self.conn.device().is_none() {
                    // A malformed registration spends the challenge too.
                    lock(&self.conn.nonce).take();
                    return registration_refused(&self.conn, rejection, replier);
                }
                replier.send(Err(rejection));
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
            // Relay frames, credit and closes count against the device's and
            // the address's rates at a fraction of a request each (see
            // `ratelimit.rs`); they get no reply, so a refusal comes back as a
            // notice, and a refused frame or credit closes its relay.
            let handled = conn.registered().and_then(|device| {
                let len = payload.get("data").and_then(Json::as_str).map_or(0, str::len) / 4 * 3;
                if let Err(limited) = conn.shared.limiters.check_relay_event(conn.ip, &device, len) {
                    relay_requests::rate_limited(&conn.shared, &conn.peer, device, &payload);
                    return Err(rate_limited(limited));
                }
                handle(&conn.shared, device, payload)
            });
            if let Err(rejection) = handled {
                m::rejected(rejection.code);
                conn.peer.emit(events::NOTICE, &rejection);
            }
            return;
        }
        let replier = Replier { socket, peer: conn.peer.clone(), ack_id, req: protocol::request_number(&payload) };
        // With Redis, the device's budget lives there (checked by the task).
        let local_device = if conn.jobs.is_some() { None } else { conn.device() };
        if let Err(limited) = conn.shared.limiters.check(conn.ip, local_device.as_ref()) {
            replier.send(Err(rate_limited(limited)));
            return;
        }
        if let Some(jobs) = &conn.jobs {
            let job = Job { kind: self.kind, name, payload, replier };
            if let Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) =
                jobs.try_send(job)
            {
                job.replier.send(Err(Rejection::new(
                    ErrorCode::RateLimited,
                    format!("more than {JOBS_IN_FLIGHT} requests in flight on this connection"),
                )));
            }
            return;
        }
        handle(conn, self.kind, &name, payload, replier);
    }
}

/// Answers a request without awaiting anything.
fn handle(conn: &Arc<Connection>, kind: Event, name: &str, payload: Json, replier: Replier) {
    match kind {
        Event::Register => register(conn, payload, replier),
        Event::Signal => replier.send(signal(conn, payload)),
        Event::Subscribe => replier.send(subscribe(conn, payload, true)),
        Event::Unsubscribe => replier.send(subscribe(conn, payload, false)),
        Event::IceConfig => replier.send(ice_config(conn, payload)),
        Event::SessionCreate | Event::SessionJoin | Event::SessionClose => replier.send(
            conn.registered().and_then(|device| session_requests::local(&conn.shared, conn.ip, device, kind, payload)),
        ),
        Event::RelayOpen => replier
            .send(conn.registered().and_then(|device| relay_requests::open(&conn.shared, device, conn.ip, payload))),
        Event::RelayFrame | Event::RelayCredit | Event::RelayClose => {}
        Event::Unknown => replier
            .send(Err(Rejection::new(ErrorCode::UnknownEvent, format!("unknown event {:?}", protocol::clip(name))))),
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

/// Checks a registration request against this connection's challenge (which
/// it spends); returns the device it proves.
fn verify_registration(conn: &Connection, payload: Json) -> Result<DeviceId, Rejection> {
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
    let origin = protocol::server_origin(&request.origin)
        .ok()
        .filter(|origin| origin == &request.origin)
        .ok_or_else(|| Rejection::new(ErrorCode::BadRequest, "origin is not written as scheme://host:port"))?;
    if !conn.origins.contains(&origin) {
        return Err(Rejection::new(
            ErrorCode::BadSignature,
            format!("the signature is for {}, not this server ({})", protocol::clip(&origin), conn.origins.join(", ")),
        ));
    }
    key.verify_strict(&protocol::register_message(&nonce, &origin), &Signature::from_bytes(&signature)).map_err(
        |_| Rejection::new(ErrorCode::BadSignature, "the signature does not match this connection's challenge"),
    )?;
    Ok(DeviceId::from_public_key(&key))
}

/// Answers a refused registration; unless the connection was already
/// registered, its challenge is spent and it is disconnected.
pub(super) fn registration_refused(conn: &Connection, rejection: Rejection, replier: Replier) {
    info!(peer = conn.peer.id, code = %rejection.code, "registration refused");
    m::registration_failed(rejection.code);
    let already = rejection.code == ErrorCode::AlreadyRegistered;
    replier.send(Err(rejection));
    if !already {
        let peer = conn.peer.clone();
        tokio::spawn(async move { peer.disconnect() });
    }
}

/// The successful registration reply.
pub(super) fn registered_reply(device: &DeviceId, queued: usize) -> Map<String, Json> {
    let mut fields = Map::new();
    fields.insert("device_id".into(), Json::String(device.to_string()));
    fields.insert("queued".into(), Json::from(queued));
    fields
}

fn register(conn: &Arc<Connection>, payload: Json, replier: Replier) {
    let shared = &conn.shared;
    let device = match verify_registration(conn, payload) {
        Ok(device) => device,
        Err(rejection) => return registration_refused(conn, rejection, replier),
    };
    let mut after = AfterUnlock::default();
    {
        let mut hub = shared.hub();
        conn.bind(device);
        let reply = |queued: usize| replier.send(Ok(registered_reply(&device, queued)));
        let delivered = hub.register(now_ms(), device, conn.peer.clone(), reply, &mut after);
        m::devices_online(hub.online_count());
        info!(%device, peer = conn.peer.id, delivered, "device registered");
    }
    after.run();
    shared.wake_expiry();
}

/// A signal request, checked, from the registered device: ready to relay.
pub(super) fn parse_signal(conn: &Connection, payload: Json) -> Result<Relay, Rejection> {
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
    Ok(Relay { from, to, id: request.id, kind, body: request.body, ttl_ms, origin: conn.ip })
}

/// The reply to a signal: its id and first outcome.
pub(super) fn signal_reply(id: String, outcome: OutcomeKind, expires_at: Option<u64>) -> Map<String, Json> {
    let mut fields = Map::new();
    fields.insert("id".into(), Json::String(id));
    fields.insert("outcome".into(), serde_json::to_value(outcome).unwrap_or(Json::Null));
    if let Some(expires_at) = expires_at {
        fields.insert("expires_at".into(), Json::from(expires_at));
    }
    fields
}

fn signal(conn: &Arc<Connection>, payload: Json) -> Result<Map<String, Json>, Rejection> {
    let shared = &conn.shared;
    let relay = parse_signal(conn, payload)?;
    let id = relay.id.clone();
    let (outcome, expires_at) = shared.hub().relay(now_ms(), relay)?;
    if expires_at.is_some() {
        shared.wake_expiry();
    }
    Ok(signal_reply(id, outcome, expires_at))
}

/// The devices of a subscribe or unsubscribe request.
pub(super) fn parse_subscribe(conn: &Connection, payload: Json, add: bool) -> Result<Vec<DeviceId>, Rejection> {
    conn.registered()?;
    let request: SubscribeRequest = parse(if add { "subscribe" } else { "unsubscribe" }, payload)?;
    if request.devices.len() > protocol::MAX_SUBSCRIBE_BATCH {
        return Err(Rejection::new(
            ErrorCode::TooLarge,
            format!("at most {} devices per request", protocol::MAX_SUBSCRIBE_BATCH),
        ));
    }
    request.devices.iter().map(|d| protocol::parse_device_id("device", d)).collect()
}

/// The reply to a subscribe: which of the devices are online.
pub(super) fn online_reply(online: &[DeviceId]) -> Map<String, Json> {
    let mut fields = Map::new();
    fields.insert("online".into(), json!(online.iter().map(ToString::to_string).collect::<Vec<_>>()));
    fields
}

fn subscribe(conn: &Arc<Connection>, payload: Json, add: bool) -> Result<Map<String, Json>, Rejection> {
    let devices = parse_subscribe(conn, payload, add)?;
    let shared = &conn.shared;
    let mut hub = shared.hub();
    if add {
        let admit = |new| shared.address_subscriptions.reserve(conn.ip, new);
        let online = hub.subscribe(&conn.peer, &devices, shared.config.max_subscriptions, admit)?;
        Ok(online_reply(&online))
    } else {
        let removed = hub.unsubscribe(conn.peer.id, &devices);
        shared.address_subscriptions.release(conn.ip, removed);
        Ok(Map::new())
    }
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

impl<A: Adapter> DisconnectHandler<A, InOrder> for Closed {
    fn call_with_defer(&self, socket: Arc<Io<A>>, reason: DisconnectReason, defer: fn(Arc<Io<A>>)) {
        let conn = &self.conn;
        let shared = &conn.shared;
        let live = shared.connections.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        shared.engine_sessions.remove(&socket.id.to_string());
        let online = {
            let mut hub = shared.hub();
            if let Some(device) = conn.device()
                && hub.unregister(&device, conn.peer.id)
            {
                info!(%device, %reason, "device offline");
            }
            // Redis mode keeps them in the connection; one instance in the hub.
            let watched = hub.forget_watcher(conn.peer.id) + lock(&conn.watching).len();
            shared.address_subscriptions.release(conn.ip, watched);
            hub.online_count()
        };
        if let (Some(cluster), Some(device)) = (&shared.cluster, conn.device()) {
            cluster::disconnected(shared, cluster, device, conn.peer.id);
        }
        m::connections(live, online);
        debug!(peer = conn.peer.id, %reason, "signaling connection closed");
        defer(socket);
    }
}
