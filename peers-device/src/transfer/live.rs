//! Sending and receiving by code through a signaling server: [`send`] here, and
//! [`receive`](super::receive) (`receiving`), with what both share ([`LinkOptions`],
//! [`Canceller`]).
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
//!   manager.dial (pinned) ◀══════════════ relay frames ═══════▶ manager.accept (pinned)
//!   offer, data stream (exchange) ◀══════════════════════════▶ decide, verify, store
//!   WebRTC dial via the server ──────────────────────────────▶ accept: a better path;
//!   pause at a chunk, offer again on it ◀════════ WebRTC ═════▶ resume after the last chunk
//!   session-close (always: the code is used up, or burnt after a wrong code)
//! ```
//!
//! After the PAKE each side runs a `ConnectionManager` pinned to the confirmed device
//! (the `paths` module): bytes start on the relay at once and move to a better path
//! (the receiver's local socket, WebRTC direct, then TURN) when the manager switches to
//! it, without starting over; the status shows the new class. [`LinkOptions::webrtc`]
//! and [`LinkOptions::local`] both `None` keep a transfer on the relay.
//!
//! Limits (each a field of [`LinkOptions`] or [`SendOptions`]): the code lives
//! [`SendOptions::code_ttl`] (10 min) and the sender gives up when no one joined by
//! then; the relay must open within 30 s of the join and the PAKE finish within 30 s;
//! the receiving person has [`SendOptions::answer_timeout`] (10 min) to answer; once
//! bytes move, either side fails with [`TransferError::Stalled`] when nothing moves
//! for [`LinkOptions::stall_timeout`] (60 s). A receiver whose process dies is seen
//! sooner: the server closes the relay when its signaling connection drops, and a
//! WebRTC connection that hears nothing for 10 s is closed as dead.
//! [`Canceller::cancel`] ends a transfer on either side and tells the other why.
//!
//! A relay that ends under the transfer (the server caps each relay's bytes and
//! lifetime, 256 MiB and 10 minutes by default) is replaced: both sides open a new one,
//! connect again pinned to the same confirmed device, and the transfer resumes from
//! the receiver's last verified chunk, at most [`MAX_RELAY_HOPS`] times (the rules:
//! `recovery`).
//!
//! The signaling server restarting (or the network blinking under one side) costs
//! seconds: each side's signaling connection registers again (`reconnect`:
//! 250 ms first, 2 s cap, [`LinkOptions::reconnect`]), the relays that died with it are
//! replaced as above once both are registered, with no presence check (right after a
//! restart it says nothing), and the code's session survives in the server's store. A
//! transfer on WebRTC or the local socket is not disturbed. A side not registered again
//! within [`LinkOptions::reconnect_give_up`] (60 s) fails with
//! [`TransferError::SignalingLost`] when it needs the server. WebRTC is signaled over
//! whichever registration is up, and the status says [`SignalingLink::Reconnecting`](super::SignalingLink)
//! meanwhile. A receiver that joins the code's session in the moment between the
//! server's start and the sender's registration is told to the sender when it registers
//! (the server tells a registering creator of its joined sessions; a `joined` told
//! again for a receiver already met is ignored).
//!
//! A receiver that vanishes (its process killed: its relay ends, or its WebRTC
//! connection goes silent for 10 s, and the server has it offline; or nothing moves
//! for the stall timeout) can come back by running the same
//! code again: the sender reopens the code's session (`session-reopen`), shows
//! [`Stage::WaitingForReturn`] and waits [`SendOptions::rejoin_wait`] (5 min) for a new
//! join, at most [`MAX_REJOINS`] times; the device that joins runs a new PAKE on the same
//! words (a wrong one burns the code), and its offer answer resumes from the staging
//! directory it finds by the manifest's digest. A receiver run again before the sender
//! reopened the session (its join refused `session_taken`) joins again for up to 15 s
//! ([`LinkOptions::taken_retries`]).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peers_sdk::{CloseReason, Connection, DeviceId, DeviceInfo, DeviceKeys};
use peers_signaling::{ClientEvent, CreatedSession, SignalingClientOptions};
use peers_transport_webrtc::{WebRtcConfig, WebRtcEndpoint};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::code::DEFAULT_WORDS;
use super::exchange::{self, DEFAULT_ANSWER_TIMEOUT, SendEnd, TransferProgress};
use super::manifest::DEFAULT_CHUNK_SIZE;
use super::meeting::{CodeSession, TAKEN_RETRIES, ephemeral, meet, open_code, wait_for_join};
use super::pake::CodeRole;
use super::paths::{Change, Local, Paths, Side, class_of, webrtc_endpoint};
use super::reconnect::Signaling;
pub use super::recovery::MAX_RELAY_HOPS;
use super::recovery::{Break, BreakStep, after_break, peer_return_wait, receiver_gone};
use super::scan::{Scanned, scan};
use super::status::{Stage, Status, follow, set_connected, set_stage};
use super::{TransferCode, TransferError};
use crate::transports::ReconnectOptions;
use crate::{Error, Result};

