//! Sending and receiving by code through a signaling server: [`send`] and [`receive`].
//!
//! ```text
//!  sender                                  server                       receiver
//!   fresh device key, register ──────────▶        ◀────────── fresh device key, register
//!   session-create kind "pake" ──────────▶  slot 7
//!   prints 7-maple-orbit                           (the person reads the code out)
//!                                                  ◀──────── session-join "7"
//!   ◀── "session" joined, peer = receiver
//!   relay-open receiver ─────────────────▶ relay  ◀────────── relay-open sender
//!   PAKE + Confirm (rendezvous) ◀════════ relay frames ═══════▶ PAKE + Confirm
//!   Connection::connect ◀════════════════ relay frames ═══════▶ Connection::accept
//!   offer, data stream (exchange) ◀══════════════════════════▶ decide, verify, store
//!   session-close (always: the code is used up, or burnt after a wrong code)
//! ```
//!
//! Limits (each a field of [`LinkOptions`] or [`SendOptions`]): the code lives
//! [`SendOptions::code_ttl`] (10 min) and the sender gives up when no one joined by
//! then; the relay must open within 30 s of the join and the PAKE finish within 30 s;
//! the receiving person has [`SendOptions::answer_timeout`] (10 min) to answer; once
//! bytes move, either side fails with [`TransferError::Stalled`] when nothing moves
//! for [`LinkOptions::stall_timeout`] (60 s). A receiver whose process dies is seen
//! sooner: the server closes the relay when its signaling connection drops.
//!
//! A relay that ends under the transfer (the server caps each relay's bytes and
//! lifetime, 256 MiB and 10 minutes by default) is replaced: both sides open a new one,
//! connect again pinned to the same confirmed device, and the transfer resumes from
//! the receiver's last verified chunk, at most [`MAX_RELAY_HOPS`] times.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peers_sdk::socket::ClosedBy;
use peers_sdk::{CloseCode, CloseReason, Connection, DeviceId, DeviceInfo, DeviceKeys};
use peers_signaling::sessions::{SessionKind, SessionState};
use peers_signaling::{ClientEvent, ClientOptions, CreatedSession, RelaySocket, SignalingClient};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use super::code::DEFAULT_WORDS;
use super::exchange::{self, DEFAULT_ANSWER_TIMEOUT, Incoming, ReceiveOptions, Received, TransferProgress};
use super::manifest::{DEFAULT_CHUNK_SIZE, Hash};
use super::pake::Role;
use super::rendezvous::{authenticate, pinned_config};
use super::scan::{Scanned, scan};
use super::status::{Stage, Status, follow, set_connected, set_stage};
use super::{TransferCode, TransferError};
use crate::{Error, Result};

/// Most times one transfer moves to a new relay after its relay ended (each relay
/// carries at most 256 MiB and lives at most 10 minutes by the server's defaults).
pub const MAX_RELAY_HOPS: u32 = 64;

/// How long the side that answered last (a receiver that stored everything, a joiner
/// that has the groups) waits for the other to close: its answer may still be on the way.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The user id the ephemeral device keys of a transfer claim.
const EPHEMERAL_USER: &str = "peers-transfer";

/// How both sides reach each other.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LinkOptions {
    /// Signaling server URLs (one deployment), tried in order until one answers.
    pub signaling: Vec<String>,
    /// The signaling client's settings.
    pub client: ClientOptions,
    /// How long to wait for the other device to open the relay. Default: 30 s.
    pub relay_wait: Duration,
    /// The PAKE must finish within this time. Default: 30 s.
    pub pake_timeout: Duration,
    /// Once bytes move, fail when none moves for this long. Default: 60 s.
    pub stall_timeout: Duration,
}

impl LinkOptions {
    /// Defaults for the server at `signaling`.
    pub fn new(signaling: Vec<String>) -> Self {
        LinkOptions {
            signaling,
            client: ClientOptions::default(),
            relay_wait: Duration::from_secs(30),
            pake_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(60),
        }
    }
}

/// How to send.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SendOptions {
    /// How to reach the receiver.
    pub link: LinkOptions,
    /// Words in the code (2 to 4; 2 gives 16 bits). Default: 2.
    pub words: usize,
    /// How long the code stays valid (the signaling server caps it, 1 h by default).
    /// Default: 10 min.
    pub code_ttl: Duration,
    /// Chunk size of the manifest. Default: 1 MiB.
    pub chunk_size: u32,
    /// How long the receiving person may take to accept. Default: 10 min.
    pub answer_timeout: Duration,
}

