//! Files between two running daemons that already trust each other (`peers send --to
//! DEVICE PATH...`): no code and no PAKE, over the connection the manager has to the
//! device (a local socket, WebRTC or the server's relay, whichever it holds).
//!
//! The sending daemon scans the paths the command names and runs the transfer of
//! `docs/protocol.md` §9.4 over that connection (offer, checked data stream, resume
//! after the last verified chunk when the connection breaks and the manager has
//! another). When the manager switches to a better connection mid-way (the relay, then
//! WebRTC), the stream ends at the next chunk boundary and goes on over the new one
//! from there, as a transfer by code does; nothing verified is sent again. The receiving daemon accepts every offer of a device it trusts into its
//! inbox directory (`peers run --inbox`, default `<data dir>/inbox`), as one person's
//! own devices do with each other: nothing is replaced there, names that are taken get
//! " (1)", and a sender that is no longer trusted cannot connect at all. The command
//! follows the progress by asking the daemon (`send_status`) until the transfer ends,
//! and cancels it (`send_cancel`, Ctrl-C): the stream is reset and the receiving daemon
//! told to discard what it staged.
//!
//! Bounds: one transfer at a time per daemon (the next waits its turn), at most
//! [`MAX_SENDS`] known at once (finished ones are forgotten once read, or when room is
//! needed), at most [`MAX_RELAY_HOPS`] new connections per transfer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peers_sdk::{Connection, ConnectionClass, ConnectionState, DeviceId};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::manager::ConnectionManager;
use crate::transfer::TransferError;
use crate::transfer::exchange::{self, CANCEL_METHOD, Cancel, Decide, ReceiveOptions, SendEnd, TransferProgress};
use crate::transfer::live::MAX_RELAY_HOPS;
use crate::transfer::manifest::DEFAULT_CHUNK_SIZE;
use crate::transfer::scan::scan;

/// Transfers a daemon keeps track of at once (running, waiting or finished and unread).
pub const MAX_SENDS: usize = 16;
/// How long the sender waits for the receiving daemon's answer to an offer (it accepts
/// at once).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a cancelled transfer waits for the receiving daemon to discard its
/// partial data (it first lets the reset data stream end, at most 10 s).
const DISCARD_WAIT: Duration = Duration::from_secs(15);
/// How long a transfer waits for a connection to the device (at its start, and after
/// one broke).
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Where a transfer to another daemon stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendState {
    /// Bytes verified by the receiver, in all, and not sent again after a break.
    pub bytes_done: u64,
    /// Bytes in all.
    pub bytes_total: u64,
    /// Bytes the receiver had from an earlier attempt.
    pub bytes_resumed: u64,
    /// The class of the connection in use.
    pub path: Option<ConnectionClass>,
    /// `None` while it runs; then `Ok` (everything verified and stored) or why it failed.
    pub outcome: Option<std::result::Result<(), String>>,
}

impl SendState {
    fn progress(&mut self, progress: TransferProgress) {
        self.bytes_done = progress.bytes_done;
        self.bytes_total = progress.bytes_total;
        self.bytes_resumed = progress.bytes_resumed;
    }
}

/// A transfer a daemon knows: where it stands, and its cancel switch.
#[derive(Debug)]
struct Known {
    state: watch::Receiver<SendState>,
    cancel: watch::Sender<bool>,
}

/// The transfers a daemon runs for `peers send --to`.
#[derive(Debug, Default)]
pub(super) struct Sends {
    next: Mutex<u64>,
    known: Mutex<BTreeMap<u64, Known>>,
    /// One transfer at a time: two offers on one connection would take each other's place.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Sends {
    /// Scans `paths` and starts sending them to `device` over `manager`'s connection
    /// to it; returns the transfer's id and its size.
    pub(super) async fn start(
        &self,
        manager: &ConnectionManager,
        device: DeviceId,
        paths: Vec<PathBuf>,
    ) -> Result<(u64, u64)> {
        if paths.iter().any(|p| !p.is_absolute()) {
            return Err(Error::Config { field: "paths", reason: "the daemon takes absolute paths".into() });
        }
        let scanned = tokio::task::spawn_blocking(move || scan(&paths, DEFAULT_CHUNK_SIZE))
            .await
            .map_err(|e| Error::Worker(e.to_string()))??;
        let total = scanned.manifest.total_size();
        let (state, watching) = watch::channel(SendState { bytes_total: total, ..SendState::default() });
        let (cancel_tx, mut cancel) = watch::channel(false);
        let id = {
            let mut known = lock(&self.known);
            if known.len() >= MAX_SENDS {
                let finished = known.iter().find(|(_, k)| k.state.borrow().outcome.is_some()).map(|(id, _)| *id);
                match finished {
                    Some(id) => known.remove(&id),
                    None => return Err(Error::Daemon(format!("{MAX_SENDS} transfers are under way or waiting"))),
                };
            }
            let mut next = lock(&self.next);
            *next += 1;
            known.insert(*next, Known { state: watching, cancel: cancel_tx });
            *next
        };
        let (manager, turn) = (manager.clone(), self.turn.clone());
        tokio::spawn(async move {
            let result = tokio::select! {
                result = async {
                    let _turn = turn.lock().await;
                    send_over(&manager, device, &scanned, &state).await
                } => result,
                () = async { drop(cancel.wait_for(|cancelled| *cancelled).await) } => {
                    // The stream was reset when `send_over` was dropped; the receiver
                    // discards what it staged.
                    discard_on(&manager, device, &scanned).await;
                    Err(TransferError::Cancelled.into())
                }
            };
            match &result {
                Ok(()) => info!(%device, bytes = total, "files sent"),
                Err(err) => warn!(%device, %err, "sending files failed"),
            }
            state.send_modify(|s| s.outcome = Some(result.map_err(|e| e.to_string())));
        });
        Ok((id, total))
    }