/// Most times a sender waits for its receiver to come back with the same code
/// (the server allows 16 reopenings of a session).
pub const MAX_REJOINS: u32 = 8;

/// How often a sender asks for its receiver's presence while it waits for it to return.
const PRESENCE_POLL: Duration = Duration::from_millis(500);

/// How long the side that answered last (a receiver that stored everything, a joiner
/// that has the groups) waits for the other to close: its answer may still be on the way.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How both sides reach each other.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LinkOptions {
    /// Signaling server URLs (one deployment), tried in order until one answers.
    pub signaling: Vec<String>,
    /// The signaling client's settings.
    pub client: SignalingClientOptions,
    /// How the signaling client registers again after its connection dropped (the
    /// server restarted): the device link's schedule. Default: 250 ms first, 2 s cap.
    pub reconnect: ReconnectOptions,
    /// A side not registered again within this time of a drop gives up, and the
    /// transfer, if it needs the server, fails with [`TransferError::SignalingLost`].
    /// Default: 60 s.
    pub reconnect_give_up: Duration,
    /// How long to wait for the other device to open the relay. Default: 30 s.
    pub relay_wait: Duration,
    /// The PAKE must finish within this time. Default: 30 s.
    pub pake_timeout: Duration,
    /// Once bytes move, fail when none moves for this long. Default: 60 s.
    pub stall_timeout: Duration,
    /// WebRTC to try beside the relay (signaled through the same server, with the ICE
    /// servers it hands out), or `None` to stay on the relay. Default: the WebRTC
    /// defaults (candidates on every interface but loopback).
    pub webrtc: Option<WebRtcConfig>,
    /// Where a receiver listens for a local socket (socket.io over TCP, on a port the
    /// system picks, for the transfer's life) that the sender dials beside WebRTC; on
    /// the sender, whether to dial the receiver's. Its URLs reach the sender in the
    /// receiver's confirmed device info, which the signaling server carries (as it
    /// carries WebRTC's host candidates). `None`: no local socket. Default: `0.0.0.0`
    /// (every IPv4 interface; the URLs name each interface's address).
    pub local: Option<IpAddr>,
    /// A receiver's join refused `session_taken` (the sender still holds the session
    /// for a receiver process killed a moment ago, and reopens it within about 10 s) is
    /// tried again after each of these pauses, then fails as refused. Default: 2, 3, 3,
    /// 3 and 4 s (six joins over 15 s; the server allows 10 a minute). Empty: no retry.
    pub taken_retries: Vec<Duration>,
}

impl LinkOptions {
    /// Defaults for the server at `signaling`.
    pub fn new(signaling: Vec<String>) -> Self {
        LinkOptions {
            signaling,
            client: SignalingClientOptions::default(),
            reconnect: ReconnectOptions::default(),
            reconnect_give_up: Duration::from_secs(60),
            relay_wait: Duration::from_secs(30),
            pake_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(60),
            webrtc: Some(WebRtcConfig::default()),
            local: Some(Ipv4Addr::UNSPECIFIED.into()),
            taken_retries: TAKEN_RETRIES.to_vec(),
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
    /// How long the sender waits, each time its receiver vanished mid-way (its
    /// relay and connections gone, or nothing moving for
    /// [`LinkOptions::stall_timeout`]), for the receiver to run the same code again;
    /// at most [`MAX_REJOINS`] times, and never past the code's lifetime.
    /// `Duration::ZERO` fails at once instead. Default: 5 min.
    pub rejoin_wait: Duration,
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
            rejoin_wait: Duration::from_secs(300),
        }
    }
}

/// Cancels a running transfer from anywhere (a signal handler, another task).
#[derive(Debug, Clone)]
pub struct Canceller(Arc<watch::Sender<bool>>);

impl Canceller {
    pub(super) fn new() -> (Canceller, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        (Canceller(Arc::new(tx)), rx)
    }

