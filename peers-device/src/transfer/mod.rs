//! Send and pair by code.
//!
//! A person sends files to someone, or pairs two devices, with a short code such as
//! `7-maple-orbit` ([`TransferCode`]). The number finds a signaling session; the words
//! are the password of a PAKE ([`pake`], SPAKE2) run between the two devices through
//! the signaling server, which confirms each side's device key before anything else
//! moves, so the server cannot put itself in the middle, and a wrong guess burns the
//! session. Then the files move over ordinary authenticated `Connection`s, checked
//! chunk by chunk against the [`Manifest`]'s BLAKE3 hashes, and resume from the last
//! verified chunk ([`progress`]): they start on the signaling server's relay at once
//! and move to a better path (WebRTC direct, then TURN) when it comes up, pausing at a
//! chunk boundary so nothing verified is sent again.
//!
//! The parts without I/O: codes, the PAKE states, the manifest with its validation and
//! path rules, and the sender's and receiver's positions. Around them: [`scan`], which
//! builds a manifest from disk; [`exchange`], which moves a transfer over a
//! `Connection` that is already authenticated ([`exchange::send`], [`expose_receiver`]);
//! [`rendezvous`], which runs the PAKE over a socket and pins the connection to the
//! confirmed device; [`pairing`], which pairs two devices' long-term keys the same
//! way ([`pair`], [`join`]); and [`live`] (sending) with [`receiving`], the whole thing
//! through a signaling server:
//!
//! ```no_run
//! use std::sync::Arc;
//! use peers_device::transfer::{LinkOptions, ReceiveOptions, SendOptions, receive, send};
//!
//! # async fn demo() -> peers_device::Result<()> {
//! let link = LinkOptions::new(vec!["http://127.0.0.1:7800".into()]);
//! let (code, sending) = send(vec!["photos".into()], SendOptions::new(link.clone())).await?;
//! println!("give the receiver {code}");
//! // On the other device, with the code typed in:
//! let ask = Arc::new(|manifest: &peers_device::transfer::Manifest| {
//!     let total = manifest.total_size();
//!     Box::pin(async move { total < 1 << 30 }) as std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
//! });
//! let options = ReceiveOptions { out_dir: "inbox".into(), decide: ask };
//! let receiving = receive(code, link, options).await?;
//! let _status = receiving.status.clone(); // phase, path class, bytes: for a progress bar
//! let received = receiving.finished().await?;
//! sending.finished().await?;
//! # Ok(()) }
//! ```
//!
//! The sans-IO core:
//!
//! ```
//! use peers_device::transfer::{Cursor, Manifest, Reception, Sending};
//!
//! let manifest = Manifest { chunk_size: 1 << 20, entries: vec![] };
//! let reception = Reception::new(manifest.clone(), Cursor::START)?;
//! let mut sending = Sending::new(manifest, reception.resume_point())?;
//! assert!(sending.next_chunk().is_none() && reception.is_complete());
//! # Ok::<(), peers_device::transfer::TransferError>(())
//! ```

pub mod code;
pub mod exchange;
pub mod live;
pub mod manifest;
mod meeting;
pub mod pairing;
pub mod pake;
mod paths;
pub mod progress;
pub mod receiving;
mod reconnect;
mod recovery;
pub mod rendezvous;
pub mod scan;
mod staging;
pub mod status;

pub use code::TransferCode;
pub use exchange::{Incoming, ReceiveOptions, Received, ReceiverHandlers, SendEnd, TransferProgress, expose_receiver};
pub use live::{Canceller, LinkOptions, MAX_REJOINS, SendHandle, SendOptions, send};
pub use manifest::{EntryKind, Manifest, ManifestEntry};
pub use pairing::{PairHandle, PairOptions, Paired, join, pair};
pub use progress::{ChunkRef, Cursor, Reception, Sending};
pub use receiving::{ReceiveHandle, receive};
pub use staging::staged_bytes;
pub use status::{SignalingLink, Stage, Status};

/// Why a code, a PAKE, a manifest or a chunk was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The text is not a transfer code.
    #[error("bad code: {0}")]
    BadCode(String),
    /// The PAKE's confirmation failed: the other side typed a different code, or
    /// someone guessed. The session is burnt.
    #[error("the code did not match on both sides (mistyped, or someone guessed it); start again with a new code")]
    WrongCode,
    /// The peer broke the transfer protocol.
    #[error("transfer protocol: {0}")]
    Protocol(String),
    /// A manifest breaks a bound or a rule.
    #[error("bad manifest: {0}")]
    BadManifest(String),
    /// A name that could leave the target directory, or that cannot be used here.
    #[error("unsafe path {path:?}: {reason}")]
    UnsafePath {
        /// The name (cut to 300 bytes).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A chunk's bytes do not match the manifest (the sender's file changed, or the
    /// bytes were tampered with); nothing of it is written.
    #[error("chunk {chunk} of entry {entry} does not match the manifest")]
    ChunkMismatch {
        /// The entry index.
        entry: usize,
        /// The chunk index within the file.
        chunk: u32,
    },
    /// The receiver said no.
    #[error("declined: {0}")]
    Declined(String),
    /// The target's file system lacks room for the rest of the transfer.
    #[error("not enough disk space: {needed} bytes needed, {available} available")]
    NoSpace {
        /// Bytes still to come.
        needed: u64,
        /// Bytes free.
        available: u64,
    },
    /// A file being sent changed since it was scanned; the receiver would refuse it.
    #[error("{0} changed while it was being sent")]
    SourceChanged(String),
    /// A step with a stated limit did not finish in time (the other device never
    /// came, or stopped answering).
    #[error("{what} did not happen within {after:?}")]
    TimedOut {
        /// The step.
        what: &'static str,
        /// Its limit.
        after: std::time::Duration,
    },
    /// No byte moved for this long while the transfer was under way: the other side
    /// vanished or stopped reading.
    #[error("the other side stopped responding: nothing moved for {0:?}")]
    Stalled(std::time::Duration),
    /// This side cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The signaling connection dropped and was not registered again within the
    /// stated time (`LinkOptions::reconnect_give_up`); the transfer cannot go on
    /// over a new relay.
    #[error("the signaling server is unreachable: not registered again within {after:?} ({last})")]
    SignalingLost {
        /// How long it tried.
        after: std::time::Duration,
        /// The last failure.
        last: String,
    },
    /// Reading or writing local files failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done, and to which path.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}
