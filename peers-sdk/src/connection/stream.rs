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
use crate::codec::{CompressionBackoff, MessageBuf};
use crate::error::{Error, Result, decode_msgpack, encode_msgpack};
use crate::rpc::{Envelope, RemoteError, RemoteErrorCode};

/// Largest piece a [`StreamWriter`] puts in one message, and the most it buffers.
const MAX_PIECE: usize = 256 * 1024;

pub(super) type StreamHandler = Arc<dyn Fn(Bytes, StreamReader) -> HandlerFuture + Send + Sync>;
type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), RemoteError>> + Send>>;

/// How far a stream has got, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamProgress {
    /// Bytes the sender's writes handed to the stream, within the receiver's
    /// credit (or received, on the receiving side).
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
    /// What the writer buffered and the flusher has not taken yet.
    buffer: Mutex<WriteBuffer>,
    /// Wakes the flusher: data was buffered, or the writer finished or left.
    to_flusher: Notify,
    /// Wakes the writer: the flusher took the buffer, sent it, or stopped.
    to_writer: Notify,
}

/// A stream's outgoing bytes between [`StreamWriter::write`] and the flusher
/// task, which hands them to the connection as one `StreamData` message each
/// time it is free: a lone write goes out at once, and writes that come faster
/// than the connection takes them are coalesced into pieces of up to
/// [`MAX_PIECE`] bytes (Nagle's idea, without a timer).
struct WriteBuffer {
    /// `StreamData{id}` with the buffered bytes after it, ready to send.
    message: MessageBuf,
    /// Bytes in `message` after the envelope.
    len: usize,
    /// The flusher is handing a piece to the connection.
    sending: bool,
    phase: WriterPhase,
    /// Why the flusher stopped, for the writer's next call.
    failed: Option<Error>,
}

/// Where the writer is, as the flusher sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriterPhase {
    /// Writing; the flusher sends what is buffered.
    Writing,
    /// `finish` flushed everything and sends the end itself; the flusher stops.
    Finished,
    /// The writer was dropped before `finish`: the flusher resets the stream
    /// (after the piece it may be sending) and stops.
    Abandoned,
    /// The flusher stopped because sending failed.
    Failed,
}

