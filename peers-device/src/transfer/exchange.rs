//! Moving a transfer over an authenticated `Connection`.
//!
//! ```text
//!  sender                                                receiver
//!   call "peers:transfer:offer"  Offer{manifest}  ──▶    validate; ask (names, total size);
//!                                                        check free space; find earlier partial data
//!                       ◀── Answer::Accept{from: Cursor} | Answer::Decline{reason}
//!   stream "peers:transfer:data"  DataHeader{digest, from}
//!     the chunks' bytes from `from`, in order     ──▶    each chunk checked against its hash, then
//!                                                        written to the staging directory, position saved
//!   finish()                                      ◀──    Ok once every chunk is verified, synced and the
//!                                                        entries are moved into place
//! ```
//!
//! The sender may end the data stream early, at a chunk boundary (`finish()` after a
//! whole chunk): a **pause**, to move to a better path. The receiver has then verified
//! and saved everything the stream carried, answers the stream with success, and keeps
//! the offer's staging; a new offer of the same manifest, on any connection, resumes
//! at the next chunk. A stream that ends inside a chunk, or breaks, fails the attempt
//! (the staging stays too, for a later resume).
//!
//! A sender that gives up for good (`peers send --to` cancelled) resets the data
//! stream and calls `"peers:transfer:cancel"` with the manifest's digest: the receiver
//! waits for the stream on that connection to end, then deletes the staging of that
//! digest, so nothing of it stays behind, and reports the transfer as cancelled.
//!
//! The receiver writes into a hidden staging directory in the target directory,
//! `.peers-transfer-<digest>`, with a `resume` file holding the position after the last
//! verified chunk and the last checkpoint's (`staging`). A later offer of the same
//! manifest (same digest) resumes there, so verified bytes are not sent again. Only a complete, verified transfer is moved into
//! place, each top-level entry under a free name (`name (1).ext`) so nothing existing
//! is replaced. A chunk that does not match fails the transfer and leaves the staging
//! directory as it was.

use std::fs::{self, File};
use std::future::Future;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use peers_sdk::Connection;
use peers_sdk::rpc::{RemoteError, RemoteErrorCode};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::TransferError;
use super::manifest::{Hash, Manifest};
use super::progress::{ChunkRef, Cursor, Sending};
use super::scan::{Scanned, read_full};
use super::staging::Staging;
use crate::{ConnectionClass, Error, Result};

/// The offer call's name.
pub const OFFER_METHOD: &str = "peers:transfer:offer";
/// The data stream's name.
pub const DATA_STREAM: &str = "peers:transfer:data";
/// The call a sender makes when it gives up a transfer for good: the receiver
/// discards what it staged of it.
pub const CANCEL_METHOD: &str = "peers:transfer:cancel";
/// How long the receiver of a [`Cancel`] waits for the data stream on that
/// connection to end before it discards the staging.
const CANCEL_WAIT: Duration = Duration::from_secs(10);
/// How long a sender waits for the receiving person to answer an offer.
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// The sender's offer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Offer {
    /// What would be sent.
    pub manifest: Manifest,
}

/// The receiver's answer to an [`Offer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// Send the chunks from `from` on (the start, or where an earlier attempt stopped).
    Accept {
        /// The first chunk the receiver does not have.
        from: Cursor,
    },
    /// Do not send.
    Decline {
        /// Why, for the sending person.
        reason: String,
    },
}

/// The data stream's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataHeader {
    /// The accepted manifest's digest.
    #[serde(with = "serde_bytes")]
    pub digest: Vec<u8>,
    /// The first chunk on the stream.
    pub from: Cursor,
}

/// The sender gives the transfer of this manifest up: the receiver discards its staging.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cancel {
    /// The manifest's digest (32 bytes).
    #[serde(with = "serde_bytes")]
    pub digest: Vec<u8>,
}

