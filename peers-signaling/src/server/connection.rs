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
//! reorder an offer and its candidates). They are generic over the socket.io
//! adapter. Each request is parsed and checked here once, gated by the
//! connection's state ([`admit`]) and then carried out by the server's
//! [`SignalingState`](super::state::SignalingState) ([`run_request`]), the
//! same way for every backend. Every request starts in the read loop; the
//! local backend never waits, so its requests finish there. A backend that
//! waits on I/O (Redis) keeps the requests in arrival order, one at a time:
//! a request that has to wait, and every request that arrives while one is
//! waiting, goes on in the connection's task ([`run_jobs`]).

#[cfg(feature = "redis")]
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Waker};

use peers_sdk::DeviceId;
use rand_core::{OsRng, RngCore};
use serde_json::{Map, Value as Json, json};
use socketioxide::adapter::Adapter;
use socketioxide::handler::{ConnectHandler, DisconnectHandler, MessageHandler, Value};
use socketioxide::socket::{DisconnectReason, Socket as IoSocket};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, info};

use super::hub::{CheckedSignal, Outgoing, Peer, PeerSocket};
use super::outgoing::{self, OutgoingBudget};
use super::session_requests;
use super::state::{Charge, RelayOpening};
use super::{Shared, metrics as m, now_ms, relay_requests};
use crate::protocol::{
    self, AllowUpdate, Challenge, ErrorCode, NONCE_LEN, OutcomeKind, PROTOCOL_VERSION, Registration, Rejection,
    Request, RequestKind, Signal, events,
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
    let (jobs, queued_jobs) = if shared.state.waits() {
        let (tx, rx) = mpsc::channel(JOBS_IN_FLIGHT);
        (Some(Jobs { tx, waiting: AtomicUsize::new(0) }), Some(rx))
    } else {
        (None, None)
    };
    let conn = Arc::new(Connection {
        shared: shared.clone(),
        peer: peer.clone(),
        ip,
        nonce: Mutex::new(Some(nonce)),
        signed: Mutex::new(None),
        #[cfg(feature = "redis")]
        allow: Mutex::new(None),
        origins,
        device: Mutex::new(None),
        jobs,
        #[cfg(feature = "redis")]
        watching: Mutex::new(HashSet::new()),
        registration_timer: Mutex::new(None),
    });
    if let Some(rx) = queued_jobs {
        tokio::spawn(run_jobs(Arc::downgrade(&conn), rx));
    }
    // One handler for every event, which dispatches on the name itself: a
    // handler per event name would cost each idle connection a map of boxed
    // handlers (about 0.7 KiB, `docs/BENCHMARKS.md`, P6).
    socket.on_fallback(EventHandler { conn: conn.clone() });
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
pub(crate) struct Connection {
    pub(super) shared: Arc<Shared>,
    pub(super) peer: Arc<Peer>,
    ip: Option<IpAddr>,
    /// The challenge; taken by the first registration attempt.
    nonce: Mutex<Option<[u8; NONCE_LEN]>>,
    /// What the registration signed, for `"allow"` requests.
    signed: Mutex<Option<Signed>>,
    /// Redis mode: the device's allow list (one instance keeps it in the hub).
    #[cfg(feature = "redis")]
    pub(super) allow: Mutex<Option<protocol::AllowList>>,
    /// The server origins a registration signature may cover.
    origins: Arc<[String]>,
    pub(super) device: Mutex<Option<DeviceId>>,
    /// The connection's task, which goes on with its requests that wait (for
    /// a backend that waits on I/O).
    jobs: Option<Jobs>,
    /// Redis mode: the devices this connection watches (their rooms).
    #[cfg(feature = "redis")]
    pub(super) watching: Mutex<HashSet<DeviceId>>,
    /// The task that disconnects the connection if it does not register in time.
    registration_timer: Mutex<Option<AbortHandle>>,
}

/// What a good registration signed, which its connection's `"allow"`
/// requests sign again (see `protocol::allow_message`).
#[derive(Debug)]
struct Signed {
    key: ed25519_dalek::VerifyingKey,
    nonce: [u8; NONCE_LEN],
    origin: String,
    /// The last `"allow"` counter accepted on this connection.
    counter: Option<u64>,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Connection {
    /// The client's address group (an IPv6 /64), which per-address limits
    /// key on.
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

/// The handler of every event of a connection.
#[derive(Clone)]
struct EventHandler {
    conn: Arc<Connection>,
}

/// Where a reply goes: the socket.io ack the client asked for, or a `"reply"`
/// event.
pub(crate) struct Replier {
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

/// A request on its way to the backend, parsed (or refused) already.
struct Job {
    kind: RequestKind,
    request: Result<Request, Rejection>,
    replier: Replier,
}

/// A request being carried out.
type Running = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the connection's task goes on with, in arrival order.
enum Work {
    /// A request that started in the read loop and waits.
    Started(Running),
    /// A request that arrived while another was waiting.
    Queued(Job),
}

/// The requests of a connection whose backend waits on I/O.
#[derive(Debug)]
struct Jobs {
    /// To the connection's task. Each piece of work is boxed: the channel
    /// allocates its first block of 32 slots with the connection, so a slot
    /// is a pointer, not a whole request.
    tx: mpsc::Sender<Box<Work>>,
    /// Requests handed to the task and not finished. Only the read loop adds
    /// to it, so at zero the task is idle and a new request may start in the
    /// read loop without overtaking one.
    waiting: AtomicUsize,
}

impl Jobs {
    /// Carries out `job` after every request before it: in the read loop
    /// when none is waiting, up to its first wait (a delivered signal then
    /// skips a hand-off to the task); in the task otherwise.
    fn run(&self, conn: &Arc<Connection>, job: Job) {
        let work = if self.waiting.load(Ordering::Acquire) == 0 {
            let mut running: Running = Box::pin(run_request(conn.clone(), job));
            if running.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_ready() {
                return;
            }
            Work::Started(running)
        } else {
            Work::Queued(job)
        };
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let refused = match self.tx.try_send(Box::new(work)) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(work) | mpsc::error::TrySendError::Closed(work)) => work,
        };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        // Only a queued request can find the channel full: a started one
        // finds it empty, or closed with the connection.
        if let Work::Queued(job) = *refused {
            job.replier.send(Err(Rejection::new(
                ErrorCode::RateLimited,
                format!("more than {JOBS_IN_FLIGHT} requests in flight on this connection"),
            )));
        }
    }
}

/// Goes on with one connection's requests that wait (a backend that waits
/// on I/O), in arrival order, one at a time. Ends with the connection. A
/// request's future is boxed while it runs, so the idle task (one per
/// connection) is a few words, not the size of the largest request's state.
async fn run_jobs(conn: Weak<Connection>, mut jobs: mpsc::Receiver<Box<Work>>) {
    while let Some(work) = jobs.recv().await {
        match *work {
            Work::Started(running) => running.await,
            Work::Queued(job) => {
                let Some(conn) = conn.upgrade() else { return };
                Box::pin(run_request(conn, job)).await;
            }
        }
        let Some(conn) = conn.upgrade() else { return };
        if let Some(jobs) = &conn.jobs {
            jobs.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Runs a request in the read loop. The local backend's operations finish
/// without waiting, so this completes here; should a backend's operation
/// wait after all, it completes in a task instead.
fn run_inline(conn: &Arc<Connection>, job: Job) {
    let mut work = Box::pin(run_request(conn.clone(), job));
    if work.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending() {
        tokio::spawn(work);
    }
}

/// Carries out one request: the backend's shared budgets, the connection's
/// state ([`admit`]), then the backend operation; answers it.
async fn run_request(conn: Arc<Connection>, job: Job) {
    let state = conn.shared.state.clone();
    let charge = state.charge_request(&conn);
    if job.kind == RequestKind::Signal {
        return run_signal(&conn, job, charge).await;
    }
    if let Err(rejection) = charged(charge.await) {
        return job.replier.send(Err(rejection));
    }
    let Some((admitted, replier)) = admit(&conn, job.kind, job.request, job.replier) else { return };
    match admitted {
        Admitted::Register(registration) => match verify_registration(&conn, &registration) {
            Ok(device) => state.register(&conn, device, registration.allow, replier).await,
            Err(rejection) => registration_refused(&conn, rejection, replier),
        },
        Admitted::Registered(device, request) => replier.send(answer(&conn, device, request).await),
    }
}

/// Carries out a signal: the checks that need nothing but the connection,
/// then the backend, which charges the budgets while it looks the recipient
/// up. A signal that fails its checks is still charged, and a charge with
/// no room is the answer before any other refusal, as for every request.
async fn run_signal(conn: &Arc<Connection>, job: Job, charge: Charge<'_>) {
    let checked = conn.registered().and_then(|device| match job.request? {
        Request::Signal(signal) => checked_signal(conn, device, signal),
        _ => Err(misrouted()),
    });
    let reply = match checked {
        Ok(signal) => {
            let id = signal.id.clone();
            let sent = conn.shared.state.signal(conn, signal, charge).await;
            sent.map(|sent| signal_reply(id, sent.outcome, sent.expires_at))
        }
        Err(rejection) => charged(charge.await).and(Err(rejection)),
    };
    job.replier.send(reply);
}

/// The reply to a request of the registered `device`.
async fn answer(conn: &Arc<Connection>, device: DeviceId, request: Request) -> Result<Map<String, Json>, Rejection> {
    let state = &conn.shared.state;
    match request {
        Request::Subscribe(devices) => Ok(online_reply(&state.subscribe(conn, device, devices).await?)),
        Request::Unsubscribe(devices) => state.unsubscribe(conn, devices).await.map(|()| Map::new()),
        Request::IceConfig => ice_config(conn, device),
        Request::Session(request) => {
            let page = session_requests::offers_page(&conn.shared, &request);
            session_requests::with_page(page, state.session(conn, device, request).await)
        }
        Request::RelayOpen(peer) => state.relay_open(conn, device, peer).await.map(relay_opening_reply),
        Request::Allow(update) => {
            check_allow(conn, &update)?;
            let reply = allowed_reply(update.allow.as_ref());
            state.set_allow(conn, device, update.allow).await?;
            Ok(reply)
        }
        Request::Signal(_) | Request::Register(_) | Request::Relay(_) => Err(misrouted()),
    }
}

/// The reply to a `"relay-open"`.
fn relay_opening_reply(opening: RelayOpening) -> Map<String, Json> {
    let mut fields = Map::new();
    match opening {
        RelayOpening::Waiting => {
            fields.insert("state".into(), Json::from("waiting"));
        }
        RelayOpening::Open { relay } => {
            fields.insert("state".into(), Json::from("open"));
            fields.insert("relay".into(), Json::from(relay));
        }
    }
    fields
}

/// A charge's result as a refusal: `rate_limited` when a budget had no room.
pub(super) fn charged(charge: Result<Option<Limited>, Rejection>) -> Result<(), Rejection> {
    match charge? {
        None => Ok(()),
        Some(limited) => Err(rate_limited(limited)),
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
        let conn = &self.conn;
        let (kind, event) = arguments(value);
        let req = event.as_ref().ok().and_then(|(_, payload)| protocol::request_number(payload));
        let replier = Replier { socket, peer: conn.peer.clone(), ack_id, req };
        let Some(kind) = kind else {
            let unknown = event.and_then(|(name, _)| {
                conn.shared.limiters.check(conn.ip, conn.device().as_ref()).map_err(rate_limited)?;
                Err(Rejection::new(ErrorCode::UnknownEvent, format!("unknown event {:?}", protocol::clip(&name))))
            });
            replier.send(unknown);
            return;
        };
        if kind.is_relay_event() {
            // Relay frames, credit and closes count against the device's and
            // the address's rates at a fraction of a request each (see
            // `ratelimit.rs`); they get no reply, so a refusal comes back as a
            // notice, and a refused frame or credit closes its relay.
            let handled = conn.registered().and_then(|device| {
                let (_, payload) = event?;
                let len = payload.get("data").and_then(Json::as_str).map_or(0, str::len) / 4 * 3;
                if let Err(limited) = conn.shared.limiters.check_relay_event(conn.ip, &device, len) {
                    relay_requests::rate_limited(&conn.shared, &conn.peer, device, &payload);
                    return Err(rate_limited(limited));
                }
                match Request::parse(kind, payload, &conn.shared.config.payload)? {
                    Request::Relay(event) => {
                        conn.shared.state.relay_event(&conn.shared, device, event);
                        Ok(())
                    }
                    _ => Err(misrouted()),
                }
            });
            if let Err(rejection) = handled {
                m::rejected(rejection.code);
                conn.peer.emit(events::NOTICE, &rejection);
            }
            return;
        }
        if let Err(limited) = conn.shared.state.check_rate(&conn.shared, conn.ip, conn.device().as_ref()) {
            replier.send(Err(rate_limited(limited)));
            return;
        }
        let request = event.and_then(|(_, payload)| Request::parse(kind, payload, &conn.shared.config.payload));
        let job = Job { kind, request, replier };
        match &conn.jobs {
            Some(jobs) => jobs.run(conn, job),
            None => run_inline(conn, job),
        }
    }
}

/// A request the connection's state allows.
enum Admitted {
    /// A registration, on a connection that has not registered.
    Register(Registration),
    /// Any other request, from the registered device.
    Registered(DeviceId, Request),
}

/// Gates a parsed request by the connection's state, in arrival order: a
/// registration only on a connection that has not registered (a malformed
/// one spends the challenge and disconnects), anything else only from a
/// registered device (`not_registered` first, whatever the payload).
/// Refusals are answered here.
fn admit(
    conn: &Connection,
    kind: RequestKind,
    request: Result<Request, Rejection>,
    replier: Replier,
) -> Option<(Admitted, Replier)> {
    if kind != RequestKind::Register {
        return match conn.registered().and_then(|device| Ok((device, request?))) {
            Ok((device, request)) => Some((Admitted::Registered(device, request), replier)),
            Err(rejection) => {
                replier.send(Err(rejection));
                None
            }
        };
    }
    if conn.device().is_some() {
        replier.send(Err(Rejection::new(ErrorCode::AlreadyRegistered, "this connection already registered")));
        return None;
    }
    match request {
        Ok(Request::Register(registration)) => Some((Admitted::Register(*registration), replier)),
        Ok(_) => {
            replier.send(Err(misrouted()));
            None
        }
        Err(rejection) => {
            lock(&conn.nonce).take();
            registration_refused(conn, rejection, replier);
            None
        }
    }
}

fn misrouted() -> Rejection {
    Rejection::new(ErrorCode::Internal, "request routed to the wrong handler")
}

/// Takes socketioxide's `["event", payload]` text apart: the request kind its
/// name stands for (`None` for a name the protocol does not have), and the
/// name and payload, or why the event is refused.
fn arguments(value: Value) -> (Option<RequestKind>, Result<(String, Json), Rejection>) {
    let bad = |detail: &str| Rejection::new(ErrorCode::BadRequest, detail);
    let Value::Str(text, attachments) = value else {
        return (None, Err(bad("binary packets are not part of the protocol")));
    };
    let event = protocol::split_event(text.as_str());
    let kind = event.as_ref().ok().and_then(|(name, _)| RequestKind::of(name));
    if attachments.is_some_and(|a| !a.is_empty()) {
        return (kind, Err(bad("binary attachments are not part of the protocol")));
    }
    (kind, event)
}

/// Checks a registration against this connection's challenge (which it
/// spends) and origins; returns the device it proves.
fn verify_registration(conn: &Connection, registration: &Registration) -> Result<DeviceId, Rejection> {
    let nonce = lock(&conn.nonce)
        .take()
        .ok_or_else(|| Rejection::new(ErrorCode::BadSignature, "the challenge was already used"))?;
    let origin = &registration.origin;
    if !conn.origins.contains(origin) {
        return Err(Rejection::new(
            ErrorCode::BadSignature,
            format!("the signature is for {}, not this server ({})", protocol::clip(origin), conn.origins.join(", ")),
        ));
    }
    let message = match &registration.allow {
        None => protocol::register_message(&nonce, origin),
        Some(list) => protocol::register_message_v3(&nonce, origin, list),
    };
    registration.key.verify_strict(&message, &registration.signature).map_err(|_| {
        Rejection::new(ErrorCode::BadSignature, "the signature does not match this connection's challenge")
    })?;
    *lock(&conn.signed) = Some(Signed { key: registration.key, nonce, origin: origin.clone(), counter: None });
    Ok(DeviceId::from_public_key(&registration.key))
}

/// Checks an `"allow"` request's signature over this connection's challenge
/// and its counter (which must grow); accepting it uses the counter up. A
/// refusal (`bad_signature`) leaves the list and the connection as they were.
pub(super) fn check_allow(conn: &Connection, update: &AllowUpdate) -> Result<(), Rejection> {
    let mut signed = lock(&conn.signed);
    let Some(signed) = signed.as_mut() else { return Err(misrouted()) };
    if signed.counter.is_some_and(|last| update.counter <= last) {
        return Err(Rejection::new(
            ErrorCode::BadSignature,
            format!("counter {} is not above the last one used on this connection", update.counter),
        ));
    }
    let message = protocol::allow_message(&signed.nonce, &signed.origin, update.counter, update.allow.as_ref());
    signed.key.verify_strict(&message, &update.signature).map_err(|_| {
        Rejection::new(ErrorCode::BadSignature, "the signature does not match this connection's challenge and counter")
    })?;
    signed.counter = Some(update.counter);
    Ok(())
}

/// The reply to an accepted `"allow"`: how many devices the list names, or
/// `null` (no list).
pub(super) fn allowed_reply(allow: Option<&protocol::AllowList>) -> Map<String, Json> {
    let mut fields = Map::new();
    fields.insert("allowed".into(), allow.map_or(Json::Null, |list| Json::from(list.len())));
    fields
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

/// A checked signal from `from`, ready to forward.
pub(super) fn checked_signal(conn: &Connection, from: DeviceId, signal: Signal) -> Result<CheckedSignal, Rejection> {
    if signal.to == from {
        return Err(Rejection::new(ErrorCode::SelfAddressed, "a device cannot signal itself"));
    }
    let ttl_ms = conn.shared.config.queue.ttl_ms(signal.ttl_ms);
    Ok(CheckedSignal {
        from,
        to: signal.to,
        id: signal.id,
        kind: signal.kind,
        body: signal.body,
        ttl_ms,
        origin: conn.ip,
    })
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

/// The reply to a subscribe: which of the devices are online.
pub(super) fn online_reply(online: &[DeviceId]) -> Map<String, Json> {
    let mut fields = Map::new();
    fields.insert("online".into(), json!(online.iter().map(ToString::to_string).collect::<Vec<_>>()));
    fields
}

fn ice_config(conn: &Arc<Connection>, device: DeviceId) -> Result<Map<String, Json>, Rejection> {
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
        shared.state.disconnected(conn);
        let online = shared.hub().online_count();
        m::connections(live, online);
        debug!(peer = conn.peer.id, %reason, "signaling connection closed");
        defer(socket);
    }
}
