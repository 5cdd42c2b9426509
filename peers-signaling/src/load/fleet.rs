//! The devices of one run: who they are, where they connect, the shared
//! account ([`Ledger`], latency samples, notices), and the one connection loop
//! both protocols share ([`drive`]).
//!
//! Each connected device is one task that owns its WebSocket and reads a
//! bounded inbox of [`Command`]s from the pacer. Its protocol is a
//! [`Dialect`]: how a signal is written, what a received frame means, and how
//! to leave. Leaving is polite, so nothing in flight is lost by the
//! generator itself: stop taking signals, wait for the replies still due,
//! leave, and keep reading until the protocol's barrier says that everything
//! the server handed to this connection has arrived (signaling: see
//! [`Dialect::leave_frames`]), or for [`LEAVE_GRACE`] where there is none.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use peers_sdk::DeviceKeys;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::ledger::{Counts, Ledger, Percentiles};
use super::wire::{Ws, source_address};
use super::{peerjs, signaling, socketio};
use crate::error::{Error, Result};

/// How long a leaving device keeps reading after it left, when its protocol
/// has no barrier (PeerJS), and the most it waits for a barrier.
pub const LEAVE_GRACE: Duration = Duration::from_millis(500);
/// The most a leaving device waits for its barrier.
const BARRIER_WAIT: Duration = Duration::from_secs(10);
/// How long a leaving device waits for the replies still due.
const REPLY_WAIT: Duration = Duration::from_secs(10);
/// Commands a device's inbox holds; the pacer skips a full one (and counts it).
const INBOX: usize = 64;
/// How often a PeerJS client says it is alive (the server drops it after 90 s).
const KEEPALIVE: Duration = Duration::from_secs(20);

/// Which server the fleet talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `peers-signaling`: registration by signed challenge, replies, outcomes.
    Signaling {
        /// The socket.io namespace.
        namespace: String,
    },
    /// The PeerJS server (`peer` on npm), or the plain `ws` relay that speaks
    /// its messages: plain JSON over a WebSocket.
    PeerJs,
    /// Node's reference socket.io server with a one-event relay.
    SocketIo,
}

/// One signal for a device to send.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Probe {
    /// The message number (unique in the run, from 1).
    pub(crate) seq: u64,
    /// The target's index.
    pub(crate) to: usize,
    /// When the pacer made it, µs since the run started.
    pub(crate) sent_us: u64,
}

/// What the pacer or the run tells a device task.
#[derive(Debug)]
pub(crate) enum Command {
    Probe(Probe),
    Leave,
}