/// What the sender of a [`Cancel`] is told.
pub const CANCELLED_BY_SENDER: &str = "cancelled by the sender; the partial data was discarded";

/// How far a transfer has got, for a progress bar; both sides report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferProgress {
    /// Bytes verified (receiver) or handed to the connection (sender), including
    /// bytes a resumed transfer did not need to send again.
    pub bytes_done: u64,
    /// Bytes of file content in the transfer.
    pub bytes_total: u64,
    /// Bytes this attempt skipped because the receiver had them already.
    pub bytes_resumed: u64,
}

/// How a [`send_until`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendEnd {
    /// The receiver verified and stored everything.
    Complete,
    /// Paused at a chunk boundary on request: the receiver verified and saved every
    /// chunk sent; a new offer resumes after them.
    Paused,
}

/// Sends `scanned` over `conn` to a receiver that called [`expose_receiver`], reporting
/// progress in `progress`. Returns when the receiver has verified and stored
/// everything.
pub async fn send(
    conn: &Connection,
    scanned: &Scanned,
    answer_timeout: Duration,
    progress: &watch::Sender<TransferProgress>,
) -> Result<()> {
    let (_keep, never) = watch::channel(false);
    send_until(conn, scanned, answer_timeout, progress, &never).await.map(|_| ())
}

/// [`send`], pausing at the next chunk boundary once `pause` is `true` (checked
/// before each chunk): the stream is finished there and, once the receiver has
/// answered it, [`SendEnd::Paused`] returned.
pub async fn send_until(
    conn: &Connection,
    scanned: &Scanned,
    answer_timeout: Duration,
    progress: &watch::Sender<TransferProgress>,
    pause: &watch::Receiver<bool>,
) -> Result<SendEnd> {
    let offer = Offer { manifest: scanned.manifest.clone() };
    let answer: Answer = conn.emit_with_timeout(OFFER_METHOD, &offer, answer_timeout).await?;
    let from = match answer {
        Answer::Accept { from } => from,
        Answer::Decline { reason } => return Err(TransferError::Declined(reason).into()),
    };
    let mut sending = Sending::new(scanned.manifest.clone(), from)?;
    let resumed = sending.sent_bytes();
    let total = scanned.manifest.total_size();
    progress.send_replace(TransferProgress { bytes_done: resumed, bytes_total: total, bytes_resumed: resumed });
    let header = DataHeader { digest: scanned.manifest.digest().to_vec(), from };
    let mut writer = conn.open_stream(DATA_STREAM, &header).await?;
    // One chunk is read and checked ahead while the one before it goes out, so the
    // disk and the hash overlap the sealing and the socket.
    // Two buffers take turns: the one whose chunk went out last is filled by the next read.
    let mut ahead =
        sending.next_chunk().map(|chunk| read_ahead(scanned, SourceReader::default(), chunk)).transpose()?;
    let (mut done, mut sent, mut free) = (resumed, SendEnd::Complete, None);
    while let Some(task) = ahead.take() {
        let (mut reader, bytes) = task.await.map_err(|e| Error::Worker(e.to_string()))?;
        let bytes = bytes?;
        if *pause.borrow() {
            // The chunk read ahead is not sent: the next offer starts at it.
            sent = SendEnd::Paused;
            break;
        }
        reader.spare = free.take();
        ahead = sending.next_chunk().map(|chunk| read_ahead(scanned, reader, chunk)).transpose()?;
        writer.write(&bytes).await?;
        done += bytes.len() as u64;
        progress.send_modify(|p| p.bytes_done = done);
        free = Some(bytes);
    }
    writer.finish().await?;
    Ok(sent)
}

/// A chunk being read from its source (and checked) on the blocking pool: the reader
/// comes back with the bytes, to read the next chunk of the same file without reopening it.
type ReadAhead = tokio::task::JoinHandle<(SourceReader, std::result::Result<Vec<u8>, TransferError>)>;