impl WriteBuffer {
    fn new(id: u64) -> Result<WriteBuffer> {
        Ok(WriteBuffer {
            message: Envelope::StreamData { id }.encode(&[])?,
            len: 0,
            sending: false,
            phase: WriterPhase::Writing,
            failed: None,
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Both directions' stream bookkeeping for one connection.
#[derive(Default)]
pub(super) struct StreamTable {
    next_id: u64,
    incoming: HashMap<u64, IncomingState>,
    /// Refusals of incoming streams spawned but not yet handed to the socket.
    refusals_unsent: usize,
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
        let id = {
            let mut table = inner.streams.lock().unwrap_or_else(|e| e.into_inner());
            table.next_id = table.next_id.wrapping_add(1);
            table.next_id
        };
        let state = Arc::new(OutgoingState {
            credit: Mutex::new(0),
            credit_changed: Notify::new(),
            done: Mutex::new(Some(done_tx)),
            progress: watch::Sender::new(StreamProgress::default()),
            buffer: Mutex::new(WriteBuffer::new(id)?),
            to_flusher: Notify::new(),
            to_writer: Notify::new(),
        });
        inner.streams.lock().unwrap_or_else(|e| e.into_inner()).outgoing.insert(id, state.clone());
        let writer = StreamWriter { inner: self.inner.clone(), id, state, done: Some(done_rx), ended: false };
        inner.send(&Envelope::StreamOpen { id, name: name.to_owned() }, &meta).await?;
        tokio::spawn(run_flusher(self.inner.clone(), id, writer.state.clone()));
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
    ///
    /// Returns once `data` is within the receiver's credit and in the stream's
    /// send buffer (at most 256 KiB), from which it goes out at once if the
    /// connection is free, or together with the writes that follow otherwise
    /// (small writes are coalesced into larger messages). A failure to send
    /// surfaces at the next `write`, [`flush`](Self::flush) or
    /// [`finish`](Self::finish).
    pub async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let room = self.wait_buffer(|buffer| MAX_PIECE.saturating_sub(buffer.len)).await?;
            let grant = self.wait_credit(data.len().min(room)).await?;
            let (piece, rest) = data.split_at(grant);
            {
                let mut buffer = lock(&self.state.buffer);
                buffer.message.extend_from_slice(piece);
                buffer.len += piece.len();
            }
            self.state.to_flusher.notify_one();
            self.state.progress.send_modify(|p| p.transferred += piece.len() as u64);
            data = rest;
        }
        Ok(())
    }

    /// Waits until everything written so far was handed to the connection.
    pub async fn flush(&mut self) -> Result<()> {
        self.wait_buffer(|buffer| usize::from(buffer.len == 0 && !buffer.sending)).await.map(drop)
    }

    /// Waits until `ready` gives a non-zero value for the send buffer, or the
    /// flusher stopped (an error).
    async fn wait_buffer(&self, ready: impl Fn(&WriteBuffer) -> usize) -> Result<usize> {
        loop {
            {
                let mut buffer = lock(&self.state.buffer);
                if let Some(err) = buffer.failed.take() {
                    return Err(err);
                }
                // Closed: the flusher may be stuck handing a piece to a transport
                // that no longer drains (a dead peer), so the writer does not wait for it.
                if buffer.phase == WriterPhase::Failed || self.inner.is_closed() {
                    return Err(self.inner.closed_error());
                }
                let value = ready(&buffer);
                if value > 0 {
                    return Ok(value);
                }
            }
            self.state.to_writer.notified().await;
        }
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
        self.flush().await?;
        self.ended = true;
        lock(&self.state.buffer).phase = WriterPhase::Finished;
        self.state.to_flusher.notify_one();
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
    /// Before `finish`: the flusher resets the stream (after the piece it may
    /// be sending) and stops.
    fn drop(&mut self) {
        self.inner.streams.lock().unwrap_or_else(|e| e.into_inner()).outgoing.remove(&self.id);
        self.inner.activity.settled();
        if !self.ended {
            let mut buffer = lock(&self.state.buffer);
            if buffer.phase == WriterPhase::Writing {
                buffer.phase = WriterPhase::Abandoned;
            }
        }
        self.state.to_flusher.notify_one();
    }
}

/// A stream's flusher task: hands what the writer buffered to the connection,
/// one message per turn, until the writer finishes or leaves.
async fn run_flusher(inner: Arc<Inner>, id: u64, state: Arc<OutgoingState>) {
    // A stream's pieces are alike (a file, a media stream): one that did not compress
    // spares the next ones the Brotli sample for a while.
    let mut backoff = CompressionBackoff::default();
    loop {
        let (phase, piece) = {
            let mut buffer = lock(&state.buffer);
            buffer.sending = buffer.len > 0 && buffer.phase == WriterPhase::Writing;
            let piece = match buffer.sending {
                true => match WriteBuffer::new(id) {
                    Ok(fresh) => {
                        buffer.len = 0;
                        Some(std::mem::replace(&mut buffer.message, fresh.message))
                    }
                    Err(err) => {
                        buffer.sending = false;
                        buffer.phase = WriterPhase::Failed;
                        buffer.failed = Some(err);
                        None
                    }
                },
                false => None,
            };
            (buffer.phase, piece)
        };
        // The writer may wait for room, for the flush, or for the failure.
        state.to_writer.notify_one();
        match (phase, piece) {
            (_, Some(message)) => {
                if let Err(err) = inner.send_message_with(message, Some(&mut backoff)).await {
                    let mut buffer = lock(&state.buffer);
                    buffer.sending = false;
                    buffer.phase = WriterPhase::Failed;
                    buffer.failed = Some(err);
                    drop(buffer);
                    state.to_writer.notify_one();
                    return;
                }
            }
            (WriterPhase::Writing, None) => state.to_flusher.notified().await,
            (WriterPhase::Abandoned, None) => {
                if !inner.is_closed() {
                    let error = RemoteError::new(RemoteErrorCode::Handler, "sender abandoned the stream");
                    let _ = inner.send(&Envelope::StreamReset { id, error }, &[]).await;
                }
                return;
            }
            (WriterPhase::Finished | WriterPhase::Failed, None) => return,
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

    /// Wakes every stream writer so it notices the close, whether it waits for
    /// credit or for room in its send buffer.
    pub(super) fn close_streams(&self) {
        let mut table = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        for state in table.outgoing.values() {
            state.done.lock().unwrap_or_else(|e| e.into_inner()).take();
            state.credit_changed.notify_waiters();
            state.to_writer.notify_one();
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
            if table.incoming.contains_key(&id) {
                return Err(protocol("a stream id that is already open"));
            }
            let handler = inner.stream_handlers.read().unwrap_or_else(|e| e.into_inner()).get(&name).cloned();
            // Every stream runs in a handler slot (shared with calls) and counts
            // against `max_incoming_streams`; beyond either it is refused `Busy`.
            let admitted = match handler {
                None => {
                    Err(RemoteError::new(RemoteErrorCode::UnknownMethod, format!("no stream handler for {name:?}")))
                }
                Some(_) if table.incoming.len() >= inner.config.max_incoming_streams => {
                    Err(RemoteError::new(RemoteErrorCode::Busy, "too many incoming streams"))
                }
                Some(handler) => match inner.handler_slots.clone().try_acquire_owned() {
                    Ok(slot) => Ok((handler, slot)),
                    Err(_) => Err(RemoteError::new(RemoteErrorCode::Busy, "no free handler slot for a stream")),
                },
            };
            let (handler, slot) = match admitted {
                Ok(admitted) => admitted,
                Err(error) => return refuse(inner, &mut table, id, error),
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let window = inner.config.stream_window;
            table.incoming.insert(id, IncomingState { tx, received: 0, allowed: window });
            let reader =
                StreamReader { inner: inner.clone(), id, rx, unacknowledged: 0, progress: StreamProgress::default() };
            tokio::spawn(run_handler(inner.clone(), id, window, handler(body, reader), slot));
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

/// Answers a `StreamOpen` with its refusal. At most `max_incoming_streams`
/// refusals wait to be sent at once: a peer that opens streams faster than it
/// reads the answers breaks the protocol (the connection closes) instead of
/// growing a queue of them here.
fn refuse(inner: &Arc<Inner>, table: &mut StreamTable, id: u64, error: RemoteError) -> Result<()> {
    if table.refusals_unsent >= inner.config.max_incoming_streams {
        return Err(protocol("stream opens faster than it reads their refusals"));
    }
    table.refusals_unsent += 1;
    let inner = inner.clone();
    tokio::spawn(async move {
        if let Err(err) = inner.send(&Envelope::StreamDone { id, error: Some(error) }, &[]).await {
            debug!(%err, "could not refuse a stream");
        }
        let mut table = lock(&inner.streams);
        table.refusals_unsent = table.refusals_unsent.saturating_sub(1);
    });
    Ok(())
}

/// Runs an accepted stream's handler in its handler slot: accepts the stream,
/// runs the handler, reports its result.
async fn run_handler(
    inner: Arc<Inner>,
    id: u64,
    window: u64,
    handler: HandlerFuture,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    if let Err(err) = inner.send(&Envelope::StreamAccept { id, window }, &[]).await {
        debug!(%err, "could not accept a stream");
        return;
    }
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
