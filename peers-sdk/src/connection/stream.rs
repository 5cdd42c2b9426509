//! Streams: large payloads sent piece by piece, with credit-based flow control
//! and progress on both sides.
//!
//! ```text
//! sender                                              receiver
//! StreamOpen{id, name} + meta            ──▶   handler(meta, StreamReader) starts
//!                                        ◀──   StreamAccept{id, window}  (or StreamDone{id, error})
//! StreamData{id} + bytes   (≤ credit)    ──▶   reader.next() yields the bytes
//!                                        ◀──   StreamCredit{id, bytes}  (as the app consumes)
//! StreamEnd{id}                          ──▶   reader.next() yields None
//!                                        ◀──   StreamDone{id, error?}   (the handler's result)
//! StreamReset{id, error}                 ──▶   reader.next() fails   (the sender gave up)
//! ```
//!
//! The receiver grants a window of [`ConnectionConfig::stream_window`] bytes when
//! it accepts the stream and returns credit as its application consumes data, so at most one window
//! per stream is ever buffered; a sender that overruns it breaks the protocol and
//! the connection closes. Waiting for credit is the sender's backpressure.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::debug;

use super::{Connection, ConnectionConfig, Inner};
use crate::error::{Error, Result, decode_msgpack, encode_msgpack};
use crate::rpc::{Envelope, RemoteError, RemoteErrorCode};

/// Largest piece a [`StreamWriter`] puts in one message.
const MAX_PIECE: usize = 256 * 1024;

pub(super) type StreamHandler = Arc<dyn Fn(Bytes, StreamReader) -> HandlerFuture + Send + Sync>;
type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), RemoteError>> + Send>>;

/// How far a stream has got, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamProgress {
    /// Bytes handed to the connection by the sender (or received, on the
    /// receiving side).
    pub transferred: u64,
    /// Bytes the receiving application has consumed (the sender learns this from
    /// returned credit).
    pub consumed: u64,
}

/// What the reader task hands an incoming stream.
#[derive(Debug)]
enum Incoming {
    Data(Bytes),
    End,
    Reset(RemoteError),
}

struct IncomingState {
    tx: mpsc::UnboundedSender<Incoming>,
    received: u64,
    allowed: u64,
}

struct OutgoingState {
    credit: Mutex<u64>,
    credit_changed: Notify,
    done: Mutex<Option<oneshot::Sender<Option<RemoteError>>>>,
    progress: watch::Sender<StreamProgress>,
}

/// Both directions' stream bookkeeping for one connection.
#[derive(Default)]
pub(super) struct StreamTable {
    next_id: u64,
    incoming: HashMap<u64, IncomingState>,
    outgoing: HashMap<u64, Arc<OutgoingState>>,
}

impl Connection {
    /// Registers `handler` for incoming streams named `name`. It receives the
    /// sender's metadata and a [`StreamReader`]; its result is reported back to the
    /// sender's [`StreamWriter::finish`].
    pub fn expose_stream<M, F, Fut>(&self, name: &str, handler: F)
    where
        M: DeserializeOwned + Send + 'static,
        F: Fn(M, StreamReader) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), RemoteError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: StreamHandler = Arc::new(move |meta: Bytes, reader: StreamReader| {
            let handler = handler.clone();
            Box::pin(async move {
                let meta: M = decode_msgpack("stream metadata", &meta)
                    .map_err(|e| RemoteError::new(RemoteErrorCode::BadArguments, e.to_string()))?;
                handler(meta, reader).await
            })
        });
        self.inner.stream_handlers.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), erased);
    }

    /// Opens a stream to the peer's handler for `name`, sending `meta` first.
    pub async fn open_stream<M: Serialize + ?Sized>(&self, name: &str, meta: &M) -> Result<StreamWriter> {
        let inner = &self.inner;
        let meta = encode_msgpack("stream metadata", meta)?;
        let (done_tx, done_rx) = oneshot::channel();
        let state = Arc::new(OutgoingState {
            credit: Mutex::new(0),
            credit_changed: Notify::new(),
            done: Mutex::new(Some(done_tx)),
            progress: watch::Sender::new(StreamProgress::default()),
        });
        let id = {
            let mut table = inner.streams.lock().unwrap_or_else(|e| e.into_inner());
            table.next_id = table.next_id.wrapping_add(1);
            let id = table.next_id;
            table.outgoing.insert(id, state.clone());
            id
        };
        let writer = StreamWriter { inner: self.inner.clone(), id, state, done: Some(done_rx), ended: false };
        inner.send(&Envelope::StreamOpen { id, name: name.to_owned() }, &meta).await?;
        Ok(writer)
    }
}

/// The sending end of a stream. Dropping it before [`finish`](Self::finish)
/// resets the stream, and the receiver's reader fails.
pub struct StreamWriter {
    inner: Arc<Inner>,
    id: u64,
    state: Arc<OutgoingState>,
    done: Option<oneshot::Receiver<Option<RemoteError>>>,
    ended: bool,
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter").field("id", &self.id).field("progress", &self.progress()).finish()
    }
}