/// Starts reading `chunk` of `scanned` with `reader`.
fn read_ahead(scanned: &Scanned, mut reader: SourceReader, chunk: ChunkRef) -> Result<ReadAhead> {
    let source = scanned
        .sources
        .get(chunk.entry)
        .ok_or_else(|| TransferError::Protocol("a chunk of an entry without a source".into()))?
        .clone();
    Ok(tokio::task::spawn_blocking(move || {
        let bytes = reader.read(&source, &chunk);
        (reader, bytes)
    }))
}

/// The sender's open file, kept from one chunk to the next, and a buffer to read into.
#[derive(Default)]
struct SourceReader {
    open: Option<(usize, File)>,
    /// A buffer of an earlier chunk, reused so that a chunk costs no allocation and no
    /// zeroing of a fresh buffer.
    spare: Option<Vec<u8>>,
}

impl SourceReader {
    /// Reads `chunk` from `path` and checks it against the manifest.
    fn read(&mut self, path: &Path, chunk: &ChunkRef) -> std::result::Result<Vec<u8>, TransferError> {
        let io = |e| TransferError::Io { what: format!("read {}", path.display()), source: e };
        if self.open.as_ref().is_none_or(|(entry, _)| *entry != chunk.entry) {
            self.open = Some((chunk.entry, File::open(path).map_err(io)?));
        }
        let Some((_, file)) = self.open.as_mut() else { unreachable!("opened above") };
        file.seek(SeekFrom::Start(chunk.offset)).map_err(io)?;
        let mut bytes = self.spare.take().unwrap_or_default();
        // Zeroes only what the buffer grows by: chunks of one transfer are one size but the last.
        bytes.resize(chunk.len as usize, 0);
        let n = read_full(file, &mut bytes).map_err(io)?;
        bytes.truncate(n);
        chunk.check(&bytes).map_err(|_| TransferError::SourceChanged(path.display().to_string()))?;
        Ok(bytes)
    }
}

/// What the receiving side decides about an offer (ask the person, or accept).
pub type Decide = Arc<dyn Fn(&Manifest) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// How a receiver treats offers.
#[derive(Clone)]
pub struct ReceiveOptions {
    /// Where the entries go; created if missing.
    pub out_dir: PathBuf,
    /// Asked once per offer, after validation and the space check.
    pub decide: Decide,
}

impl std::fmt::Debug for ReceiveOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiveOptions").field("out_dir", &self.out_dir).finish_non_exhaustive()
    }
}

/// What a finished transfer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The top-level entries as stored, relative to the target directory (renamed
    /// where the name was taken).
    pub stored: Vec<String>,
    /// Bytes of file content.
    pub bytes: u64,
}

/// The receiving side's progress and outcome.
#[derive(Debug)]
pub struct Incoming {
    /// Progress, updated per verified chunk.
    pub progress: watch::Receiver<TransferProgress>,
    /// The outcome: `None` until the transfer ends.
    pub outcome: watch::Receiver<StreamOutcome>,
}

impl Incoming {
    /// Waits for the transfer to end.
    pub async fn finished(&mut self) -> std::result::Result<Received, String> {
        match self.outcome.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or_else(|| Err("no outcome".into())),
            Err(_) => Err("the receiver stopped".into()),
        }
    }
}

/// One offer's state on the receiving side.
enum Phase {
    /// No offer accepted yet.
    Waiting,
    /// An offer accepted; the data stream has not started.
    Accepted(Box<Staging>),
    /// The data stream is running, or the transfer ended.
    Taken,
}

/// Registers the transfer handlers on `conn`: offers are validated, decided and
/// answered; the data is checked and stored under `options.out_dir`.
pub fn expose_receiver(conn: &Connection, options: ReceiveOptions) -> Incoming {
    ReceiverHandlers::new(options).expose(conn)
}

/// The outcome of a data stream: `None` until one completes the transfer or fails.
pub type StreamOutcome = Option<std::result::Result<Received, String>>;

