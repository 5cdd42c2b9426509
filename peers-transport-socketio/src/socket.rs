//! [`SocketIoSocket`]: the [`Socket`] both the server and the client hand out,
//! and the machinery they share.
//!
//! ```text
//!  send() ──wait for credit──▶ outbox (4 frames) ──▶ writer task ──▶ Link (server: socketioxide emit,
//!                                                     ▲     ▲                 client: rust_socketio emit)
//!                              recv() ── grant due ───┘     └── close: drain outbox, "peers:close", disconnect
//!
//!  transport read loop ──(synchronous handler, in arrival order)──▶ Core::on_frame ──▶ queue ──▶ recv()
//!                                                                  Core::on_grant / on_close_notice / …
//! ```
//!
//! - **Order.** Both libraries hand us events in arrival order as long as our
//!   handlers are synchronous: socketioxide extracts a message's arguments
//!   synchronously in the connection's read loop and only then spawns the handler's
//!   future (so async handlers could run out of order: we implement
//!   `MessageHandler` ourselves and never spawn), and `rust_socketio` awaits each
//!   callback in its one polling task (ours return a ready future). Frames leave
//!   through one writer task per socket, so they keep the order `send` gave them.
//! - **Bounded memory.** The queue holds at most the receive window
//!   ([`crate::flow`]); a peer that sends beyond it is disconnected with a
//!   [`CloseCode::ProtocolError`]. The outbox holds 4 frames.
//! - **Cancellation.** `send` and `recv` are cancel-safe: a frame is either queued
//!   for the writer or not, and `recv` returns a frame as soon as it leaves the
//!   queue. Grants go out from the writer, never from `recv`.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use peers_sdk::socket::{ClosedBy, SocketInfo, SocketLifecycle};
use peers_sdk::{CloseCode, CloseReason, Error, Socket, SocketState};
use tokio::sync::{Mutex as AsyncMutex, Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::flow::{Credit, RecvWindow, SendCredit};
use crate::separators::BinaryFormat;
use crate::wire::{CloseNotice, Hello, WireError};

/// How long closing waits to hand the frames already sent and the close notice to
/// the transport before it disconnects anyway.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Frames between `send` and the writer task.
const OUTBOX_FRAMES: usize = 4;

/// Locks a std mutex, ignoring poisoning: every critical section here leaves the
/// data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What arrived and was not read yet.
#[derive(Debug)]
struct Inbound {
    queue: VecDeque<Bytes>,
    window: RecvWindow,
}

/// State shared by a socket, its writer task and the transport's event handlers.
#[derive(Debug)]
pub(crate) struct Core {
    /// Names the socket in logs.
    pub(crate) label: String,
    /// The largest frame we accept.
    max_recv_frame: usize,
    /// Our hello asks for binary frames without 0x1e (escaped, or patched if the
    /// peer can; see [`crate::separators`]).
    escape: bool,
    state: SocketLifecycle,
    /// A local close that the writer should tell the peer about.
    notify_peer: AtomicBool,
    inbound: Mutex<Inbound>,
    inbound_ready: Notify,
    /// Also the lock that orders "queue a frame" against "close".
    send_credit: Mutex<SendCredit>,
    credit_changed: Notify,
    grant_wanted: Notify,
    peer_hello: watch::Sender<Option<Hello>>,
    writer_done: watch::Sender<bool>,
    /// Runs once when the socket closes (the server releases a connection slot).
    on_close: Mutex<Option<CloseHook>>,
}

/// What runs once when a socket closes.
struct CloseHook(Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for CloseHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CloseHook")
    }
}

impl Core {
    /// `escape`: our hello asks the peer to escape 0x1e in binary frames.
    pub(crate) fn new(label: String, max_recv_frame: usize, window: Credit, escape: bool) -> Arc<Core> {
        Arc::new(Core {
            label,
            max_recv_frame,
            escape,
            state: SocketLifecycle::new(),
            notify_peer: AtomicBool::new(false),
            inbound: Mutex::new(Inbound { queue: VecDeque::new(), window: RecvWindow::new(window) }),
            inbound_ready: Notify::new(),
            send_credit: Mutex::new(SendCredit::default()),
            credit_changed: Notify::new(),
            grant_wanted: Notify::new(),
            peer_hello: watch::Sender::new(None),
            writer_done: watch::Sender::new(false),
            on_close: Mutex::new(None),
        })
    }

    /// The largest frame we accept.
    pub(crate) fn max_recv_frame(&self) -> usize {
        self.max_recv_frame
    }