impl SendOptions {
    /// Defaults, reaching the receiver through `link`.
    pub fn new(link: LinkOptions) -> Self {
        SendOptions {
            link,
            words: DEFAULT_WORDS,
            code_ttl: Duration::from_secs(600),
            chunk_size: DEFAULT_CHUNK_SIZE,
            answer_timeout: DEFAULT_ANSWER_TIMEOUT,
        }
    }
}

/// A running send. Dropping it does not stop the transfer; [`cancel`](Self::cancel) does.
#[derive(Debug)]
pub struct SendHandle {
    /// The transfer's phase, path and bytes.
    pub status: watch::Receiver<Status>,
    /// Paths left out because they are symbolic links or special files.
    pub skipped: Vec<PathBuf>,
    cancel: Arc<Notify>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl SendHandle {
    /// Stops the transfer: the session is closed and the receiver sees the
    /// connection close; [`finished`](Self::finished) returns [`TransferError::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.notify_one();
    }

    /// Waits until the receiver has verified and stored everything, or the transfer failed.
    pub async fn finished(self) -> Result<()> {
        self.task.await.map_err(|e| Error::Worker(e.to_string()))?
    }
}

/// A running receive. Dropping it does not stop the transfer; [`cancel`](Self::cancel) does.
#[derive(Debug)]
pub struct ReceiveHandle {
    /// The transfer's phase, path and bytes.
    pub status: watch::Receiver<Status>,
    cancel: Arc<Notify>,
    task: tokio::task::JoinHandle<Result<Received>>,
}

impl ReceiveHandle {
    /// Stops the transfer; [`finished`](Self::finished) returns [`TransferError::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.notify_one();
    }

    /// Waits until everything is verified and stored (or the transfer failed).
    pub async fn finished(self) -> Result<Received> {
        self.task.await.map_err(|e| Error::Worker(e.to_string()))?
    }
}

/// A fresh device identity for one transfer.
pub(super) fn ephemeral() -> Result<(Arc<DeviceKeys>, DeviceInfo)> {
    let keys = Arc::new(DeviceKeys::generate(EPHEMERAL_USER)?);
    let info = keys.info(vec![])?;
    Ok((keys, info))
}

/// Registers `keys` with the first server of `link` that answers.
pub(super) async fn register(link: &LinkOptions, keys: &DeviceKeys) -> Result<SignalingClient> {
    let mut last = None;
    for url in &link.signaling {
        match SignalingClient::connect(url, keys, link.client.clone()).await {
            Ok(client) => return Ok(client),
            Err(err) => {
                debug!(%url, %err, "signaling server did not answer");
                last = Some(err);
            }
        }
    }
    Err(last.map_or_else(|| Error::Config { field: "signaling", reason: "no server URL given".into() }, Error::from))
}

/// A code's session, created: the client registered for it, its events, the session
/// and the code to show.
pub(super) struct CodeSession {
    pub(super) client: SignalingClient,
    pub(super) events: tokio::sync::mpsc::Receiver<ClientEvent>,
    pub(super) created: CreatedSession,
    pub(super) code: TransferCode,
}

/// Registers `keys` with the signaling server of `link`, creates a `"pake"` session
/// that lives `ttl` and makes the code of `words` words for its number.
pub(super) async fn open_code(
    link: &LinkOptions,
    keys: &DeviceKeys,
    words: usize,
    ttl: Duration,
) -> Result<CodeSession> {
    let client = register(link, keys).await?;
    let events = client.events().ok_or_else(|| Error::Worker("signaling events already taken".into()))?;
    let created = client.create_session_of(SessionKind::Pake, Some(ttl)).await?;
    let slot = created.code.parse::<u32>().map_err(|_| {
        TransferError::Protocol(format!("the server answered a pake session with code {:?}", created.code))
    })?;
    let code = TransferCode::generate(slot, words)?;
    Ok(CodeSession { client, events, created, code })
}

/// Opens a relay to `device` and runs the PAKE of `code` on it: the relay and the
/// device the PAKE confirmed.
pub(super) async fn meet(
    client: &SignalingClient,
    device: &DeviceId,
    code: &TransferCode,
    role: Role,
    own: &DeviceInfo,
    link: &LinkOptions,
) -> Result<(RelaySocket, DeviceInfo)> {
    let relay = client.open_relay(device, link.relay_wait).await?;
    let peer = authenticate_on(&relay, code, role, own, link.pake_timeout).await?;
    Ok((relay, peer))
}

/// The relays one transfer runs over: the one the PAKE ran on, then a new one to the
/// same device each time the last ended mid-way, at most [`MAX_RELAY_HOPS`] times.
struct Relays<'a> {
    client: &'a SignalingClient,
    device: DeviceId,
    wait: Duration,
    first: Option<RelaySocket>,
    hops: u32,
}