impl StreamWriter {
    /// Sends `data`, waiting for the receiver's credit when its window is full.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let grant = self.wait_credit(data.len().min(MAX_PIECE)).await?;
            let (piece, rest) = data.split_at(grant);
            self.inner.send(&Envelope::StreamData { id: self.id }, piece).await?;
            self.state.progress.send_modify(|p| p.transferred += piece.len() as u64);
            data = rest;
        }
        Ok(())
    }

    /// Waits until some credit is available and takes up to `want` bytes of it.
    async fn wait_credit(&self, want: usize) -> Result<usize> {
        loop {
            let notified = self.state.credit_changed.notified();
            {
                let mut credit = self.state.credit.lock().unwrap_or_else(|e| e.into_inner());
                if *credit > 0 {
                    let grant = want.min(usize::try_from(*credit).unwrap_or(usize::MAX));
                    *credit -= grant as u64;
                    return Ok(grant);
                }
            }
            if self.inner.is_closed() {
                return Err(self.inner.closed_error());
            }
            if self.state.done.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
                return Err(Error::Remote(RemoteError::new(RemoteErrorCode::Handler, "receiver ended the stream")));
            }
            notified.await;
        }
    }

    /// Progress so far; `consumed` counts what the receiving application has read.
    pub fn progress(&self) -> StreamProgress {
        *self.state.progress.borrow()
    }

    /// A receiver that sees every progress update.
    pub fn watch_progress(&self) -> watch::Receiver<StreamProgress> {
        self.state.progress.subscribe()
    }

    /// Ends the stream and waits for the receiver's handler to finish; its error,
    /// if any, comes back as [`Error::Remote`].
    pub async fn finish(mut self) -> Result<()> {
        self.ended = true;
        self.inner.send(&Envelope::StreamEnd { id: self.id }, &[]).await?;
        let done = self.done.take().ok_or_else(|| self.inner.closed_error())?;
        let outcome = tokio::select! {
            outcome = done => outcome.map_err(|_| self.inner.closed_error())?,
            reason = self.inner.wait_closed() => return Err(Error::Closed { reason }),
        };
        match outcome {
            None => Ok(()),
            Some(error) => Err(Error::Remote(error)),
        }
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        self.inner.streams.lock().unwrap_or_else(|e| e.into_inner()).outgoing.remove(&self.id);
        self.inner.activity.settled();
        if !self.ended && !self.inner.is_closed() {
            let (inner, id) = (self.inner.clone(), self.id);
            let error = RemoteError::new(RemoteErrorCode::Handler, "sender abandoned the stream");
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { inner.send(&Envelope::StreamReset { id, error }, &[]).await });
            }
        }
    }
}

/// The receiving end of a stream, handed to the handler registered with
/// [`Connection::expose_stream`].
pub struct StreamReader {
    inner: Arc<Inner>,
    id: u64,
    rx: mpsc::UnboundedReceiver<Incoming>,
    unacknowledged: u64,
    progress: StreamProgress,
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader").field("id", &self.id).field("progress", &self.progress).finish()
    }
}

impl StreamReader {
    /// The next piece of data, or `None` at the end of the stream. Fails if the
    /// sender reset the stream or the connection closed.
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        let event = tokio::select! {
            event = self.rx.recv() => event,
            reason = self.inner.wait_closed() => return Err(Error::Closed { reason }),
        };
        match event {
            Some(Incoming::Data(data)) => {
                let len = data.len() as u64;
                self.progress.transferred += len;
                self.progress.consumed += len;
                self.unacknowledged += len;
                if self.unacknowledged >= self.inner.config.stream_window / 2 {
                    let bytes = std::mem::take(&mut self.unacknowledged);
                    self.inner.grant_credit(self.id, bytes);
                    self.inner.send(&Envelope::StreamCredit { id: self.id, bytes }, &[]).await?;
                }
                Ok(Some(data))
            }
            Some(Incoming::End) => Ok(None),
            Some(Incoming::Reset(error)) => Err(Error::Remote(error)),
            None => Err(self.inner.closed_error()),
        }
    }

    /// Bytes received so far.
    pub fn progress(&self) -> StreamProgress {
        self.progress
    }
}

impl Inner {
    fn is_closed(&self) -> bool {
        matches!(*self.state.borrow(), super::ConnectionState::Closed(_))
    }

    fn grant_credit(&self, id: u64, bytes: u64) {
        if let Some(state) = self.streams.lock().unwrap_or_else(|e| e.into_inner()).incoming.get_mut(&id) {
            state.allowed = state.allowed.saturating_add(bytes);
        }
    }