    /// Our hello: our limits and the first credit grant.
    pub(crate) fn hello(&self) -> Hello {
        Hello {
            v: crate::wire::VERSION,
            max_frame: self.max_recv_frame as u64,
            window: lock(&self.inbound).window.initial(),
            escape_record_separators: self.escape,
            // Our server patches for clients that ask; our client decodes it.
            patch_record_separators: true,
        }
    }

    #[cfg(feature = "server")]
    /// Sets what runs once when the socket closes; runs it at once if it already has.
    pub(crate) fn set_on_close(&self, hook: Box<dyn FnOnce() + Send>) {
        if self.is_closed() {
            hook();
            return;
        }
        *lock(&self.on_close) = Some(CloseHook(hook));
        if self.is_closed()
            && let Some(hook) = lock(&self.on_close).take()
        {
            (hook.0)();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        !self.state.is_open()
    }

    pub(crate) fn state(&self) -> SocketState {
        self.state.state()
    }

    pub(crate) fn closed_error(&self) -> Error {
        self.state.closed_error()
    }

    pub(crate) async fn wait_closed(&self) -> CloseReason {
        self.state.closed().await
    }

    /// Records the close (the first reason wins) and wakes everyone waiting.
    /// `notify_peer`: the writer sends the reason to the peer before disconnecting.
    fn set_closed(&self, reason: CloseReason, notify_peer: bool) -> bool {
        let changed = {
            // Under the credit lock, so no frame is queued after the close.
            let _credit = lock(&self.send_credit);
            if self.state.is_open() {
                // Before the state changes: the writer reads it once it sees the close.
                // Every close goes through this lock, so no other close interleaves.
                self.notify_peer.store(notify_peer, Ordering::Release);
            }
            self.state.close(reason.clone())
        };
        if changed {
            debug!(socket = %self.label, %reason, "socket.io socket closed");
            self.inbound_ready.notify_one();
            self.credit_changed.notify_one();
            let hook = lock(&self.on_close).take();
            if let Some(hook) = hook {
                (hook.0)();
            }
        }
        changed
    }

    /// This side closes: the writer tells the peer `reason` after the frames
    /// already queued.
    pub(crate) fn close_local(&self, reason: CloseReason) -> bool {
        self.set_closed(CloseReason { by: ClosedBy::Local, ..reason }, true)
    }

    /// The transport went away (or failed) without the peer's reason.
    pub(crate) fn transport_closed(&self, detail: impl Into<String>) {
        self.set_closed(CloseReason::new(CloseCode::TransportFailure, detail), false);
    }

    #[cfg(feature = "client")]
    /// The server refused us (socket.io `connect_error`).
    pub(crate) fn close_refused(&self, reason: String) {
        self.set_closed(CloseReason::new(CloseCode::Refused, reason).as_remote(), false);
    }

    /// The peer broke the protocol: log it, tell the peer why, and close.
    pub(crate) fn protocol_violation(&self, error: &WireError) {
        if !self.is_closed() {
            warn!(socket = %self.label, %error, "closing socket.io socket: peer broke the protocol");
        }
        self.set_closed(CloseReason::new(CloseCode::ProtocolError, error.to_string()), true);
    }

    #[cfg(feature = "server")]
    /// The transport library dropped the peer for breaking its protocol; the
    /// connection is gone, so the peer cannot be told.
    pub(crate) fn dropped_for_violation(&self, detail: String) {
        if !self.is_closed() {
            warn!(socket = %self.label, %detail, "socket.io socket closed: peer broke the protocol");
        }
        self.set_closed(CloseReason::new(CloseCode::ProtocolError, detail), false);
    }

    /// The peer's `"peers:close"`.
    pub(crate) fn on_close_notice(&self, notice: CloseNotice) {
        debug!(socket = %self.label, ?notice, "peer's close notice");
        self.set_closed(CloseReason::new(notice.code, notice.message).as_remote(), false);
    }

    /// A frame arrived.
    pub(crate) fn on_frame(&self, frame: Bytes) {
        if self.is_closed() {
            return;
        }
        let overrun = {
            let mut inbound = lock(&self.inbound);
            match inbound.window.on_frame(frame.len()) {
                Ok(()) => {
                    inbound.queue.push_back(frame);
                    None
                }
                Err(overrun) => Some(overrun),
            }
        };
        match overrun {
            None => self.inbound_ready.notify_one(),
            Some(overrun) => {
                warn!(socket = %self.label, %overrun, "closing socket.io socket: peer ignored flow control");
                self.set_closed(CloseReason::new(CloseCode::ProtocolError, overrun.to_string()), true);
            }
        }
    }

    /// A credit grant arrived.
    pub(crate) fn on_grant(&self, grant: Credit) {
        lock(&self.send_credit).allow(grant);
        self.credit_changed.notify_one();
    }

    /// The peer's hello arrived. A second one is a protocol error.
    pub(crate) fn on_hello(&self, hello: Hello) {
        if let Err(error) = hello.validate() {
            return self.protocol_violation(&error);
        }
        let first = self.peer_hello.send_if_modified(|slot| match slot {
            None => {
                *slot = Some(hello);
                true
            }
            Some(_) => false,
        });
        if !first {
            return self.protocol_violation(&WireError::BadHello("a second hello".into()));
        }
        self.on_grant(hello.window);
    }

    /// Waits for the peer's hello; `None` if the socket closed first.
    pub(crate) async fn peer_hello(&self) -> Option<Hello> {
        let mut hello = self.peer_hello.subscribe();
        tokio::select! {
            hello = hello.wait_for(Option::is_some) => hello.ok().and_then(|h| *h),
            _ = self.state.closed() => None,
        }
    }

    #[cfg(feature = "server")]
    /// How binary frames to the peer travel, from its hello (raw before it).
    pub(crate) fn send_format(&self) -> BinaryFormat {
        self.peer_hello.borrow().map_or(BinaryFormat::Raw, |peer| {
            BinaryFormat::new(peer.escape_record_separators, peer.patch_record_separators, true)
        })
    }

    #[cfg(feature = "client")]
    /// How binary frames from the peer travel, from both hellos (as asked before
    /// the peer's hello).
    pub(crate) fn recv_format(&self) -> BinaryFormat {
        let peer_patches = self.peer_hello.borrow().is_some_and(|peer| peer.patch_record_separators);
        BinaryFormat::new(self.escape, true, peer_patches)
    }

    /// Waits until the writer task finished (it told the peer and disconnected).
    pub(crate) async fn wait_writer_done(&self) {
        let mut done = self.writer_done.subscribe();
        let _ = done.wait_for(|done| *done).await;
    }

    /// The grant to announce now, if any (the writer sends it, or piggybacks it).
    fn take_grant(&self) -> Option<Credit> {
        lock(&self.inbound).window.announce()
    }
}

/// The outgoing half of a transport, driven only by the writer task.
pub(crate) trait Link: Send + 'static {
    /// Whether a frame of `len` bytes can carry a credit grant along.
    fn piggybacks(&self, len: usize) -> bool;
    /// Sends one frame, with a grant when [`piggybacks`](Link::piggybacks) said so.
    fn send_frame(&mut self, frame: Bytes, grant: Option<Credit>) -> impl Future<Output = Result<(), String>> + Send;
    /// Sends a credit grant.
    fn send_grant(&mut self, grant: Credit) -> impl Future<Output = Result<(), String>> + Send;
    /// Sends the close notice.
    fn send_close(&mut self, notice: &CloseNotice) -> impl Future<Output = Result<(), String>> + Send;
    /// Ends the socket.io connection.
    fn disconnect(&mut self) -> impl Future<Output = ()> + Send;
}

