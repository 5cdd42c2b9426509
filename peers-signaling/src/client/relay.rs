//! [`RelaySocket`]: a [`Socket`] through the signaling server's frame relay,
//! the last resort when no direct transport works.
//!
//! ```text
//!  send() ──credit──▶ outbox (4) ──▶ writer task ──"relay-frame" {relay, base64}──▶ server ──▶ peer
//!  recv() ◀── queue (≤ window) ◀── "relay-frame" callback (in arrival order)
//!         └── consumed half a window ──▶ writer ──"relay-credit" {relay, frames, bytes}──▶ peer
//! ```
//!
//! - Frames are opaque to the server; the peers `Connection` on top seals them,
//!   so the relay offers no security of its own (`TransportSecurity::default()`).
//! - Flow control: each side may receive [`RELAY_WINDOW_FRAMES`] frames and
//!   [`RELAY_WINDOW_BYTES`] bytes beyond what its application consumed; the
//!   receiver grants cumulative credit as its application reads, and a sender
//!   waits for it ([`peers_sdk::flow`], the credit every transport uses). A
//!   peer that overruns the window breaks the protocol: the relay closes with
//!   [`CloseCode::ProtocolError`].
//! - Frames travel as base64 text events: `rust_socketio` 0.6 splits binary
//!   messages at 0x1e and sends a binary event as two writes (Nagle).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use peers_sdk::flow::{Credit, RecvWindow, SendCredit};
use peers_sdk::socket::{ClosedBy, SocketInfo, SocketLifecycle, TransportKind};
use peers_sdk::{CloseCode, CloseReason, DeviceId, PathInfo, PathKind, Socket, SocketState};
use rust_socketio::Payload;
use rust_socketio::asynchronous::Client;
use serde::Serialize;
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, warn};

use super::pace::Pacer;
use crate::protocol::{
    RELAY_WINDOW_BYTES, RELAY_WINDOW_FRAMES, RelayClose, RelayCredit, RelayFrame, events, relay_event_units,
};

/// How long closing waits to hand queued frames and the close notice over.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Frames between `send` and the writer task.
const OUTBOX_FRAMES: usize = 4;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
struct Inbound {
    queue: VecDeque<Bytes>,
    /// What the peer may send: received, consumed and granted.
    window: RecvWindow,
}

/// One relay's state, shared by its socket, its writer and the callbacks.
#[derive(Debug)]
pub(crate) struct RelayCore {
    pub(crate) id: u64,
    peer: DeviceId,
    max_frame: usize,
    state: SocketLifecycle,
    /// A local close the writer must tell the peer about.
    notify_peer: AtomicBool,
    inbound: Mutex<Inbound>,
    inbound_ready: Notify,
    credit: Mutex<SendCredit>,
    credit_changed: Notify,
    grant_wanted: Notify,
    /// The client's relay budget, shared by its relays.
    pacer: Arc<Mutex<Pacer>>,
}

impl RelayCore {
    pub(crate) fn new(id: u64, peer: DeviceId, max_frame: usize, pacer: Arc<Mutex<Pacer>>) -> Arc<RelayCore> {
        // Both ends know the window, so no hello carries it.
        let window = Credit::new(RELAY_WINDOW_FRAMES, RELAY_WINDOW_BYTES);
        Arc::new(RelayCore {
            id,
            peer,
            max_frame,
            state: SocketLifecycle::new(),
            notify_peer: AtomicBool::new(false),
            inbound: Mutex::new(Inbound { queue: VecDeque::new(), window: RecvWindow::new(window) }),
            inbound_ready: Notify::new(),
            credit: Mutex::new(SendCredit::new(window)),
            credit_changed: Notify::new(),
            grant_wanted: Notify::new(),
            pacer,
        })
    }

