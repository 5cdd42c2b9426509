//! An authenticated, encrypted connection with two-way RPC over any [`Socket`].
//!
//! [`Connection::connect`] and [`Connection::accept`] run the
//! [handshake](crate::handshake) over the socket, then spawn one reader task that
//! opens frames, reassembles messages and dispatches them. Either side may call
//! the other: [`Connection::expose_rpc`] registers a handler and
//! [`Connection::emit`] calls one. Handlers that must answer the peer's first
//! call are installed by [`ConnectionConfig::with_setup`], which runs before the
//! peer is told the connection is ready.

mod activity;
mod config;
mod establish;
mod reader;
pub(crate) mod seal;
mod stream;

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex as AsyncMutex, watch};
use tracing::debug;

pub use config::{Clock, ConnectionConfig, Setup};
#[cfg(test)]
pub(crate) use establish::unix_millis;
pub use stream::{StreamProgress, StreamReader, StreamWriter};

use self::seal::{SEAL_HEADROOM, SEAL_TAILROOM, Sealer};
use crate::codec::{CompressionBackoff, FrameEncoder, MessageBuf};
use crate::error::{Error, Result, decode_msgpack};
use crate::handshake::{Role, TransportCipher};
use crate::identity::DeviceInfo;
use crate::rpc::{Envelope, PendingCalls, RemoteError, RemoteErrorCode};
use crate::socket::{BoxSocket, CloseCode, CloseReason, SocketInfo};
use crate::trust::TrustLevel;

/// The lifecycle of a connection after the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Authenticated; RPCs flow.
    Verified,
    /// Closed, with the reason.
    Closed(CloseReason),
}

/// A handler's output: the complete reply message (envelope and result).
type HandlerFuture = Pin<Box<dyn Future<Output = Result<MessageBuf, RemoteError>> + Send>>;
/// A type-erased handler: call id and argument bytes in, reply message out.
type Handler = Arc<dyn Fn(u64, Bytes) -> HandlerFuture + Send + Sync>;

/// A verified connection to another device. Cheap to clone; all clones share it.
///
/// Dropping the last clone closes the connection with [`CloseCode::GoingAway`].
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use peers_sdk::{Connection, ConnectionConfig, DeviceKeys, MemorySocket, TrustLevel, rpc::RemoteError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> peers_sdk::Result<()> {
/// let alice = Arc::new(DeviceKeys::generate("alice")?);
/// let bob = Arc::new(DeviceKeys::generate("bob")?);
/// let trust_everyone = |_: &peers_sdk::DeviceInfo| TrustLevel::Trusted;
/// let (a, b) = MemorySocket::pair(64, 64 * 1024);
///
/// let (dialer, listener) = tokio::join!(
///     Connection::connect(Box::new(a), ConnectionConfig::new(alice, trust_everyone), None),
///     Connection::accept(Box::new(b), ConnectionConfig::new(bob, trust_everyone)),
/// );
/// let (dialer, listener) = (dialer?, listener?);
///
/// listener.expose_rpc("add", |(x, y): (i64, i64)| async move { Ok::<_, RemoteError>(x + y) });
/// let sum: i64 = dialer.emit("add", &(2, 3)).await?;
/// assert_eq!(sum, 5);
/// assert_eq!(listener.remote().user_id, "alice");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
    _owner: Arc<CloseOnDrop>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("remote", &self.inner.remote.device_id)
            .field("transport", &self.inner.socket.info().transport)
            .field("state", &*self.inner.state.borrow())
            .finish_non_exhaustive()
    }
}

/// Shared by the handles, the reader task and handler tasks.
struct Inner {
    socket: BoxSocket,
    config: ConnectionConfig,
    remote: DeviceInfo,
    trust: TrustLevel,
    role: Role,
    /// The AEAD sealing our frames; `None` on a bound, confidential transport.
    cipher: Option<TransportCipher>,
    session_id: [u8; 32],
    encoder: Mutex<FrameEncoder>,
    sealer: AsyncMutex<Sealer>,
    pending: Mutex<PendingCalls>,
    handlers: RwLock<HashMap<String, Handler>>,
    stream_handlers: RwLock<HashMap<String, stream::StreamHandler>>,
    streams: Mutex<stream::StreamTable>,
    handler_slots: Arc<tokio::sync::Semaphore>,
    state: watch::Sender<ConnectionState>,
    /// Set by [`Connection::close`] before its notice goes out, so a peer that
    /// answers the notice faster than this side records the close cannot make
    /// the close look remote: this side's reason wins.
    closing: Mutex<Option<CloseReason>>,
    /// When the peer was last heard, and the wake-up for [`Connection::idle`].
    activity: activity::Activity,
}