/// The receiving side's handlers for a transfer that may use several connections
/// (a better path, a new relay): one progress for all of them, and an outcome per
/// connection besides the last outcome of any.
#[derive(Clone)]
pub struct ReceiverHandlers {
    options: ReceiveOptions,
    progress_tx: Arc<watch::Sender<TransferProgress>>,
    progress: watch::Receiver<TransferProgress>,
    last_tx: Arc<watch::Sender<StreamOutcome>>,
    last: watch::Receiver<StreamOutcome>,
    carrier_tx: Arc<watch::Sender<Option<ConnectionClass>>>,
}

impl std::fmt::Debug for ReceiverHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverHandlers").field("options", &self.options).finish_non_exhaustive()
    }
}

impl ReceiverHandlers {
    /// Handlers storing under `options.out_dir`, not yet on any connection.
    pub fn new(options: ReceiveOptions) -> Self {
        let (progress_tx, progress) = watch::channel(TransferProgress::default());
        let (last_tx, last) = watch::channel(None);
        let carrier_tx = Arc::new(watch::channel(None).0);
        ReceiverHandlers {
            options,
            progress_tx: Arc::new(progress_tx),
            progress,
            last_tx: Arc::new(last_tx),
            last,
            carrier_tx,
        }
    }

    /// The class of the connection the last data stream opened on: the path the bytes
    /// take now.
    pub fn carrier(&self) -> watch::Receiver<Option<ConnectionClass>> {
        self.carrier_tx.subscribe()
    }

    /// Progress over every connection.
    pub fn progress(&self) -> watch::Receiver<TransferProgress> {
        self.progress.clone()
    }

    /// The outcome of the last data stream, on any connection, that completed the
    /// transfer or failed (a later one replaces it: a failure on a connection that
    /// broke may be followed by success on another).
    pub fn last_outcome(&self) -> watch::Receiver<StreamOutcome> {
        self.last.clone()
    }