    /// Stops the transfer: the other side is told ("cancelled by the sender" or "by
    /// the receiver") and the session closed; what the receiver verified stays in its
    /// hidden staging directory for a later transfer of the same files.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}

/// Runs `work` until it ends or the transfer is cancelled ([`TransferError::Cancelled`]).
pub(super) async fn until_cancelled<T>(
    cancel: &watch::Receiver<bool>,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let mut cancel = cancel.clone();
    tokio::select! {
        result = work => result,
        () = async {
            if cancel.wait_for(|c| *c).await.is_err() {
                // Every canceller is gone: nobody can cancel any more.
                std::future::pending::<()>().await;
            }
        } => Err(TransferError::Cancelled.into()),
    }
}

/// How a side closes its connections when it is done: the other side shows the reason.
pub(super) fn close_reason<T>(result: &Result<T>, side: &str) -> CloseReason {
    match result {
        Ok(_) => CloseReason::normal("transfer complete"),
        Err(Error::Transfer(TransferError::Cancelled)) => CloseReason::normal(format!("cancelled by the {side}")),
        Err(err) => CloseReason::normal(format!("transfer failed: {err}")),
    }
}

/// A running send. Dropping it does not stop the transfer; [`cancel`](Self::cancel) does.
#[derive(Debug)]
pub struct SendHandle {
    /// The transfer's phase, path and bytes.
    pub status: watch::Receiver<Status>,
    /// Paths left out because they are symbolic links or special files.
    pub skipped: Vec<PathBuf>,
    /// A link that receives the transfer in a browser (the signaling server's receive
    /// page with the code in its fragment), when the server serves the page.
    pub receive_link: Option<String>,
    cancel: Canceller,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl SendHandle {
    /// Stops the transfer ([`Canceller::cancel`]); [`finished`](Self::finished) returns
    /// [`TransferError::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A canceller that outlives [`finished`](Self::finished)'s taking of the handle.
    pub fn canceller(&self) -> Canceller {
        self.cancel.clone()
    }

    /// Waits until the receiver has verified and stored everything, or the transfer failed.
    pub async fn finished(self) -> Result<()> {
        self.task.await.map_err(|e| Error::Worker(e.to_string()))?
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
    let (keys, info) = ephemeral(vec![])?;
    let CodeSession { client, events, created, code, receive_link } =
        open_code(&options.link, &keys, options.words, options.code_ttl).await?;
    let (status_tx, status) = watch::channel(Status::start(Stage::WaitingForPeer));
    let (cancel, cancelled) = Canceller::new();
    let skipped = scanned.skipped.clone();
    let (signaling, events) = Signaling::start(client, Some(events), keys.clone(), &options.link, status_tx.clone());
    let webrtc = webrtc_endpoint(&signaling, &options.link);
    let sender =
        Sender { signaling, created, code: code.clone(), keys, info, options, webrtc, status: status_tx, cancelled };
    let task = tokio::spawn(async move {
        // `events` stays open until the end: later notices are read by nobody, not refused.
        let Some(mut events) = events else { unreachable!("Signaling::start passes events on when given some") };
        let result = sender.run(&mut events, &scanned).await;
        sender.finish(&result).await;
        result
    });
    Ok((code, SendHandle { status, skipped, receive_link, cancel, task }))
}

/// The sender's side once the code is out.
struct Sender {
    signaling: Signaling,
    created: CreatedSession,
    code: TransferCode,
    keys: Arc<DeviceKeys>,
    info: DeviceInfo,
    options: SendOptions,
    webrtc: Option<Arc<WebRtcEndpoint>>,
    status: watch::Sender<Status>,
    cancelled: watch::Receiver<bool>,
}

impl Sender {
    /// Meets the receiver and sends; when the receiver vanishes mid-way, reopens the
    /// code's session and does it again with whoever joins next (a new PAKE: the words
    /// are checked again, and a wrong guess burns the code), at most [`MAX_REJOINS`]
    /// times. The receiver resumes from its staged data.
    async fn run(&self, events: &mut tokio::sync::mpsc::Receiver<ClientEvent>, scanned: &Scanned) -> Result<()> {
        let mut rejoins = 0;
        let mut met = Vec::new();
        loop {
            let result = self.meet_and_send(events, scanned, rejoins, &mut met).await;
            let gone = match &result {
                Err(err) if receiver_gone(err) => err,
                _ => return result,
            };
            if rejoins >= MAX_REJOINS || self.options.rejoin_wait.is_zero() {
                return result;
            }
            rejoins += 1;
            info!(err = %gone, rejoins, "the receiver is gone; waiting for it to use the code again");
            let reopened = async {
                let client = self.signaling.client().await?;
                Ok(client.reopen_session(&self.created.transfer_id, &self.created.sender_token).await?)
            };
            if let Err(refused) = until_cancelled(&self.cancelled, reopened).await {
                let why = format!("the receiver is gone ({gone}) and the code cannot take it back: {refused}");
                return Err(TransferError::Protocol(why).into());
            }
            self.status.send_modify(|s| {
                s.stage = Stage::WaitingForReturn;
                s.class = None;
            });
        }
    }

    /// One receiver: waits for its join (the code's lifetime for the first, the rejoin
    /// wait after), the PAKE, the paths, the transfer.
    async fn meet_and_send(
        &self,
        events: &mut tokio::sync::mpsc::Receiver<ClientEvent>,
        scanned: &Scanned,
        rejoins: u32,
        met: &mut Vec<DeviceId>,
    ) -> Result<()> {
        let link = &self.options.link;
        let (receiver, relay, peer) = until_cancelled(&self.cancelled, async {
            let receiver = match rejoins {
                0 => wait_for_join(events, &self.created, self.options.code_ttl, met).await?,
                _ => {
                    let wait = self.options.rejoin_wait;
                    match wait_for_join(events, &self.created, wait, met).await {
                        Err(Error::Transfer(TransferError::TimedOut { .. })) => {
                            let what = "the receiver to run the same code again";
                            return Err(TransferError::TimedOut { what, after: wait }.into());
                        }
                        joined => joined?,
                    }
                }
            };
            met.push(receiver);
            set_stage(&self.status, Stage::Authenticating);
            let client = self.signaling.client().await?;
            let (relay, peer) = meet(&client, &receiver, &self.code, CodeRole::Creator, &self.info, link).await?;
            Ok((receiver, relay, peer))
        })
        .await
        .map_err(|err| match err {
            // The PAKE or the wait failing is no vanished receiver: no new round.
            Error::Transfer(err) => Error::Transfer(err),
            other => TransferError::Protocol(format!("meeting the receiver: {other}")).into(),
        })?;
        set_stage(&self.status, Stage::Connecting);
        let drain = self.options.answer_timeout;
        let keys = self.keys.clone();
        let local = if link.local.is_some() { Local::Dial } else { Local::Off };
        let webrtc = self.webrtc.clone();
        let mut paths = Paths::start(Side::Sender, keys, &peer, webrtc, local, drain, relay, |_| {}).await?;
        let result = until_cancelled(&self.cancelled, self.transfer(&mut paths, &receiver, scanned)).await;
        let reason = match &result {
            Err(err) if receiver_gone(err) => CloseReason::normal("the receiver is gone"),
            _ => close_reason(&result, "sender"),
        };
        paths.close(reason).await;
        result
    }

    /// Sends over the active connection; pauses and goes on over a better one when the
    /// manager switches, and goes on over another (or a new relay) when one breaks.
    async fn transfer(&self, paths: &mut Paths, receiver: &DeviceId, scanned: &Scanned) -> Result<()> {
        let link = &self.options.link;
        let no_path = || Error::NotConnected(*receiver);
        let mut conn = paths.active_within(link.relay_wait).await.ok_or_else(no_path)?;
        let mut hops = 0;
        loop {
            set_connected(&self.status, class_of(&conn));
            let before = self.status.borrow().progress.bytes_done;
            let drops = self.signaling.drops();
            let (progress_tx, progress_rx) = watch::channel(TransferProgress::default());
            let (pause_tx, pause) = watch::channel(false);
            let mut better = None;
            let last_moved = Mutex::new(tokio::time::Instant::now());
            let sent = tokio::select! {
                sent = async {
                    let send = exchange::send_until(&conn, scanned, self.options.answer_timeout, &progress_tx, &pause);
                    tokio::pin!(send);
                    tokio::select! {
                        sent = &mut send => sent,
                        change = paths.changed(Some(&conn)) => {
                            if let Change::Active(next) = change {
                                debug!(to = class_of(&next).name(), "a better path is up: pausing at the next chunk");
                                pause_tx.send_replace(true);
                                better = Some(next);
                            }
                            send.await
                        }
                    }
                } => sent,
                stalled = follow(progress_rx.clone(), &self.status, link.stall_timeout) => Err(stalled.into()),
                never = note_moves(progress_rx, &last_moved) => match never {},
            };
            let after = *progress_tx.borrow();
            self.status.send_modify(|s| s.progress = after);
            match sent {
                Ok(SendEnd::Complete) => {
                    set_stage(&self.status, Stage::Done);
                    return Ok(());
                }
                Ok(SendEnd::Paused) => {
                    conn = better.or_else(|| paths.active()).ok_or_else(no_path)?;
                    info!(to = class_of(&conn).name(), done = after.bytes_done, "going on over a better path");
                }
                // An answer (declined, a changed source, ...): no other path changes it.
                Err(err @ Error::Transfer(_)) => return Err(err),
                Err(err) => {
                    let Some(reason) = closed_under(&conn).await else { return Err(err) };
                    let other = paths.active().filter(|c| c.session_id() != conn.session_id());
                    let signaling_dropped = self.signaling.dropped_since(drops);
                    let moved = after.bytes_done > before;
                    let step =
                        after_break(&Break { reason: &reason, other: other.is_some(), hops, moved, signaling_dropped });
                    match (step, other) {
                        (BreakStep::Other, Some(other)) => {
                            hops += 1;
                            info!(%err, to = class_of(&other).name(), "the path broke; going on over another");
                            conn = other;
                        }
                        (BreakStep::Answer, _) => {
                            let why = format!("the receiver closed the connection: {}", reason.message);
                            return Err(TransferError::Protocol(why).into());
                        }
                        (BreakStep::NewRelayAfterReconnect, _) => {
                            hops += 1;
                            info!(%err, hop = hops, done = after.bytes_done, "the signaling connection dropped; resuming on a new relay once registered again");
                            conn = self.new_relay(paths, receiver).await.map_err(|e| relay_failed(e, &err))?;
                        }
                        (BreakStep::NewRelayIfOnline, _)
                            if self.is_online(receiver, peer_return_wait(silent_since(&last_moved))).await =>
                        {
                            hops += 1;
                            info!(%err, hop = hops, done = after.bytes_done, "the relay ended mid-way; resuming on a new one");
                            conn = self.new_relay(paths, receiver).await.map_err(|e| relay_failed(e, &err))?;
                        }
                        _ => return Err(err),
                    }
                }
            }
        }
    }

    /// Opens a new relay to the receiver (once registered with the signaling server)
    /// and waits for the connection on it.
    async fn new_relay(&self, paths: &Paths, receiver: &DeviceId) -> Result<Connection> {
        let wait = self.options.link.relay_wait;
        let client = self.signaling.client().await?;
        paths.add_relay(client.open_relay(receiver, wait).await?).await?;
        paths.active_within(wait).await.ok_or_else(|| Error::NotConnected(*receiver))
    }

    /// Whether the signaling server has `device` online, or again within `wait`
    /// (a receiver whose signaling connection blinked registers again; one whose
    /// process died does not: no new relay is tried, and the sender waits for it to
    /// come back with the code). Asks every 500 ms.
    async fn is_online(&self, device: &DeviceId, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let presence = async {
                Ok::<_, Error>(self.signaling.client().await?.subscribe_presence(std::slice::from_ref(device)).await?)
            };
            match presence.await {
                Ok(online) if online.contains(device) => return true,
                Ok(_) if tokio::time::Instant::now() + PRESENCE_POLL < deadline => {
                    tokio::time::sleep(PRESENCE_POLL).await;
                }
                Ok(_) => return false,
                Err(err) => {
                    debug!(%err, "presence unknown; trying a new relay");
                    return true;
                }
            }
        }
    }

    /// Closes the session (a used or burnt code never works again) and the client.
    async fn finish(&self, result: &Result<()>) {
        if let Err(err) = result {
            debug!(%err, "send failed");
        }
        match self.signaling.current() {
            Some(client) => {
                if let Err(err) = client.close_session(&self.created.transfer_id, &self.created.sender_token).await {
                    warn!(%err, "could not close the code's session");
                }
            }
            None => warn!("could not close the code's session: not registered with the signaling server"),
        }
        self.signaling.close().await;
    }
}

/// Records in `last` when `progress` last changed; never ends.
async fn note_moves(
    mut progress: watch::Receiver<TransferProgress>,
    last: &Mutex<tokio::time::Instant>,
) -> std::convert::Infallible {
    while progress.changed().await.is_ok() {
        *last.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
    }
    std::future::pending().await
}

/// How long since `last` (a time [`note_moves`] keeps).
fn silent_since(last: &Mutex<tokio::time::Instant>) -> Duration {
    last.lock().unwrap_or_else(|e| e.into_inner()).elapsed()
}

/// Why `conn` closed, if it did (a write that failed may see the closed socket before
/// the connection records it: waits up to 2 s).
async fn closed_under(conn: &Connection) -> Option<CloseReason> {
    tokio::time::timeout(Duration::from_secs(2), conn.closed()).await.ok()
}

/// The error of a transfer whose new relay could not open after `broke`: a signaling
/// server that stayed away is said as such; otherwise the break itself.
fn relay_failed(err: Error, broke: &Error) -> Error {
    match err {
        Error::Transfer(lost @ TransferError::SignalingLost { .. }) => lost.into(),
        err => {
            debug!(%err, %broke, "no new relay");
            err
        }
    }
}