impl<'a> Relays<'a> {
    fn new(client: &'a SignalingClient, device: DeviceId, wait: Duration, first: RelaySocket) -> Self {
        Relays { client, device, wait, first: Some(first), hops: 0 }
    }

    /// The relay for the next connection.
    async fn next(&mut self) -> Result<RelaySocket> {
        match self.first.take() {
            Some(relay) => Ok(relay),
            None => Ok(self.client.open_relay(&self.device, self.wait).await?),
        }
    }

    /// Whether a connection that failed after `moved` bytes goes on over a new relay:
    /// only when bytes moved, its relay ended under it (not the peer closing on
    /// purpose), and hops are left; counts the hop.
    async fn hop(&mut self, moved: bool, conn: &Connection) -> bool {
        if !moved || self.hops >= MAX_RELAY_HOPS || !relay_ended(conn).await {
            return false;
        }
        self.hops += 1;
        true
    }
}

/// Scans `paths`, registers with the signaling server, creates the code's session and
/// returns the code to give the receiver; the rest runs in the background (see the
/// module documentation).
pub async fn send(paths: Vec<PathBuf>, options: SendOptions) -> Result<(TransferCode, SendHandle)> {
    let chunk_size = options.chunk_size;
    let scanned = tokio::task::spawn_blocking(move || scan(&paths, chunk_size))
        .await
        .map_err(|e| Error::Worker(e.to_string()))??;
    let (keys, info) = ephemeral()?;
    let CodeSession { client, events, created, code } =
        open_code(&options.link, &keys, options.words, options.code_ttl).await?;
    let (status_tx, status) = watch::channel(Status::start(Stage::WaitingForPeer));
    let cancel = Arc::new(Notify::new());
    let skipped = scanned.skipped.clone();
    let sender = Sender { client, created, code: code.clone(), keys, info, options, status: status_tx };
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        // `events` stays open until the end: later notices are read by nobody, not refused.
        let mut events = events;
        let result = tokio::select! {
            result = sender.run(&mut events, &scanned) => result,
            () = stop.notified() => Err(TransferError::Cancelled.into()),
        };
        sender.finish(&result).await;
        result
    });
    Ok((code, SendHandle { status, skipped, cancel, task }))
}

/// The sender's side once the code is out.
struct Sender {
    client: SignalingClient,
    created: CreatedSession,
    code: TransferCode,
    keys: Arc<DeviceKeys>,
    info: DeviceInfo,
    options: SendOptions,
    status: watch::Sender<Status>,
}

impl Sender {
    async fn run(&self, events: &mut tokio::sync::mpsc::Receiver<ClientEvent>, scanned: &Scanned) -> Result<()> {
        let receiver = wait_for_join(events, &self.created, self.options.code_ttl).await?;
        set_stage(&self.status, Stage::Authenticating);
        let link = &self.options.link;
        let (relay, peer) = meet(&self.client, &receiver, &self.code, Role::Creator, &self.info, link).await?;
        let mut relays = Relays::new(&self.client, receiver, link.relay_wait, relay);
        loop {
            let relay = relays.next().await?;
            set_stage(&self.status, Stage::Connecting);
            let config = pinned_config(self.keys.clone(), peer.clone());
            let conn = Connection::connect(Box::new(relay), config, Some(peer.device_id)).await?;
            set_connected(&self.status, &conn);
            let before = self.status.borrow().progress.bytes_done;
            let (progress_tx, progress_rx) = watch::channel(TransferProgress::default());
            let sent = tokio::select! {
                sent = exchange::send(&conn, scanned, self.options.answer_timeout, &progress_tx) => sent,
                stalled = follow(progress_rx, &self.status, link.stall_timeout) => Err(stalled.into()),
            };
            let after = *progress_tx.borrow();
            self.status.send_modify(|s| s.progress = after);
            match sent {
                Ok(()) => {
                    set_stage(&self.status, Stage::Done);
                    conn.close(CloseReason::normal("transfer complete")).await;
                    return Ok(());
                }
                Err(err) if relays.hop(after.bytes_done > before, &conn).await => {
                    info!(%err, hop = relays.hops, done = after.bytes_done, "the relay ended mid-way; resuming on a new one");
                }
                Err(err) => {
                    conn.close(CloseReason::normal(format!("transfer failed: {err}"))).await;
                    return Err(err);
                }
            }
        }
    }