/// Closes the connection when the last user handle goes away.
struct CloseOnDrop(Arc<Inner>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let inner = self.0.clone();
        if matches!(*inner.state.borrow(), ConnectionState::Closed(_)) {
            return;
        }
        let reason = CloseReason::new(CloseCode::GoingAway, "connection dropped");
        inner.mark_closed(&reason);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { inner.socket.close(reason).await });
        }
    }
}

impl Connection {
    /// The authenticated peer.
    pub fn remote(&self) -> &DeviceInfo {
        &self.inner.remote
    }

    /// The trust level the policy gave the peer.
    pub fn trust(&self) -> TrustLevel {
        self.inner.trust
    }

    /// Whether we dialed or accepted.
    pub fn role(&self) -> Role {
        self.inner.role
    }

    /// The underlying socket's description (transport, locality, addresses).
    pub fn socket_info(&self) -> &SocketInfo {
        self.inner.socket.info()
    }

    /// The network path the socket's packets take now, if its transport knows
    /// (see [`Socket::path`](crate::Socket::path)).
    pub fn path(&self) -> Option<crate::PathInfo> {
        self.inner.socket.path()
    }

    /// Whether frames are sealed by our AEAD. False only when the transport's own
    /// encryption is bound into the handshake and both sides agreed to rely on it.
    pub fn is_encrypted(&self) -> bool {
        self.inner.cipher.is_some()
    }

    /// The AEAD the handshake negotiated for our frames, or `None` when
    /// [`is_encrypted`](Self::is_encrypted) is false.
    pub fn cipher(&self) -> Option<TransportCipher> {
        self.inner.cipher
    }

    /// A value unique to this session that both sides share (the final handshake
    /// hash).
    pub fn session_id(&self) -> [u8; 32] {
        self.inner.session_id
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.inner.state.borrow().clone()
    }

    /// Lifecycle events: a receiver that sees every state change.
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.state.subscribe()
    }

    /// Waits until the connection closes and returns why.
    pub async fn closed(&self) -> CloseReason {
        self.inner.wait_closed().await
    }

    /// How many calls this side made that still wait for replies.
    pub fn pending_calls(&self) -> usize {
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Registers `handler` for calls to `method`, replacing any earlier one.
    ///
    /// The handler receives the decoded arguments. Arguments that do not decode
    /// into `A` are answered with [`RemoteErrorCode::BadArguments`] without calling
    /// it.
    pub fn expose_rpc<A, R, F, Fut>(&self, method: &str, handler: F)
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RemoteError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |id: u64, body: Bytes| {
            let handler = handler.clone();
            Box::pin(async move {
                let args: A = decode_msgpack("rpc arguments", &body)
                    .map_err(|e| RemoteError::new(RemoteErrorCode::BadArguments, e.to_string()))?;
                let result = handler(args).await?;
                Envelope::Reply { id }
                    .encode_value("rpc result", &result)
                    .map_err(|e| RemoteError::new(RemoteErrorCode::Internal, e.to_string()))
            })
        });
        self.inner.handlers.write().unwrap_or_else(|e| e.into_inner()).insert(method.to_owned(), erased);
    }

    /// Removes the handler for `method`; later calls get
    /// [`RemoteErrorCode::UnknownMethod`].
    pub fn remove_rpc(&self, method: &str) {
        self.inner.handlers.write().unwrap_or_else(|e| e.into_inner()).remove(method);
    }

    /// Calls `method` on the peer with the configured default timeout.
    pub async fn emit<A, R>(&self, method: &str, args: &A) -> Result<R>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.emit_with_timeout(method, args, self.inner.config.call_timeout).await
    }

    /// Calls `method` on the peer, failing with [`Error::Timeout`] after `timeout`.
    ///
    /// A remote failure comes back as [`Error::Remote`]. If the connection closes
    /// while waiting, the call fails at once with [`Error::Closed`]. Whatever
    /// happens, nothing of the call is left behind.
    pub async fn emit_with_timeout<A, R>(&self, method: &str, args: &A, timeout: Duration) -> Result<R>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let inner = &self.inner;
        let (id, reply) =
            inner.pending.lock().unwrap_or_else(|e| e.into_inner()).start(inner.config.max_calls_in_flight)?;
        let guard = PendingGuard { inner, id };
        let message = Envelope::Call { id, method: method.to_owned() }.encode_value("rpc arguments", args)?;
        let outcome = tokio::time::timeout(timeout, async {
            inner.send_message(message).await?;
            reply.await.map_err(|_| inner.closed_error())?
        })
        .await;
        drop(guard);
        let body = match outcome {
            Ok(result) => result?,
            Err(_) => return Err(Error::Timeout { what: format!("rpc call {method:?}"), after: timeout }),
        };
        Ok(decode_msgpack("rpc result", &body)?)
    }

    /// Closes the connection: tells the peer `reason`, closes the socket, and fails
    /// every pending call.
    pub async fn close(&self, reason: CloseReason) {
        self.inner.close(reason).await;
    }
}