    /// Waits until the client's relay budget pays for an event of `len`
    /// bytes (the server would close the relay for going over it); false if
    /// the relay closed meanwhile.
    async fn paced(&self, len: usize) -> bool {
        let wait = lock(&self.pacer).reserve(Instant::now(), relay_event_units(len));
        if wait.is_zero() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            _ = self.state.closed() => false,
        }
    }

    fn wake_all(&self) {
        self.inbound_ready.notify_waiters();
        self.credit_changed.notify_waiters();
        self.grant_wanted.notify_one();
    }

    /// A local close; the writer tells the peer.
    fn close_local(&self, reason: CloseReason) {
        // Set before the state flips: the writer, on another thread, may see
        // the close and look at this flag before `close` returns. (A flag left
        // set by a close that lost the race to a quiet one at most sends the
        // server a close for a relay it already ended, which it ignores.)
        self.notify_peer.store(true, Ordering::Release);
        if self.state.close(CloseReason { by: ClosedBy::Local, ..reason }) {
            self.wake_all();
        }
    }

    /// The relay ended without a notice from this side to send (the peer
    /// closed it, the server ended it, the signaling connection closed).
    pub(crate) fn close_quietly(&self, reason: CloseReason) {
        if self.state.close(reason) {
            self.wake_all();
        }
    }

    /// A frame from the peer, in arrival order (base64 as on the wire).
    pub(crate) fn on_frame(&self, data: &str) {
        if !self.state.is_open() {
            return;
        }
        let too_long = data.len() > self.max_frame.div_ceil(3) * 4;
        let Some(frame) = (!too_long).then(|| STANDARD.decode(data).ok()).flatten() else {
            return self.close_local(CloseReason::new(CloseCode::ProtocolError, "malformed relay frame"));
        };
        let mut inbound = lock(&self.inbound);
        if let Err(overrun) = inbound.window.on_frame(frame.len()) {
            drop(inbound);
            debug!(relay = self.id, %overrun, "relay peer overran its credit");
            return self.close_local(CloseReason::new(CloseCode::ProtocolError, "peer sent beyond its relay credit"));
        }
        inbound.queue.push_back(Bytes::from(frame));
        drop(inbound);
        self.inbound_ready.notify_waiters();
    }

    pub(crate) fn on_credit(&self, credit: RelayCredit) {
        lock(&self.credit).allow(Credit::new(credit.frames, credit.bytes));
        self.credit_changed.notify_waiters();
    }

    /// The grant to send now, if the application consumed half a window.
    fn due_grant(&self) -> Option<RelayCredit> {
        let mut inbound = lock(&self.inbound);
        if !inbound.window.grant_due() {
            return None;
        }
        let granted = inbound.window.announce()?;
        Some(RelayCredit { relay: self.id, frames: granted.frames, bytes: granted.bytes })
    }
}

/// One end of a relay through the signaling server. Get one with
/// [`SignalingClient::open_relay`](crate::SignalingClient::open_relay).
#[derive(Debug)]
pub struct RelaySocket {
    core: Arc<RelayCore>,
    info: SocketInfo,
    outbox: mpsc::Sender<Bytes>,
    writer_done: watch::Receiver<bool>,
}

impl RelaySocket {
    /// Starts the writer for `core` over `client`; `on_end` runs when the
    /// writer stops (to forget the relay).
    pub(crate) fn start(core: Arc<RelayCore>, client: Client, on_end: Box<dyn FnOnce() + Send>) -> RelaySocket {
        let (outbox, rx) = mpsc::channel(OUTBOX_FRAMES);
        let (done_tx, writer_done) = watch::channel(false);
        let info = SocketInfo::new(TransportKind::Relay, core.max_frame).with_peer_addr(format!("relay:{}", core.peer));
        tokio::spawn(write(core.clone(), client, rx, done_tx, on_end));
        RelaySocket { core, info, outbox, writer_done }
    }

    /// The device at the other end.
    pub fn peer(&self) -> &DeviceId {
        &self.core.peer
    }

    async fn wait_credit(&self, len: usize) -> peers_sdk::Result<()> {
        loop {
            let changed = self.core.credit_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if !self.core.state.is_open() {
                return Err(self.core.state.closed_error());
            }
            {
                if lock(&self.core.credit).take(len) {
                    return Ok(());
                }
            }
            changed.await;
        }
    }
}

async fn emit(client: &Client, event: &'static str, value: impl Serialize) -> Result<(), String> {
    let value = serde_json::to_value(value).map_err(|e| e.to_string())?;
    client.emit(event, Payload::Text(vec![value])).await.map_err(|e| e.to_string())
}