    /// Closes the session (a used or burnt code never works again) and the client.
    async fn finish(&self, result: &Result<()>) {
        if let Err(err) = result {
            debug!(%err, "send failed");
        }
        if let Err(err) = self.client.close_session(&self.created.transfer_id, &self.created.sender_token).await {
            warn!(%err, "could not close the code's session");
        }
        self.client.close().await;
    }
}

/// Waits for the `joined` event of the session `created`; returns the device that
/// joined. Fails when no one joined within `ttl` or the session ended.
pub(super) async fn wait_for_join(
    events: &mut tokio::sync::mpsc::Receiver<ClientEvent>,
    created: &CreatedSession,
    ttl: Duration,
) -> Result<peers_sdk::DeviceId> {
    let waiting = async {
        while let Some(event) = events.recv().await {
            match event {
                ClientEvent::Session { transfer_id, state, peer, reason } if transfer_id == created.transfer_id => {
                    match (state, peer) {
                        (SessionState::Joined, Some(peer)) => return Ok(peer),
                        (SessionState::Expired, _) => {
                            return Err(TransferError::TimedOut { what: "the other device to join", after: ttl }.into());
                        }
                        (SessionState::Closed, _) => {
                            let why = reason.unwrap_or_else(|| "closed".into());
                            return Err(TransferError::Protocol(format!("the code's session ended: {why}")).into());
                        }
                        _ => {}
                    }
                }
                ClientEvent::Closed { reason } => {
                    return Err(peers_signaling::Error::Closed { reason }.into());
                }
                _ => {}
            }
        }
        Err(peers_signaling::Error::Closed { reason: "event channel ended".into() }.into())
    };
    match tokio::time::timeout(ttl, waiting).await {
        Ok(result) => result,
        Err(_) => Err(TransferError::TimedOut { what: "the other device to join", after: ttl }.into()),
    }
}

/// Runs the PAKE; on any failure closes the relay so the peer is not left waiting.
pub(super) async fn authenticate_on(
    relay: &dyn peers_sdk::Socket,
    code: &TransferCode,
    role: Role,
    own: &DeviceInfo,
    timeout: Duration,
) -> Result<DeviceInfo> {
    let result = authenticate(relay, code, role, own, timeout).await;
    if let Err(err) = &result {
        relay.close(CloseReason::new(peers_sdk::CloseCode::Refused, format!("PAKE failed: {err}"))).await;
    }
    result
}

/// Joins the session of `code` and returns at once; the PAKE, the connection and the
/// transfer run in the background (see the module documentation). Each offer is
/// decided by `options.decide`, which sees the names and sizes.
pub async fn receive(code: TransferCode, link: LinkOptions, options: ReceiveOptions) -> Result<ReceiveHandle> {
    let (keys, info) = ephemeral()?;
    let client = register(&link, &keys).await?;
    let joined = match client.join_session(&code.session().to_string()).await {
        Ok(joined) => joined,
        Err(err) => {
            client.close().await;
            return Err(err.into());
        }
    };
    let (status_tx, status) = watch::channel(Status::start(Stage::Authenticating));
    let cancel = Arc::new(Notify::new());
    let stop = cancel.clone();
    let receiver = Receiver { sender: joined.sender, code, keys, info, link, status: status_tx };
    let task = tokio::spawn(async move {
        let result = tokio::select! {
            result = receiver.run(&client, options) => result,
            () = stop.notified() => Err(TransferError::Cancelled.into()),
        };
        if let Err(err) = client.close_session(&joined.transfer_id, &joined.receiver_token).await {
            debug!(%err, "could not close the code's session (the sender may have closed it)");
        }
        client.close().await;
        result
    });
    Ok(ReceiveHandle { status, cancel, task })
}

/// The receiver's side once the session is joined.
struct Receiver {
    sender: peers_sdk::DeviceId,
    code: TransferCode,
    keys: Arc<DeviceKeys>,
    info: DeviceInfo,
    link: LinkOptions,
    status: watch::Sender<Status>,
}