/// Forgets a call whose caller stopped waiting (timeout or cancellation).
struct PendingGuard<'a> {
    inner: &'a Inner,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner()).cancel(self.id);
        self.inner.activity.settled();
    }
}

/// Polls a future, turning a panic into `Err` with the panic's message. Once it
/// returned `Ready` (or panicked) it is not polled again.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let work = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(work).poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

/// The message of a caught panic, when it has one.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        format!("panicked: {message}")
    } else if let Some(message) = payload.downcast_ref::<String>() {
        format!("panicked: {message}")
    } else {
        "panicked".to_owned()
    }
}

impl Inner {
    async fn wait_closed(&self) -> CloseReason {
        let mut rx = self.state.subscribe();
        loop {
            if let ConnectionState::Closed(reason) = &*rx.borrow_and_update() {
                return reason.clone();
            }
            if rx.changed().await.is_err() {
                return CloseReason::new(CloseCode::GoingAway, "connection dropped");
            }
        }
    }

    /// Runs `work` until it finishes or the connection closes; then it is dropped
    /// and `None` is returned. A panic in `work` is caught and comes back as
    /// `Err` with its message, so a handler's bug fails its call, not the
    /// connection. It runs in the calling task: a call costs no extra spawn.
    async fn run_until_closed<F: Future + Unpin>(&self, work: F) -> Option<Result<F::Output, String>> {
        tokio::select! {
            outcome = CatchUnwind(work) => Some(outcome),
            _ = self.wait_closed() => None,
        }
    }

    fn closed_error(&self) -> Error {
        match &*self.state.borrow() {
            ConnectionState::Closed(reason) => Error::Closed { reason: reason.clone() },
            ConnectionState::Verified => Error::Closed { reason: CloseReason::new(CloseCode::GoingAway, "closing") },
        }
    }

    /// Encodes and sends `envelope` followed by `body`.
    async fn send(&self, envelope: &Envelope, body: &[u8]) -> Result<()> {
        self.send_message(envelope.encode(body)?).await
    }

    /// Frames, seals and sends one encoded message. Frames of different messages
    /// may interleave; the frames of one message keep their order.
    async fn send_message(&self, message: MessageBuf) -> Result<()> {
        self.send_message_with(message, None).await
    }

    /// [`send_message`](Self::send_message) with a stream's compression backoff.
    async fn send_message_with(&self, message: MessageBuf, backoff: Option<&mut CompressionBackoff>) -> Result<()> {
        if matches!(*self.state.borrow(), ConnectionState::Closed(_)) {
            return Err(self.closed_error());
        }
        // The seal's overhead is fixed for the session: no lock to read it.
        let (headroom, tailroom) = if self.cipher.is_some() { (SEAL_HEADROOM, SEAL_TAILROOM) } else { (0, 0) };
        let max_frame = self.socket.info().max_frame_size.saturating_sub(headroom + tailroom);
        let frames = self
            .encoder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .encode_message(message, max_frame, headroom, tailroom, backoff)?;
        for frame in frames {
            let mut sealer = self.sealer.lock().await;
            let sealed = sealer.seal(frame)?;
            self.socket.send(sealed).await?;
        }
        Ok(())
    }

    /// Records the close and fails pending calls; returns false if already closed.
    fn mark_closed(&self, reason: &CloseReason) -> bool {
        let closing = self.closing.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let reason = closing.as_ref().unwrap_or(reason);
        let changed = self.state.send_if_modified(|state| match state {
            ConnectionState::Verified => {
                *state = ConnectionState::Closed(reason.clone());
                true
            }
            ConnectionState::Closed(_) => false,
        });
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).close(reason);
        self.close_streams();
        self.activity.settled();
        if changed {
            debug!(peer = %self.remote.device_id, %reason, "connection closed");
        }
        changed
    }

    async fn close(&self, reason: CloseReason) {
        if matches!(*self.state.borrow(), ConnectionState::Closed(_)) {
            return;
        }
        {
            let mut closing = self.closing.lock().unwrap_or_else(|e| e.into_inner());
            if closing.is_some() {
                return;
            }
            *closing = Some(reason.clone());
        }
        // Best effort: tell the peer why, but never wait long for a stuck socket.
        let notice = Envelope::Close { reason: reason.clone() };
        let _ = tokio::time::timeout(Duration::from_secs(1), self.send(&notice, &[])).await;
        self.mark_closed(&reason);
        self.socket.close(reason).await;
    }
}