/// The writer: frames in order, grants when due, then the close notice.
async fn write(
    core: Arc<RelayCore>,
    client: Client,
    mut outbox: mpsc::Receiver<Bytes>,
    done: watch::Sender<bool>,
    on_end: Box<dyn FnOnce() + Send>,
) {
    let frame_event = |frame: &Bytes| RelayFrame { relay: core.id, data: STANDARD.encode(frame) };
    loop {
        tokio::select! {
            biased;
            () = core.grant_wanted.notified() => {
                if let Some(grant) = core.due_grant()
                    && core.paced(0).await
                    && let Err(err) = emit(&client, events::RELAY_CREDIT, grant).await
                {
                    core.close_quietly(CloseReason::new(CloseCode::TransportFailure, err));
                }
            }
            frame = outbox.recv() => match frame {
                Some(frame) => {
                    if core.paced(frame.len().div_ceil(3) * 3).await
                        && let Err(err) = emit(&client, events::RELAY_FRAME, frame_event(&frame)).await
                    {
                        core.close_quietly(CloseReason::new(CloseCode::TransportFailure, err));
                    }
                }
                None => break,
            },
            _ = core.state.closed() => break,
        }
        if !core.state.is_open() {
            break;
        }
    }
    if core.notify_peer.swap(false, Ordering::AcqRel) {
        let notice = async {
            while let Ok(frame) = outbox.try_recv() {
                emit(&client, events::RELAY_FRAME, frame_event(&frame)).await?;
            }
            if let SocketState::Closed(reason) = core.state.state() {
                let close = RelayClose { relay: core.id, code: reason.code, message: reason.message };
                emit(&client, events::RELAY_CLOSE, close).await?;
            }
            Ok::<_, String>(())
        };
        match tokio::time::timeout(CLOSE_TIMEOUT, notice).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => debug!(relay = core.id, %err, "could not tell the peer the relay closed"),
            Err(_) => warn!(relay = core.id, "telling the peer the relay closed took over {CLOSE_TIMEOUT:?}; gave up"),
        }
    }
    on_end();
    done.send_replace(true);
}

#[async_trait]
impl Socket for RelaySocket {
    fn info(&self) -> &SocketInfo {
        &self.info
    }

    async fn send(&self, frame: Bytes) -> peers_sdk::Result<()> {
        if frame.len() > self.core.max_frame {
            return Err(peers_sdk::Error::FrameTooLarge { size: frame.len(), max: self.core.max_frame });
        }
        self.wait_credit(frame.len()).await?;
        tokio::select! {
            sent = self.outbox.send(frame) => sent.map_err(|_| self.core.state.closed_error()),
            _ = self.core.state.closed() => Err(self.core.state.closed_error()),
        }
    }

    async fn recv(&self) -> peers_sdk::Result<Bytes> {
        loop {
            let ready = self.core.inbound_ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let state = self.core.state.state();
            if let SocketState::Closed(reason) = &state
                && reason.by == ClosedBy::Local
            {
                return Err(peers_sdk::Error::Closed { reason: reason.clone() });
            }
            let popped = {
                let mut inbound = lock(&self.core.inbound);
                let frame = inbound.queue.pop_front();
                let grant_due = frame.as_ref().is_some_and(|frame| inbound.window.on_consumed(frame.len()));
                frame.map(|frame| (frame, grant_due))
            };
            if let Some((frame, grant_due)) = popped {
                if grant_due {
                    self.core.grant_wanted.notify_one();
                }
                return Ok(frame);
            }
            if let SocketState::Closed(reason) = state {
                return Err(peers_sdk::Error::Closed { reason });
            }
            ready.await;
        }
    }

    async fn close(&self, reason: CloseReason) {
        self.core.close_local(reason);
        let mut done = self.writer_done.clone();
        let _ = tokio::time::timeout(CLOSE_TIMEOUT * 2, done.wait_for(|done| *done)).await;
    }

    fn state(&self) -> SocketState {
        self.core.state.state()
    }

    async fn closed(&self) -> CloseReason {
        self.core.state.closed().await
    }

    /// Always the signaling server's frame relay.
    fn path(&self) -> Option<PathInfo> {
        Some(PathInfo::new(PathKind::ServerRelay))
    }
}

impl Drop for RelaySocket {
    fn drop(&mut self) {
        self.core.close_local(CloseReason::new(CloseCode::GoingAway, "socket dropped"));
    }
}