impl Receiver {
    async fn run(&self, client: &SignalingClient, mut options: ReceiveOptions) -> Result<Received> {
        let link = &self.link;
        // A "no" ends with the sender closing the connection: remember it was ours.
        // The offer of a manifest already accepted (again, on a new relay) is not asked again.
        let declined = Arc::new(AtomicBool::new(false));
        let accepted: Arc<Mutex<Option<Hash>>> = Arc::default();
        let (decide, said_no, said_yes) = (options.decide.clone(), declined.clone(), accepted.clone());
        options.decide = Arc::new(move |manifest| {
            let digest = manifest.digest();
            if *said_yes.lock().unwrap_or_else(|e| e.into_inner()) == Some(digest) {
                return Box::pin(std::future::ready(true));
            }
            let (answer, said_no, said_yes) = (decide(manifest), said_no.clone(), said_yes.clone());
            Box::pin(async move {
                let yes = answer.await;
                said_no.store(!yes, Ordering::Relaxed);
                if yes {
                    *said_yes.lock().unwrap_or_else(|e| e.into_inner()) = Some(digest);
                }
                yes
            })
        });
        let (relay, peer) = meet(client, &self.sender, &self.code, Role::Joiner, &self.info, link).await?;
        let mut relays = Relays::new(client, self.sender, link.relay_wait, relay);
        loop {
            let relay = relays.next().await?;
            let before = self.status.borrow().progress.bytes_done;
            let (conn, result) = self.attempt(relay, &peer, &options, &declined).await?;
            let after = self.status.borrow().progress.bytes_done;
            match result {
                Ok(received) => {
                    set_stage(&self.status, Stage::Done);
                    // The stream's final answer may still be on its way to the sender,
                    // which closes once it has it; close only if it does not.
                    let _ = tokio::time::timeout(CLOSE_GRACE, conn.closed()).await;
                    conn.close(CloseReason::normal("transfer over")).await;
                    return Ok(received);
                }
                Err(err) if relays.hop(after > before, &conn).await => {
                    info!(%err, hop = relays.hops, done = after, "the relay ended mid-way; resuming on a new one");
                }
                Err(err) => {
                    conn.close(CloseReason::normal("transfer over")).await;
                    return Err(err);
                }
            }
        }
    }

    /// One connection over `relay`: accepts it and receives; returns the connection
    /// with the outcome.
    async fn attempt(
        &self,
        relay: RelaySocket,
        peer: &DeviceInfo,
        options: &ReceiveOptions,
        declined: &AtomicBool,
    ) -> Result<(Connection, Result<Received>)> {
        let (link, status) = (&self.link, &self.status);
        set_stage(status, Stage::Connecting);
        // The handlers go in before the sender may call (its offer comes at once).
        let slot: Arc<Mutex<Option<Incoming>>> = Arc::default();
        let (install, options) = (slot.clone(), options.clone());
        let config = pinned_config(self.keys.clone(), peer.clone()).with_setup(move |conn| {
            let incoming = exchange::expose_receiver(conn, options.clone());
            *install.lock().unwrap_or_else(|e| e.into_inner()) = Some(incoming);
        });
        let conn = Connection::accept(Box::new(relay), config).await?;
        set_connected(status, &conn);
        let incoming = slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| Error::Worker("the receiving handlers were not installed".into()))?;
        let progress = incoming.progress.clone();
        let mut outcome = incoming.outcome.clone();
        let ended = async {
            match outcome.wait_for(Option::is_some).await {
                Ok(done) => done.clone().unwrap_or_else(|| Err("no outcome".into())),
                Err(_) => Err("the receiver stopped".into()),
            }
        };
        let result = tokio::select! {
            done = ended => done.map_err(|e| Error::Transfer(TransferError::Protocol(e))),
            stalled = follow(progress.clone(), status, link.stall_timeout) => Err(stalled.into()),
            reason = conn.closed() => {
                // The data task may still be reporting why the stream broke.
                let mut outcome = incoming.outcome.clone();
                match tokio::time::timeout(Duration::from_secs(2), outcome.wait_for(Option::is_some)).await {
                    Ok(Ok(done)) => done.clone().unwrap_or_else(|| Err("no outcome".into()))
                        .map_err(|e| Error::Transfer(TransferError::Protocol(e))),
                    _ if declined.load(Ordering::Relaxed) => Err(TransferError::Declined("you said no".into()).into()),
                    _ => Err(TransferError::Protocol(format!("the sender closed the connection: {}", reason.message)).into()),
                }
            }
        };
        let last = *progress.borrow();
        // An attempt that never got an offer leaves the last counts as they were.
        if last.bytes_total > 0 {
            status.send_modify(|s| s.progress = last);
        }
        Ok((conn, result))
    }
}

/// Whether `conn` ended because its relay did (the server's caps on a relay's bytes
/// and duration, or the path failing), not because the peer closed it on purpose:
/// then both sides open a new relay, and the transfer resumes from the receiver's
/// last verified chunk.
async fn relay_ended(conn: &Connection) -> bool {
    // A write that failed may see the closed socket before the connection records it.
    match tokio::time::timeout(Duration::from_secs(2), conn.closed()).await {
        Ok(reason) => {
            reason.by == ClosedBy::Remote
                && matches!(reason.code, CloseCode::LimitExceeded | CloseCode::TransportFailure | CloseCode::Timeout)
        }
        Err(_) => false,
    }
}