/// Starts the writer task of `core` over `link`.
pub(crate) fn spawn_writer<L: Link>(core: Arc<Core>, link: L) -> (mpsc::Sender<Bytes>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(OUTBOX_FRAMES);
    let task = tokio::spawn(run_writer(core, link, rx));
    (tx, task)
}

async fn run_writer<L: Link>(core: Arc<Core>, mut link: L, mut outbox: mpsc::Receiver<Bytes>) {
    // One wait for the close for the writer's whole life, not one per frame.
    let closed = core.wait_closed();
    tokio::pin!(closed);
    loop {
        let sent = tokio::select! {
            biased;
            _ = &mut closed => break,
            frame = outbox.recv() => match frame {
                Some(frame) => {
                    let grant = if link.piggybacks(frame.len()) { core.take_grant() } else { None };
                    link.send_frame(frame, grant).await
                }
                None => break,
            },
            () = core.grant_wanted.notified() => match core.take_grant() {
                Some(grant) => link.send_grant(grant).await,
                None => Ok(()),
            },
        };
        if let Err(detail) = sent {
            core.transport_closed(format!("send failed: {detail}"));
            break;
        }
    }
    if core.notify_peer.load(Ordering::Acquire) {
        let reason = match core.state() {
            SocketState::Closed(reason) => reason,
            SocketState::Open => CloseReason::new(CloseCode::GoingAway, "socket dropped"),
        };
        let notice = CloseNotice { code: reason.code, message: reason.message };
        // The frames queued before the close go first.
        let delivered = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while let Ok(frame) = outbox.try_recv() {
                link.send_frame(frame, None).await?;
            }
            link.send_close(&notice).await
        })
        .await;
        match delivered {
            Ok(Ok(())) => debug!(socket = %core.label, ?notice, "close notice sent"),
            Ok(Err(err)) => debug!(socket = %core.label, %err, "could not deliver the close notice"),
            Err(_) => debug!(socket = %core.label, "could not deliver the close notice in time"),
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, link.disconnect()).await;
    core.writer_done.send_replace(true);
}

