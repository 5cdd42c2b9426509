//! The server side of a socket: socketioxide handlers that feed [`Core`]s, the
//! writer's [`ServerLink`], and the [`SocketIoAcceptor`] queue.
//!
//! Per connection, in order:
//!
//! 1. Connect middleware: refuse (socket.io `connect_error` with the reason) when
//!    the server is shutting down or at its connection cap.
//! 2. Connect handler (synchronous): take a connection slot, register our event
//!    handlers, send `"peers:hello"`, start the writer task and a hello timer.
//! 3. The client's `"peers:hello"`: the socket is complete and goes into the
//!    accept queue (bounded; when full the socket is closed with
//!    [`CloseCode::LimitExceeded`]).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use bytes::Bytes;
use peers_sdk::socket::{SocketInfo, TransportKind, TransportSecurity};
use peers_sdk::{CloseCode, CloseReason};
use serde::Serialize;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::SocketRef;
use socketioxide::handler::{ConnectHandler, DisconnectHandler, MessageHandler, Value};
use socketioxide::socket::{DisconnectReason, Socket as IoSocket};
use socketioxide::{SendError, SocketError, SocketIo};
use tokio::sync::{Mutex as AsyncMutex, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::ServerOptions;
use crate::flow::Credit;
use crate::locality::classify;
use crate::separators::{self, BinaryFormat};
use crate::socket::{CLOSE_TIMEOUT, Core, Link, SocketIoSocket, spawn_writer};
use crate::wire::{
    self, CloseNotice, EVENT_BINARY, EVENT_CLOSE, EVENT_CREDIT, EVENT_HELLO, EVENT_TEXT, Hello, WireError,
};

type Io = IoSocket<LocalAdapter>;

/// Marks our handler trait implementations: they run synchronously, in the
/// connection's read loop, so events are handled in arrival order.
#[derive(Debug)]
pub(crate) struct InOrder;

/// Yields the sockets a socket.io namespace accepts.
///
/// [`SocketIoServer`](crate::SocketIoServer) makes one; to share a `SocketIo`
/// with other namespaces (the signaling server), build the `SocketIo` with
/// [`configure_builder`](crate::configure_builder) and call
/// [`SocketIoAcceptor::attach`]. Dropping the acceptor closes its sockets with
/// [`CloseCode::GoingAway`] and refuses new clients of its namespace.
#[derive(Debug)]
pub struct SocketIoAcceptor {
    queue: AsyncMutex<mpsc::Receiver<SocketIoSocket>>,
    shared: Arc<Shared>,
}

/// What the acceptor and every connection's handlers share.
struct Shared {
    options: ServerOptions,
    local_addr: Option<SocketAddr>,
    queue: mpsc::Sender<SocketIoSocket>,
    live: AtomicUsize,
    shutting_down: AtomicBool,
    next_id: AtomicU64,
    registry: Mutex<HashMap<u64, Weak<Core>>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("namespace", &self.options.namespace)
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SocketIoAcceptor {
    /// Registers our namespace (`options.namespace`) on `io` and returns the
    /// acceptor of its sockets. `local_addr` is reported in each socket's
    /// [`SocketInfo`]. For peer addresses (and so locality), serve the router with
    /// `into_make_service_with_connect_info::<SocketAddr>()`; without it sockets
    /// report no peer address and count as [`Internet`](peers_sdk::socket::Locality::Internet).
    pub fn attach(io: &SocketIo, options: ServerOptions, local_addr: Option<SocketAddr>) -> crate::Result<Self> {
        options.validate()?;
        let (queue_tx, queue_rx) = mpsc::channel(options.accept_backlog);
        let namespace = options.namespace.clone();
        let shared = Arc::new(Shared {
            options,
            local_addr,
            queue: queue_tx,
            live: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            registry: Mutex::new(HashMap::new()),
        });
        io.ns(namespace, NamespaceHandler { shared: shared.clone() });
        Ok(SocketIoAcceptor { queue: AsyncMutex::new(queue_rx), shared })
    }

    /// The next socket whose client completed the transport handshake; `None`
    /// once the acceptor is shut down.
    pub async fn accept(&self) -> Option<SocketIoSocket> {
        self.queue.lock().await.recv().await
    }

    /// Sockets open now (accepted or waiting to be), against the cap
    /// [`ServerOptions::max_connections`].
    pub fn connections(&self) -> usize {
        self.shared.live.load(Ordering::Acquire)
    }

    /// Stops accepting (new clients get a `connect_error`), closes every open
    /// socket with `reason` and waits, at most a few seconds, until each told its
    /// peer. [`accept`](Self::accept) then returns `None`.
    pub async fn shutdown(&self, reason: CloseReason) {
        self.shared.shutting_down.store(true, Ordering::Release);
        self.queue.lock().await.close();
        let cores = self.shared.close_all(&reason);
        let _ = tokio::time::timeout(CLOSE_TIMEOUT * 2, async {
            for core in cores {
                core.wait_writer_done().await;
            }
        })
        .await;
        // Sockets still queued were closed above; dropping them is all that is left.
        while self.queue.lock().await.try_recv().is_ok() {}
    }

    /// Like [`shutdown`](Self::shutdown), without waiting (for `Drop`).
    pub(crate) fn shutdown_now(&self, reason: &CloseReason) -> Vec<Arc<Core>> {
        self.shared.shutting_down.store(true, Ordering::Release);
        self.shared.close_all(reason)
    }
}

impl Drop for SocketIoAcceptor {
    fn drop(&mut self) {
        self.shutdown_now(&CloseReason::new(CloseCode::GoingAway, "server shutting down"));
    }
}

impl Shared {
    fn close_all(&self, reason: &CloseReason) -> Vec<Arc<Core>> {
        let cores: Vec<Arc<Core>> =
            self.registry.lock().unwrap_or_else(|e| e.into_inner()).values().filter_map(Weak::upgrade).collect();
        for core in &cores {
            core.close_local(reason.clone());
        }
        cores
    }

    /// Takes a connection slot unless the cap is reached.
    fn take_slot(&self) -> bool {
        let max = self.options.max_connections;
        self.live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
    }

    fn refusal(&self) -> Option<String> {
        if self.shutting_down.load(Ordering::Acquire) {
            Some("server is shutting down".into())
        } else if self.live.load(Ordering::Acquire) >= self.options.max_connections {
            Some(format!("server is at its connection limit ({})", self.options.max_connections))
        } else {
            None
        }
    }
}

/// The namespace's connect middleware and handler.
#[derive(Clone)]
struct NamespaceHandler {
    shared: Arc<Shared>,
}

type MiddlewareFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Box<dyn fmt::Display + Send>>> + Send + 'a>>;

impl ConnectHandler<LocalAdapter, InOrder> for NamespaceHandler {
    fn call_middleware<'a>(&'a self, socket: Arc<Io>, _auth: &'a Option<Value>) -> MiddlewareFuture<'a> {
        let refusal = self.shared.refusal();
        Box::pin(async move {
            match refusal {
                None => Ok(()),
                Some(reason) => {
                    info!(sid = %socket.id, %reason, "refusing socket.io connection");
                    Err(Box::new(reason) as Box<dyn fmt::Display + Send>)
                }
            }
        })
    }

    fn call(&self, socket: Arc<Io>, _auth: Option<Value>) {
        open_connection(&self.shared, socket);
    }
}

/// Step 2: a client joined our namespace.
fn open_connection(shared: &Arc<Shared>, socket: Arc<Io>) {
    let options = &shared.options;
    let peer = socket.req_parts().extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0);
    let label = match peer {
        Some(peer) => format!("sid={} peer={peer}", socket.id),
        None => format!("sid={}", socket.id),
    };
    if !shared.take_slot() {
        // Lost a race past the middleware's check.
        let notice = CloseNotice {
            code: CloseCode::LimitExceeded,
            message: format!("server is at its connection limit ({})", options.max_connections),
        };
        let _ = socket.emit(EVENT_CLOSE, &notice);
        let _ = socket.disconnect();
        return;
    }
    let core = Core::new(label, options.limits.max_frame_size, options.limits.window(), false);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    shared.registry.lock().unwrap_or_else(|e| e.into_inner()).insert(id, Arc::downgrade(&core));
    let weak = Arc::downgrade(shared);
    core.set_on_close(Box::new(move || {
        if let Some(shared) = weak.upgrade() {
            shared.live.fetch_sub(1, Ordering::AcqRel);
            shared.registry.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        }
    }));

    let (gone_tx, gone_rx) = watch::channel(false);
    let link = ServerLink {
        socket: Some(SocketRef::from(socket.clone())),
        core: core.clone(),
        gone: gone_rx,
        stall_timeout: options.stall_timeout,
    };
    let hello = core.hello();
    // Handlers first, so nothing the client sends after our hello finds none.
    let conn =
        Arc::new(AcceptedConnection { core: core.clone(), shared: shared.clone(), peer, pending: Mutex::new(None) });
    for (event, kind) in [
        (EVENT_BINARY, EventKind::Binary),
        (EVENT_TEXT, EventKind::Text),
        (EVENT_HELLO, EventKind::Hello),
        (EVENT_CREDIT, EventKind::Credit),
        (EVENT_CLOSE, EventKind::Close),
    ] {
        socket.on(event, EventHandler { kind, conn: conn.clone() });
    }
    socket.on_fallback(EventHandler { kind: EventKind::Unknown, conn: conn.clone() });
    socket.on_disconnect(DisconnectHook { core: core.clone(), gone: gone_tx });

    // The writer must be ready before our hello goes out: the client's hello can
    // arrive on another thread right after, and `on_hello` hands the writer over.
    let (outbox, writer) = spawn_writer(core.clone(), link);
    *conn.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some((outbox, writer));
    if let Err(err) = socket.emit(EVENT_HELLO, &hello) {
        core.transport_closed(format!("could not send hello: {err}"));
    }

    let timeout = options.handshake_timeout;
    tokio::spawn(async move {
        if tokio::time::timeout(timeout, core.peer_hello()).await.is_err() {
            core.close_local(CloseReason::new(CloseCode::Timeout, format!("no hello within {timeout:?}")));
        }
    });
}

/// One connection's state, shared by its handlers.
struct AcceptedConnection {
    core: Arc<Core>,
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    /// The writer's outbox and task, until the socket is handed to `accept`.
    pending: Mutex<Option<(mpsc::Sender<Bytes>, JoinHandle<()>)>>,
}

impl AcceptedConnection {
    /// Step 3: the client's hello arrived.
    fn on_hello(&self, hello: Hello) {
        let core = &self.core;
        core.on_hello(hello);
        if core.is_closed() {
            return;
        }
        let Some((outbox, writer)) = self.pending.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let options = &self.shared.options;
        let max_frame = usize::try_from(hello.max_frame).unwrap_or(usize::MAX).min(options.limits.max_frame_size);
        let mut info = SocketInfo::new(TransportKind::SocketIo, max_frame)
            // With TLS: confidential, but no channel binding, because the client
            // (`rust_socketio`, native-tls inside) cannot compute the same one and
            // a binding offered by one side only fails the peers handshake.
            .with_security(TransportSecurity { confidential: options.tls.is_some(), channel_binding: None });
        if let Some(peer) = self.peer {
            info = info.with_locality(classify(peer.ip(), &options.lan_ranges)).with_peer_addr(peer.to_string());
        }
        info.local_addr = self.shared.local_addr.map(|addr| addr.to_string());
        let socket = SocketIoSocket::new(info, core.clone(), outbox, writer);
        match self.shared.queue.try_send(socket) {
            Ok(()) => debug!(socket = %core.label, "socket.io socket ready to accept"),
            Err(mpsc::error::TrySendError::Full(socket)) => {
                core.close_local(CloseReason::new(CloseCode::LimitExceeded, "server's accept backlog is full"));
                drop(socket);
            }
            Err(mpsc::error::TrySendError::Closed(socket)) => {
                core.close_local(CloseReason::new(CloseCode::GoingAway, "server shutting down"));
                drop(socket);
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum EventKind {
    Binary,
    Text,
    Hello,
    Credit,
    Close,
    Unknown,
}

/// Handles one of our events synchronously (see [`InOrder`]).
#[derive(Clone)]
struct EventHandler {
    kind: EventKind,
    conn: Arc<AcceptedConnection>,
}

impl MessageHandler<LocalAdapter, InOrder> for EventHandler {
    fn call(&self, _socket: Arc<Io>, value: Value, ack_id: Option<i64>) {
        let core = &self.conn.core;
        if let Err(error) = self.handle(value, ack_id) {
            core.protocol_violation(&error);
        }
    }
}

impl EventHandler {
    fn handle(&self, value: Value, ack_id: Option<i64>) -> Result<(), WireError> {
        let core = &self.conn.core;
        let Value::Str(json, attachments) = value else {
            return Err(WireError::Malformed { event: "event", detail: "binary packet from a msgpack parser".into() });
        };
        if ack_id.is_some() {
            return Err(WireError::Malformed { event: "event", detail: "acks are not used".into() });
        }
        let mut attachments = attachments.unwrap_or_default();
        if !matches!(self.kind, EventKind::Binary) && !attachments.is_empty() {
            return Err(WireError::Malformed { event: "event", detail: "unexpected binary attachment".into() });
        }
        match self.kind {
            EventKind::Binary => {
                wire::check_binary_header(json.as_str(), attachments.len())?;
                let frame = attachments.pop_front().unwrap_or_default();
                if frame.len() > core.max_recv_frame() {
                    return Err(WireError::FrameTooLarge { size: frame.len(), max: core.max_recv_frame() });
                }
                core.on_frame(frame);
            }
            EventKind::Text => {
                let args = wire::event_args(EVENT_TEXT, json.as_str())?;
                let (frame, grant) = wire::decode_text_frame(&args, core.max_recv_frame())?;
                core.on_frame(frame);
                if let Some(grant) = grant {
                    core.on_grant(grant);
                }
            }
            EventKind::Hello => {
                let args = wire::event_args(EVENT_HELLO, json.as_str())?;
                self.conn.on_hello(wire::decode_control(EVENT_HELLO, &args)?);
            }
            EventKind::Credit => {
                let args = wire::event_args(EVENT_CREDIT, json.as_str())?;
                core.on_grant(wire::decode_control::<Credit>(EVENT_CREDIT, &args)?);
            }
            EventKind::Close => {
                let args = wire::event_args(EVENT_CLOSE, json.as_str())?;
                core.on_close_notice(wire::decode_control(EVENT_CLOSE, &args)?);
            }
            EventKind::Unknown => {
                let name = serde_json::from_str::<(String, serde::de::IgnoredAny)>(json.as_str())
                    .map(|(name, _)| name)
                    .unwrap_or_else(|_| "(unreadable)".into());
                return Err(WireError::UnknownEvent(name));
            }
        }
        Ok(())
    }
}

/// Turns socket.io's disconnect into a close reason, unless the peer already
/// gave one.
struct DisconnectHook {
    core: Arc<Core>,
    gone: watch::Sender<bool>,
}

impl DisconnectHandler<LocalAdapter, InOrder> for DisconnectHook {
    fn call_with_defer(&self, socket: Arc<Io>, reason: DisconnectReason, defer: fn(Arc<Io>)) {
        self.gone.send_replace(true);
        match reason {
            DisconnectReason::ServerNSDisconnect | DisconnectReason::ClosingServer => {
                self.core.close_local(CloseReason::new(CloseCode::GoingAway, format!("socket.io: {reason}")));
            }
            // socketioxide dropped a client that broke the socket.io or engine.io
            // protocol (a packet it could not parse, such as broken JSON or an
            // attachment over the size limit; concurrent polling requests).
            DisconnectReason::PacketParsingError | DisconnectReason::MultipleHttpPollingError => {
                self.core.dropped_for_violation(format!("socket.io dropped the client: {reason}"));
            }
            _ => self.core.transport_closed(format!("client disconnected without a reason ({reason})")),
        }
        defer(socket);
    }
}

/// The writer's way out: socketioxide's emit, which never waits but fails when
/// the socket's buffer of packets (`max_buffer_size`) is full.
struct ServerLink {
    socket: Option<SocketRef>,
    core: Arc<Core>,
    /// Set once socketioxide reports the disconnect.
    gone: watch::Receiver<bool>,
    stall_timeout: Duration,
}

impl ServerLink {
    /// Emits, treating a full buffer as backpressure: waits and retries, up to
    /// `stall_timeout` (the transport is then considered dead).
    async fn emit<T: Serialize + ?Sized>(&self, event: &'static str, data: &T) -> Result<(), String> {
        let Some(socket) = &self.socket else { return Err("socket gone".into()) };
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match socket.emit(event, data) {
                Ok(()) => return Ok(()),
                Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                    if started.elapsed() >= self.stall_timeout {
                        return Err(format!("socket.io send buffer stayed full for {:?}", self.stall_timeout));
                    }
                    if *self.gone.borrow() {
                        return Err("socket.io connection closed".into());
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(err) => return Err(err.to_string()),
            }
        }
    }
}

impl ServerLink {
    /// Whether a frame of `len` bytes goes as one text event: a small frame, to a
    /// client whose library parses binary events badly (its hello asks for
    /// escaping: `rust_socketio`). Such a client parses one text message once,
    /// instead of a header and an attachment. Other clients always get `"b"`.
    fn small_as_text(&self, len: usize) -> bool {
        len < wire::SERVER_SMALL_FRAME_LIMIT && self.core.send_format() != BinaryFormat::Raw
    }
}

impl Link for ServerLink {
    fn piggybacks(&self, len: usize) -> bool {
        self.small_as_text(len)
    }

    async fn send_frame(&mut self, frame: Bytes, grant: Option<Credit>) -> Result<(), String> {
        if self.small_as_text(frame.len()) {
            let text = wire::encode_base64(&frame);
            return match grant {
                Some(grant) => self.emit(EVENT_TEXT, &(text, grant)).await,
                None => self.emit(EVENT_TEXT, &text).await,
            };
        }
        self.emit(EVENT_BINARY, &separators::encode(self.core.send_format(), frame)).await
    }

    async fn send_grant(&mut self, grant: Credit) -> Result<(), String> {
        self.emit(EVENT_CREDIT, &grant).await
    }

    async fn send_close(&mut self, notice: &CloseNotice) -> Result<(), String> {
        self.emit(EVENT_CLOSE, notice).await
    }

    /// Lets the client disconnect first, so everything queued (the close notice
    /// above all) reaches it; after [`CLOSE_TIMEOUT`] disconnects it ourselves.
    async fn disconnect(&mut self) {
        let mut gone = self.gone.clone();
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, gone.wait_for(|gone| *gone)).await;
        if let Some(socket) = self.socket.take() {
            let _ = socket.disconnect();
        }
        debug!(socket = %self.core.label, "socket.io server socket disconnected");
    }
}

impl Drop for ServerLink {
    /// The writer was stopped before it disconnected: do it now.
    fn drop(&mut self) {
        if let Some(socket) = self.socket.take() {
            let _ = socket.disconnect();
        }
    }
}