    /// Registers the handlers on `conn`. Its outcome is set when a data stream on it
    /// completes the transfer or fails; a paused stream sets none.
    pub fn expose(&self, conn: &Connection) -> Incoming {
        let (outcome_tx, outcome) = watch::channel(None);
        let phase = Arc::new(Mutex::new(Phase::Waiting));
        let (offer_phase, cancel_phase) = (phase.clone(), phase.clone());
        // Whether a data stream of this connection is being received.
        let (running, running_rx) = watch::channel(false);
        let running = Arc::new(running);
        let (options, offer_progress) = (self.options.clone(), self.progress_tx.clone());
        conn.expose_rpc(OFFER_METHOD, move |offer: Offer| {
            let (phase, options, progress) = (offer_phase.clone(), options.clone(), offer_progress.clone());
            async move {
                let (answer, staging) = answer_offer(offer.manifest, &options).await.map_err(RemoteError::handler)?;
                if let Some(staging) = staging {
                    let done = staging.reception.verified_bytes();
                    progress.send_replace(TransferProgress {
                        bytes_done: done,
                        bytes_total: staging.reception.manifest().total_size(),
                        bytes_resumed: done,
                    });
                    *phase.lock().unwrap_or_else(|e| e.into_inner()) = Phase::Accepted(Box::new(staging));
                }
                Ok(answer)
            }
        });
        let (outcome_tx, progress_tx, last_tx) = (Arc::new(outcome_tx), self.progress_tx.clone(), self.last_tx.clone());
        let (cancel_outcome, cancel_last) = (outcome_tx.clone(), last_tx.clone());
        let (carrier, class) = (self.carrier_tx.clone(), ConnectionClass::of(conn.socket_info(), conn.path().as_ref()));
        conn.expose_stream(DATA_STREAM, move |header: DataHeader, mut reader| {
            let (phase, progress, outcome, last) =
                (phase.clone(), progress_tx.clone(), outcome_tx.clone(), last_tx.clone());
            let (carrier, running) = (carrier.clone(), running.clone());
            async move {
                let taken = std::mem::replace(&mut *phase.lock().unwrap_or_else(|e| e.into_inner()), Phase::Taken);
                let Phase::Accepted(staging) = taken else {
                    return Err(RemoteError::new(RemoteErrorCode::BadArguments, "no accepted offer for this data"));
                };
                running.send_replace(true);
                carrier.send_replace(Some(class));
                // Its own task: closing the connection cancels this handler, but a chunk being
                // written is finished and the outcome reported (the reader then fails at once).
                let receiving = tokio::spawn(async move {
                    let result = receive_data(*staging, &header, &mut reader, &progress).await;
                    let ended = match &result {
                        Ok(Ended::Paused) => None,
                        Ok(Ended::Complete(received)) => Some(Ok(received.clone())),
                        Err(err) => Some(Err(err.clone())),
                    };
                    if ended.is_some() {
                        outcome.send_replace(ended.clone());
                        last.send_replace(ended);
                    }
                    result
                });
                let result = receiving.await;
                running.send_replace(false);
                match result {
                    Ok(result) => result.map(|_| ()).map_err(RemoteError::handler),
                    Err(e) => Err(RemoteError::new(RemoteErrorCode::Internal, e.to_string())),
                }
            }
        });
        let out_dir = self.options.out_dir.clone();
        conn.expose_rpc(CANCEL_METHOD, move |cancel: Cancel| {
            let (phase, out_dir, mut running) = (cancel_phase.clone(), out_dir.clone(), running_rx.clone());
            let (outcome, last) = (cancel_outcome.clone(), cancel_last.clone());
            async move {
                let digest: Hash =
                    cancel.digest.as_slice().try_into().map_err(|_| {
                        RemoteError::new(RemoteErrorCode::BadArguments, "a manifest digest has 32 bytes")
                    })?;
                // The sender reset the stream before calling: once it ended, nothing writes
                // into the staging any more.
                let _ = tokio::time::timeout(CANCEL_WAIT, running.wait_for(|running| !running)).await;
                *phase.lock().unwrap_or_else(|e| e.into_inner()) = Phase::Waiting;
                let dir = out_dir.join(Staging::dir_name(&digest));
                let removed = tokio::task::spawn_blocking(move || match fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                    other => other.map(|()| true),
                })
                .await
                .map_err(|e| RemoteError::new(RemoteErrorCode::Internal, e.to_string()))?
                .map_err(|e| RemoteError::handler(format!("cannot discard the partial data: {e}")))?;
                if removed {
                    let ended = Some(Err(CANCELLED_BY_SENDER.to_owned()));
                    outcome.send_replace(ended.clone());
                    last.send_replace(ended);
                }
                Ok(removed)
            }
        });
        Incoming { progress: self.progress.clone(), outcome }
    }
}

/// How a data stream ended on the receiving side.
enum Ended {
    /// Every chunk verified and the entries in place.
    Complete(Received),
    /// The sender paused at a chunk boundary; the staging keeps what arrived.
    Paused,
}

/// Validates and decides an offer; on acceptance, prepares its staging directory.
async fn answer_offer(manifest: Manifest, options: &ReceiveOptions) -> Result<(Answer, Option<Staging>)> {
    manifest.validate()?;
    if !(options.decide)(&manifest).await {
        return Ok((Answer::Decline { reason: "the receiver declined".into() }, None));
    }
    let out_dir = options.out_dir.clone();
    let staging = tokio::task::spawn_blocking(move || Staging::open(&out_dir, manifest))
        .await
        .map_err(|e| Error::Worker(e.to_string()))??;
    Ok((Answer::Accept { from: staging.reception.resume_point() }, Some(staging)))
}