/// A [`Socket`] over one socket.io connection, from [`SocketIoServer`](crate::SocketIoServer)
/// or [`connect`](crate::connect).
///
/// Frames below the small-frame limit travel as one text event, larger ones as
/// one binary event; the receiver grants credit as its application reads, so
/// [`send`](Socket::send) waits when the peer does not keep up and nothing is
/// buffered without bound. Dropping the socket closes it with
/// [`CloseCode::GoingAway`] and tells the peer.
#[derive(Debug)]
pub struct SocketIoSocket {
    info: SocketInfo,
    core: Arc<Core>,
    outbox: mpsc::Sender<Bytes>,
    send_turn: AsyncMutex<()>,
    recv_turn: AsyncMutex<()>,
    writer: JoinHandle<()>,
    /// `close` was called here: `recv` stops at once, unlike after the peer's
    /// close, when the frames that arrived first are still delivered.
    closed_here: AtomicBool,
}

impl SocketIoSocket {
    pub(crate) fn new(
        info: SocketInfo,
        core: Arc<Core>,
        outbox: mpsc::Sender<Bytes>,
        writer: JoinHandle<()>,
    ) -> SocketIoSocket {
        SocketIoSocket {
            info,
            core,
            outbox,
            send_turn: AsyncMutex::new(()),
            recv_turn: AsyncMutex::new(()),
            writer,
            closed_here: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl Socket for SocketIoSocket {
    fn info(&self) -> &SocketInfo {
        &self.info
    }

    async fn send(&self, frame: Bytes) -> peers_sdk::Result<()> {
        let len = frame.len();
        if len > self.info.max_frame_size {
            return Err(Error::FrameTooLarge { size: len, max: self.info.max_frame_size });
        }
        let core = &self.core;
        // One sender at a time, in the order they arrived (tokio's mutex is fair).
        let _turn = self.send_turn.lock().await;
        // The outbox usually has room: take it without setting up a wait.
        let permit = match self.outbox.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Closed(())) => return Err(core.closed_error()),
            Err(mpsc::error::TrySendError::Full(())) => tokio::select! {
                biased;
                _ = core.wait_closed() => return Err(core.closed_error()),
                permit = self.outbox.reserve() => permit.map_err(|_| core.closed_error())?,
            },
        };
        loop {
            {
                let mut credit = lock(&core.send_credit);
                if core.is_closed() {
                    return Err(core.closed_error());
                }
                if credit.take(len) {
                    permit.send(frame);
                    return Ok(());
                }
            }
            // Backpressure: the peer's application has not read enough yet.
            tokio::select! {
                () = core.credit_changed.notified() => {}
                _ = core.wait_closed() => {}
            }
        }
    }

    async fn recv(&self) -> peers_sdk::Result<Bytes> {
        let core = &self.core;
        let _turn = self.recv_turn.lock().await;
        loop {
            if self.closed_here.load(Ordering::Acquire) {
                return Err(core.closed_error());
            }
            {
                let mut inbound = lock(&core.inbound);
                if let Some(frame) = inbound.queue.pop_front() {
                    if inbound.window.on_consumed(frame.len()) {
                        core.grant_wanted.notify_one();
                    }
                    return Ok(frame);
                }
            }
            // After the peer's close or a failure, what arrived first is delivered.
            if core.is_closed() {
                return Err(core.closed_error());
            }
            core.inbound_ready.notified().await;
        }
    }

    async fn close(&self, reason: CloseReason) {
        self.closed_here.store(true, Ordering::Release);
        self.core.close_local(CloseReason::new(reason.code, reason.message));
        let finished = tokio::time::timeout(CLOSE_TIMEOUT * 2, self.core.wait_writer_done()).await;
        if finished.is_err() {
            debug!(socket = %self.core.label, "writer stuck on a transport that does not drain; stopping it");
            self.writer.abort();
        }
    }

    fn state(&self) -> SocketState {
        self.core.state()
    }

    async fn closed(&self) -> CloseReason {
        self.core.wait_closed().await
    }
}

impl Drop for SocketIoSocket {
    /// Closes with [`CloseCode::GoingAway`]; the writer task still tells the peer.
    fn drop(&mut self) {
        self.core.close_local(CloseReason::new(CloseCode::GoingAway, "socket dropped"));
    }
}