/// The account shared by every device task.
#[derive(Debug)]
pub(crate) struct Tally {
    ledger: Mutex<Ledger>,
    latencies: Mutex<Vec<u64>>,
    notices: Mutex<BTreeMap<String, u64>>,
    start: Instant,
    pub(crate) unexpected_closes: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Tally {
    fn new(ledger: Ledger) -> Self {
        Tally {
            ledger: Mutex::new(ledger),
            latencies: Mutex::new(Vec::new()),
            notices: Mutex::new(BTreeMap::new()),
            start: Instant::now(),
            unexpected_closes: AtomicU64::new(0),
        }
    }

    /// µs since the run started.
    pub(crate) fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub(crate) fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    /// A signal stamped `sent_us` arrived now.
    pub(crate) fn latency(&self, sent_us: u64) {
        let latency = self.now_us().saturating_sub(sent_us);
        lock(&self.latencies).push(latency);
    }

    /// A signal's body arrived at its target: the baselines' receipt (they
    /// have no replies), from the `seq` and `t` the pacer put in it.
    pub(crate) fn arrived(&self, body: Option<&Value>) {
        let field = |name: &str| body.and_then(|b| b.get(name)).and_then(Value::as_u64);
        if let Some(seq) = field("seq") {
            self.ledger().received(seq);
        }
        if let Some(sent_us) = field("t") {
            self.latency(sent_us);
        }
    }

    /// The server said `code` (a notice, an error frame).
    pub(crate) fn notice(&self, code: &str) {
        *lock(&self.notices).entry(code.to_owned()).or_default() += 1;
    }

    /// Forgets the latency samples (before the measured phase).
    pub(crate) fn reset_latencies(&self) {
        lock(&self.latencies).clear();
    }

    pub(crate) fn percentiles(&self) -> Percentiles {
        Percentiles::of(&mut lock(&self.latencies))
    }

    pub(crate) fn counts(&self) -> Counts {
        self.ledger().counts()
    }

    pub(crate) fn notices(&self) -> BTreeMap<String, u64> {
        lock(&self.notices).clone()
    }
}

/// The devices of a run and everything their tasks share.
#[derive(Debug)]
pub(crate) struct Fleet {
    pub(crate) addr: SocketAddr,
    pub(crate) protocol: Protocol,
    /// Device ids as the server names them, by index.
    pub(crate) ids: Vec<String>,
    /// Signing keys by index (empty for PeerJS, which has none).
    pub(crate) keys: Vec<DeviceKeys>,
    /// Loopback source addresses to spread over.
    pub(crate) spread: usize,
    pub(crate) tally: Tally,
    /// The padding that makes a body about the requested size.
    pub(crate) pad: String,
    /// Time to live of each signal (`None`: the server's default).
    pub(crate) ttl_ms: Option<u64>,
    next_seq: AtomicU64,
}

/// A connected device: its inbox and its task.
#[derive(Debug)]
pub(crate) struct Online {
    pub(crate) inbox: mpsc::Sender<Command>,
    pub(crate) task: JoinHandle<()>,
}

impl Fleet {
    /// `devices` devices with fresh keys (the signaling server) or plain
    /// names (the baselines).
    pub(crate) fn new(
        addr: SocketAddr,
        protocol: Protocol,
        devices: usize,
        spread: usize,
        body_bytes: usize,
        ttl_ms: Option<u64>,
    ) -> Result<Fleet> {
        let (ids, keys, ledger) = match protocol {
            Protocol::Signaling { .. } => {
                let keys = (0..devices)
                    .map(|i| DeviceKeys::generate(format!("load-{i}")))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::InvalidInput { what: "device keys", detail: e.to_string() })?;
                (keys.iter().map(|k| k.device_id().to_string()).collect(), keys, Ledger::new())
            }
            Protocol::PeerJs | Protocol::SocketIo => {
                ((0..devices).map(|i| format!("load-{i}")).collect(), Vec::new(), Ledger::without_replies())
            }
        };
        // The rest of a signal (id, to, kind, the body's other fields) is
        // about 120 bytes.
        let pad = format!("v=0 {}", "x".repeat(body_bytes.saturating_sub(124)));
        Ok(Fleet {
            addr,
            protocol,
            ids,
            keys,
            spread,
            tally: Tally::new(ledger),
            pad,
            ttl_ms,
            next_seq: AtomicU64::new(1),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// A new probe signal from the pacer, stamped now.
    pub(crate) fn probe(&self, to: usize) -> Probe {
        Probe { seq: self.next_seq.fetch_add(1, Ordering::Relaxed), to, sent_us: self.tally.now_us() }
    }

    /// The body of `probe`: an SDP-shaped string of the padding, plus its
    /// number and timestamp.
    pub(crate) fn body(&self, probe: &Probe) -> Value {
        json!({"sdp": self.pad, "seq": probe.seq, "t": probe.sent_us})
    }

    pub(crate) fn source(&self, index: usize) -> IpAddr {
        source_address(index, self.spread)
    }

    /// Connects and registers device `index` and starts its task.
    pub(crate) async fn connect(self: &Arc<Self>, index: usize) -> Result<Online> {
        let (inbox, commands) = mpsc::channel(INBOX);
        let task = match &self.protocol {
            Protocol::Signaling { namespace } => {
                let (ws, dialect) = signaling::open(self, namespace, index).await?;
                tokio::spawn(drive(ws, dialect, commands, self.clone()))
            }
            Protocol::PeerJs => {
                let (ws, dialect) = peerjs::open(self, index).await?;
                tokio::spawn(drive(ws, dialect, commands, self.clone()))
            }
            Protocol::SocketIo => {
                let (ws, dialect) = socketio::open(self, index).await?;
                tokio::spawn(drive(ws, dialect, commands, self.clone()))
            }
        };
        Ok(Online { inbox, task })
    }
}

/// What a received frame asks of the connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reaction {
    Nothing,
    Answer(String),
    /// The server ended this device's session.
    Ended,
    /// The leave barrier arrived: nothing more is on its way.
    Left,
}

/// One protocol's side of a device connection.
pub(crate) trait Dialect: Send + 'static {
    /// Reads one text frame.
    fn on_text(&mut self, text: &str) -> Reaction;
    /// The frame that carries `probe`. The ledger records it as sent.
    fn probe_frame(&mut self, probe: &Probe) -> Result<String>;
    /// Replies still due (none for a protocol without replies).
    fn awaiting(&self) -> usize {
        0
    }
    /// The frames that leave politely. If the protocol has a barrier (a
    /// frame whose answer comes after everything the server sent before it
    /// saw the leave), the last frame asks for it and [`Dialect::on_text`]
    /// answers [`Reaction::Left`] when it comes; `has_barrier` says so.
    /// By default there are none: the connection just closes.
    fn leave_frames(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether [`Dialect::leave_frames`] ends with a barrier.
    fn has_barrier(&self) -> bool {
        false
    }
    /// A frame to send every [`KEEPALIVE`], if the protocol needs one.
    fn keepalive(&self) -> Option<String>;
}

enum Leaving {
    Replies(tokio::time::Instant),
    Grace(tokio::time::Instant),
}

/// The connection loop of one device, until it leaves or the server closes.
async fn drive<D: Dialect>(mut ws: Ws, mut dialect: D, mut commands: mpsc::Receiver<Command>, fleet: Arc<Fleet>) {
    let tally = &fleet.tally;
    let mut leaving: Option<Leaving> = None;
    let mut gave_up = false;
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    loop {
        let deadline = match leaving {
            Some(Leaving::Replies(at) | Leaving::Grace(at)) => at,
            None => far,
        };
        let mut send = None;
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => match dialect.on_text(text.as_str()) {
                    Reaction::Nothing => {}
                    Reaction::Answer(answer) => send = Some(answer),
                    Reaction::Ended => {
                        tally.unexpected_closes.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Reaction::Left if matches!(leaving, Some(Leaving::Grace(_))) => break,
                    Reaction::Left => {}
                },
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    if !matches!(leaving, Some(Leaving::Grace(_))) {
                        tally.unexpected_closes.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
            },
            command = commands.recv(), if leaving.is_none() => match command {
                Some(Command::Probe(probe)) => match dialect.probe_frame(&probe) {
                    Ok(frame) => send = Some(frame),
                    Err(err) => tracing::warn!(%err, "cannot encode a signal"),
                },
                Some(Command::Leave) | None => {
                    commands.close();
                    leaving = Some(Leaving::Replies(tokio::time::Instant::now() + REPLY_WAIT));
                }
            },
            _ = keepalive.tick() => send = dialect.keepalive(),
            () = tokio::time::sleep_until(deadline), if leaving.is_some() => match leaving {
                Some(Leaving::Grace(_)) => break,
                // Replies overdue: leave anyway; the ledger shows what is missing.
                _ => gave_up = true,
            },
        }
        if let Some(frame) = send
            && ws.send(Message::text(frame)).await.is_err()
        {
            tally.unexpected_closes.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if matches!(leaving, Some(Leaving::Replies(_))) && (dialect.awaiting() == 0 || gave_up) {
            for frame in dialect.leave_frames() {
                if ws.send(Message::text(frame)).await.is_err() {
                    tally.unexpected_closes.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            let wait = if dialect.has_barrier() { BARRIER_WAIT } else { LEAVE_GRACE };
            leaving = Some(Leaving::Grace(tokio::time::Instant::now() + wait));
        }
    }
    let _ = ws.close(None).await;
}