    /// Streams this side opened and has not finished.
    pub(super) fn outgoing_streams(&self) -> usize {
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).outgoing.len()
    }

    /// Wakes every stream writer so it notices the close.
    pub(super) fn close_streams(&self) {
        let mut table = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        for state in table.outgoing.values() {
            state.done.lock().unwrap_or_else(|e| e.into_inner()).take();
            state.credit_changed.notify_waiters();
        }
        table.incoming.clear();
    }
}

/// Dispatches a stream envelope from the reader task; never blocks. An error is a
/// protocol violation that closes the connection.
pub(super) fn dispatch(inner: &Arc<Inner>, envelope: Envelope, body: Bytes) -> Result<()> {
    let mut table = inner.streams.lock().unwrap_or_else(|e| e.into_inner());
    match envelope {
        Envelope::StreamOpen { id, name } => {
            let handler = inner.stream_handlers.read().unwrap_or_else(|e| e.into_inner()).get(&name).cloned();
            let refuse = |error: RemoteError| {
                let inner = inner.clone();
                tokio::spawn(async move { inner.send(&Envelope::StreamDone { id, error: Some(error) }, &[]).await });
            };
            let Some(handler) = handler else {
                refuse(RemoteError::new(RemoteErrorCode::UnknownMethod, format!("no stream handler for {name:?}")));
                return Ok(());
            };
            if table.incoming.len() >= inner.config.max_incoming_streams {
                refuse(RemoteError::new(RemoteErrorCode::Busy, "too many incoming streams"));
                return Ok(());
            }
            if table.incoming.contains_key(&id) {
                return Err(protocol("a stream id that is already open"));
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let window = inner.config.stream_window;
            table.incoming.insert(id, IncomingState { tx, received: 0, allowed: window });
            let accept = inner.clone();
            tokio::spawn(async move { accept.send(&Envelope::StreamAccept { id, window }, &[]).await });
            let reader =
                StreamReader { inner: inner.clone(), id, rx, unacknowledged: 0, progress: StreamProgress::default() };
            tokio::spawn(run_handler(inner.clone(), id, handler(body, reader)));
        }
        Envelope::StreamData { id } => {
            // Data for a stream the receiver already finished is dropped: its
            // handler ended and the sender has been told.
            if let Some(state) = table.incoming.get_mut(&id) {
                state.received = state.received.saturating_add(body.len() as u64);
                if state.received > state.allowed {
                    return Err(protocol("stream data beyond the granted window"));
                }
                let _ = state.tx.send(Incoming::Data(body));
            }
        }
        Envelope::StreamEnd { id } => {
            if let Some(state) = table.incoming.get(&id) {
                let _ = state.tx.send(Incoming::End);
            }
        }
        Envelope::StreamReset { id, error } => {
            if let Some(state) = table.incoming.remove(&id) {
                let _ = state.tx.send(Incoming::Reset(error));
            }
        }
        Envelope::StreamAccept { id, window } => add_credit(&table, id, window, false),
        Envelope::StreamCredit { id, bytes } => add_credit(&table, id, bytes, true),
        Envelope::StreamDone { id, error } => {
            if let Some(state) = table.outgoing.get(&id) {
                if let Some(done) = state.done.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    let _ = done.send(error);
                }
                state.credit_changed.notify_waiters();
            }
        }
        other => return Err(protocol(if matches!(other, Envelope::Ready) { "ready" } else { "a non-stream message" })),
    }
    Ok(())
}

/// Gives a writer more credit; `consumed` says the receiver's application read
/// that much (rather than this being the initial window).
fn add_credit(table: &StreamTable, id: u64, bytes: u64, consumed: bool) {
    if let Some(state) = table.outgoing.get(&id) {
        let mut credit = state.credit.lock().unwrap_or_else(|e| e.into_inner());
        *credit = credit.saturating_add(bytes);
        if consumed {
            state.progress.send_modify(|p| p.consumed = p.consumed.saturating_add(bytes));
        }
        state.credit_changed.notify_waiters();
    }
}

fn protocol(what: &str) -> Error {
    Error::Codec(crate::error::CodecError::Decode { what: "stream", detail: format!("peer sent {what}") })
}

async fn run_handler(inner: Arc<Inner>, id: u64, handler: HandlerFuture) {
    let result = match inner.run_until_closed(handler).await {
        Some(Ok(result)) => result,
        Some(Err(err)) => Err(RemoteError::new(RemoteErrorCode::Internal, format!("stream handler failed: {err}"))),
        None => return,
    };
    inner.streams.lock().unwrap_or_else(|e| e.into_inner()).incoming.remove(&id);
    if let Err(err) = inner.send(&Envelope::StreamDone { id, error: result.err() }, &[]).await {
        debug!(%err, "could not report stream result");
    }
}

impl ConnectionConfig {
    /// Default [`stream_window`](Self::stream_window): 4 MiB.
    pub const DEFAULT_STREAM_WINDOW: u64 = 4 * 1024 * 1024;
}