/// Reads the data stream into the staging directory, then moves the entries into
/// place; a stream that ends at a chunk boundary before the last chunk is a pause.
///
/// The chunk being received and the one before it, being checked and written on the
/// blocking pool, overlap: the network and the disk work at once. The received pieces
/// are kept as they came (no copy into one buffer), hashed in order, and written only
/// once the whole chunk matched its hash. Every return waits for the write in flight,
/// so nothing writes into the staging after the stream's outcome is known.
async fn receive_data(
    staging: Staging,
    header: &DataHeader,
    reader: &mut peers_sdk::StreamReader,
    progress: &Arc<watch::Sender<TransferProgress>>,
) -> std::result::Result<Ended, String> {
    let (manifest, from) = (staging.reception.manifest(), staging.reception.resume_point());
    if header.digest != manifest.digest() || header.from != from {
        return Err("the data does not start where the offer was accepted".into());
    }
    let mut order = Sending::new(manifest.clone(), from).map_err(|e| e.to_string())?;
    let mut writing = Writing::Idle(staging);
    let mut carry = None;
    // Some(true): every chunk arrived; Some(false): the sender paused.
    let read = loop {
        let Some(expected) = order.next_chunk() else { break Ok(true) };
        match next_chunk(reader, &mut carry, &expected).await {
            Ok(Some(pieces)) => {
                let mut staging = writing.settle(progress).await?;
                writing = Writing::Busy(tokio::task::spawn_blocking(move || {
                    staging.store(expected.at, &pieces).map(|()| staging)
                }));
            }
            Ok(None) => break Ok(false),
            Err(err) => break Err(err),
        }
    };
    let staging = writing.settle(progress).await?;
    if !read? {
        let paused = tokio::task::spawn_blocking(move || staging.pause()).await;
        return paused.map_err(|e| e.to_string())?.map(|()| Ended::Paused);
    }
    if carry.is_some() || reader.next().await.map_err(|e| e.to_string())?.is_some() {
        return Err("bytes after the last chunk".into());
    }
    tokio::task::spawn_blocking(move || staging.finish())
        .await
        .map_err(|e| e.to_string())?
        .map(Ended::Complete)
        .map_err(|e| e.to_string())
}

/// The receiver's staging, idle or writing one chunk on the blocking pool.
enum Writing {
    Idle(Staging),
    Busy(tokio::task::JoinHandle<std::result::Result<Staging, TransferError>>),
}

impl Writing {
    /// Waits for the chunk being written (reporting the progress), and gives the staging back.
    async fn settle(self, progress: &watch::Sender<TransferProgress>) -> std::result::Result<Staging, String> {
        let staging = match self {
            Writing::Idle(staging) => staging,
            Writing::Busy(task) => task.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?,
        };
        progress.send_modify(|p| p.bytes_done = staging.reception.verified_bytes());
        Ok(staging)
    }
}

/// The pieces of the stream that make up `chunk` (the last one cut at its end, the rest
/// kept in `carry` for the next chunk): at most one chunk and one piece held. `None`
/// when the stream ends before its first byte (a pause at a chunk boundary).
async fn next_chunk(
    reader: &mut peers_sdk::StreamReader,
    carry: &mut Option<Bytes>,
    chunk: &ChunkRef,
) -> std::result::Result<Option<Vec<Bytes>>, String> {
    let (mut pieces, mut have) = (Vec::new(), 0u64);
    while have < chunk.len {
        let mut piece = match carry.take() {
            Some(piece) => piece,
            None => match reader.next().await.map_err(|e| e.to_string())? {
                Some(piece) => piece,
                None if have == 0 => return Ok(None),
                None => return Err(format!("the stream ended inside chunk {:?}", chunk.at)),
            },
        };
        let need = usize::try_from(chunk.len - have).unwrap_or(usize::MAX);
        if piece.len() > need {
            *carry = Some(piece.split_off(need));
        }
        have += piece.len() as u64;
        if !piece.is_empty() {
            pieces.push(piece);
        }
    }
    Ok(Some(pieces))
}