    /// Cancels transfer `id` (running or waiting its turn); `None` when there is no
    /// such transfer. The command follows it to its end as before.
    pub(super) fn cancel(&self, id: u64) -> Option<()> {
        lock(&self.known).get(&id)?.cancel.send_replace(true);
        Some(())
    }

    /// Where transfer `id` stands; a finished one is forgotten once read.
    pub(super) fn state(&self, id: u64) -> Option<SendState> {
        let mut known = lock(&self.known);
        let state = known.get(&id)?.state.borrow().clone();
        if state.outcome.is_some() {
            known.remove(&id);
        }
        Some(state)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends over the connection to `device`; pauses at a chunk boundary and goes on over
/// the manager's new connection when it switches to a better one, and over the next one
/// when it breaks (the receiver answers each new offer from its last verified chunk).
async fn send_over(
    manager: &ConnectionManager,
    device: DeviceId,
    scanned: &crate::transfer::scan::Scanned,
    state: &watch::Sender<SendState>,
) -> Result<()> {
    let mut hops = 0;
    let mut conn = connection_within(manager, device, CONNECT_WAIT).await?;
    loop {
        state.send_modify(|s| s.path = Some(ConnectionClass::of(conn.socket_info(), conn.path().as_ref())));
        let (progress_tx, mut progress) = watch::channel(TransferProgress::default());
        let (pause_tx, pause) = watch::channel(false);
        let mut better = None;
        let follow = async {
            while progress.changed().await.is_ok() {
                let now = *progress.borrow_and_update();
                state.send_modify(|s| s.progress(now));
            }
            std::future::pending::<()>().await
        };
        let result = tokio::select! {
            result = async {
                let send = exchange::send_until(&conn, scanned, ANSWER_TIMEOUT, &progress_tx, &pause);
                tokio::pin!(send);
                tokio::select! {
                    sent = &mut send => sent,
                    Some(next) = manager.active_change(&device, Some(&conn)) => {
                        pause_tx.send_replace(true);
                        better = Some(next);
                        send.await
                    }
                }
            } => result,
            () = follow => unreachable!("follow never ends"),
        };
        let last = *progress_tx.borrow();
        state.send_modify(|s| s.progress(last));
        match result {
            Ok(SendEnd::Complete) => return Ok(()),
            Ok(SendEnd::Paused) => {
                conn = match better {
                    Some(better) => better,
                    None => connection_within(manager, device, CONNECT_WAIT).await?,
                };
                info!(%device, done = last.bytes_done, "going on over a better path");
            }
            // An answer of the receiver (refused, a bad chunk, no room): no other path changes it.
            Err(err @ Error::Transfer(_)) => return Err(err),
            Err(err) if hops < MAX_RELAY_HOPS => {
                hops += 1;
                info!(%device, %err, hop = hops, "the connection broke; going on over the next one");
                conn = connection_within(manager, device, CONNECT_WAIT).await?;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Tells `device`'s daemon that the transfer of `scanned` is given up: it discards
/// the partial data (after the reset data stream ended there). Best effort: without a
/// connection, the staging stays hidden and a later send of the same files resumes it.
async fn discard_on(manager: &ConnectionManager, device: DeviceId, scanned: &crate::transfer::scan::Scanned) {
    let Some(conn) = manager.connection(&device) else { return };
    let cancel = Cancel { digest: scanned.manifest.digest().to_vec() };
    match conn.emit_with_timeout::<_, bool>(CANCEL_METHOD, &cancel, DISCARD_WAIT).await {
        Ok(discarded) => info!(%device, discarded, "transfer cancelled; the receiver discarded its partial data"),
        Err(err) => {
            warn!(%device, %err, "transfer cancelled; the receiver could not be told to discard its partial data")
        }
    }
}

/// The manager's connection to `device`, waiting up to `wait` for one.
async fn connection_within(manager: &ConnectionManager, device: DeviceId, wait: Duration) -> Result<Connection> {
    let mut events = manager.events();
    let found = tokio::time::timeout(wait, async {
        loop {
            if let Some(conn) = manager.connection(&device).filter(|c| c.state() == ConnectionState::Verified) {
                return conn;
            }
            // Any event (a link up, a switch) is a reason to look again.
            if let Err(RecvError::Closed) = events.recv().await {
                std::future::pending::<()>().await;
            }
        }
    })
    .await;
    found.map_err(|_| Error::NotConnected(device))
}

/// Accepts every offer from the daemon's (trusted) devices into `inbox`, on every
/// connection.
pub(super) fn accept_into(manager: &ConnectionManager, inbox: PathBuf) {
    let decide: Decide = Arc::new(|_| Box::pin(std::future::ready(true)));
    manager.on_connection(move |conn, device| {
        let options = ReceiveOptions { out_dir: inbox.clone(), decide: decide.clone() };
        let mut incoming = exchange::expose_receiver(conn, options);
        tokio::spawn(async move {
            while incoming.outcome.changed().await.is_ok() {
                match incoming.outcome.borrow_and_update().clone() {
                    Some(Ok(received)) => {
                        info!(%device, stored = ?received.stored, bytes = received.bytes, "files received")
                    }
                    Some(Err(err)) => warn!(%device, %err, "receiving files failed"),
                    None => {}
                }
            }
        });
    });
}
