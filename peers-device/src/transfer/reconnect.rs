//! A transfer's signaling connection, registered again after it drops (the server
//! restarted, the network blinked): [`Signaling`].
//!
//! ```text
//! registered ── the connection ends (not closed by this side) ──▶ down (drops + 1)
//!   attempt after the device link's ReconnectOptions schedule: 125–250 ms, then
//!   doubling with equal jitter up to 1–2 s, trying each server URL in order
//!   registered again ──▶ registered (the same ephemeral device key)
//!   nothing registered within LinkOptions::reconnect_give_up (60 s) of the drop
//!     ──▶ given up: every later use fails with TransferError::SignalingLost
//! ```
//!
//! Requests in flight at the drop fail with the old client's typed error
//! (`peers_signaling::Error::Closed`), and so do the relays on it; the transfer's
//! recovery rules ([`super::recovery`]) open new relays once registered again. The
//! session of the code lives in the server's store and survives a restart with it. The
//! events of every registration (sessions joined, closed...) come out of one channel;
//! the drop of one registration is not an event (giving up is, as
//! [`ClientEvent::Closed`]). WebRTC signaling stays on the first registration: a WebRTC
//! connection already up is not disturbed, but no new one is dialed after a drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use peers_sdk::DeviceKeys;
use peers_signaling::{ClientEvent, SignalingClient};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::TransferError;
use super::live::LinkOptions;
use super::meeting::register;
use crate::Result;
use crate::transports::signaling_link::unit as jitter_unit;

/// The registration now.
#[derive(Clone, Default)]
struct Registration {
    client: Option<SignalingClient>,
    /// Times the connection dropped so far.
    drops: u64,
    /// Why the client gave up, once it did.
    gave_up: Option<(Duration, String)>,
}

/// The signaling client of one transfer, registered again after a drop (see the
/// module documentation). Cheap to clone; [`close`](Self::close) ends it.
#[derive(Clone)]
pub(super) struct Signaling {
    state: watch::Receiver<Registration>,
    closing: Arc<AtomicBool>,
    supervisor: Arc<JoinHandle<()>>,
    first: SignalingClient,
    /// The longest [`client`](Self::client) waits: the give-up time and one attempt.
    wait: Duration,
}

impl Signaling {
    /// Keeps `client` (registered with `keys` at a server of `link`) registered; the
    /// events of `events` (the first client's) and of every later registration go to
    /// the receiver returned (of the client's capacity), when `events` is given.
    pub(super) fn start(
        client: SignalingClient,
        events: Option<mpsc::Receiver<ClientEvent>>,
        keys: Arc<DeviceKeys>,
        link: &LinkOptions,
    ) -> (Signaling, Option<mpsc::Receiver<ClientEvent>>) {
        let (events_tx, events_rx) = match events {
            Some(_) => {
                let (tx, rx) = mpsc::channel(link.client.events_capacity.max(1));
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let (state_tx, state) =
            watch::channel(Registration { client: Some(client.clone()), ..Registration::default() });
        let closing = Arc::new(AtomicBool::new(false));
        let supervisor =
            Supervisor { state: state_tx, keys, link: link.clone(), events: events_tx, closing: closing.clone() };
        let task = tokio::spawn(supervisor.run(client.clone(), events));
        let wait = link.reconnect_give_up.saturating_add(link.client.connect_timeout);
        (Signaling { state, closing, supervisor: Arc::new(task), first: client, wait }, events_rx)
    }

    /// The first registration's client (for what stays on it: WebRTC signaling).
    pub(super) fn first(&self) -> &SignalingClient {
        &self.first
    }

    /// Times the connection dropped so far.
    pub(super) fn drops(&self) -> u64 {
        self.state.borrow().drops
    }

    /// Whether the connection dropped since [`drops`](Self::drops) was `drops` (or is
    /// down right now, before the drop is counted).
    pub(super) fn dropped_since(&self, drops: u64) -> bool {
        let now = self.state.borrow();
        now.drops != drops || now.client.as_ref().is_none_or(SignalingClient::is_closed)
    }

    /// The client registered now, if it is.
    pub(super) fn current(&self) -> Option<SignalingClient> {
        self.state.borrow().client.clone().filter(|c| !c.is_closed())
    }

    /// The registered client, waiting for a registration under way (at most the give-up
    /// time and one attempt); [`TransferError::SignalingLost`] once given up.
    pub(super) async fn client(&self) -> Result<SignalingClient> {
        let wait = self.wait;
        let mut state = self.state.clone();
        let ready = |r: &Registration| r.gave_up.is_some() || r.client.as_ref().is_some_and(|c| !c.is_closed());
        let now = match tokio::time::timeout(wait, state.wait_for(ready)).await {
            Ok(Ok(now)) => now.clone(),
            // The supervisor ended without giving up: closed by this side.
            Ok(Err(_)) => return Err(peers_signaling::Error::Closed { reason: "closed".into() }.into()),
            Err(_) => {
                return Err(TransferError::TimedOut {
                    what: "registering again with the signaling server",
                    after: wait,
                }
                .into());
            }
        };
        match (now.gave_up, now.client) {
            (Some((after, last)), _) => Err(TransferError::SignalingLost { after, last }.into()),
            (None, Some(client)) => Ok(client),
            (None, None) => Err(peers_signaling::Error::Closed { reason: "closed".into() }.into()),
        }
    }

    /// Stops registering again and closes the client.
    pub(super) async fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.supervisor.abort();
        let client = self.state.borrow().client.clone();
        if let Some(client) = client {
            client.close().await;
        }
        self.first.close().await;
    }
}

/// The task that registers again.
struct Supervisor {
    state: watch::Sender<Registration>,
    keys: Arc<DeviceKeys>,
    link: LinkOptions,
    events: Option<mpsc::Sender<ClientEvent>>,
    closing: Arc<AtomicBool>,
}

impl Supervisor {
    async fn run(self, mut client: SignalingClient, events: Option<mpsc::Receiver<ClientEvent>>) {
        let mut backoff = self.link.reconnect.backoff();
        backoff.on_connected(Instant::now());
        let mut _forwarding = Forwarding(events.map(|events| self.forward(events)));
        loop {
            let why = client.closed().await;
            if self.closing.load(Ordering::SeqCst) {
                return;
            }
            let since = Instant::now();
            self.state.send_modify(|r| {
                r.client = None;
                r.drops += 1;
            });
            info!(%why, "the signaling connection dropped; registering again");
            let mut at = backoff.on_closed(since, jitter_unit());
            let mut last = why;
            client = loop {
                if at.saturating_duration_since(since) >= self.link.reconnect_give_up {
                    let after = since.elapsed();
                    warn!(?after, %last, "not registered again with the signaling server: giving up");
                    let reason = format!("not registered again within {after:?}: {last}");
                    if let Some(events) = &self.events {
                        let _ = events.try_send(ClientEvent::Closed { reason });
                    }
                    self.state.send_modify(|r| r.gave_up = Some((after, last)));
                    return;
                }
                tokio::time::sleep_until(at.into()).await;
                match register(&self.link, &self.keys).await {
                    Ok(client) => break client,
                    Err(err) => {
                        debug!(%err, "registering again failed");
                        last = err.to_string();
                        at = backoff.on_dial_failed(Instant::now(), jitter_unit());
                    }
                }
            };
            if self.closing.load(Ordering::SeqCst) {
                client.close().await;
                return;
            }
            backoff.on_connected(Instant::now());
            _forwarding = Forwarding(client.events().map(|events| self.forward(events)));
            info!(down = ?since.elapsed(), "registered again with the signaling server");
            self.state.send_modify(|r| r.client = Some(client.clone()));
        }
    }

    /// Passes one registration's events on, but its own close (the supervisor's business).
    fn forward(&self, mut events: mpsc::Receiver<ClientEvent>) -> JoinHandle<()> {
        let out = self.events.clone();
        tokio::spawn(async move {
            let Some(out) = out else { return };
            while let Some(event) = events.recv().await {
                if matches!(event, ClientEvent::Closed { .. }) {
                    continue;
                }
                if out.try_send(event).is_err() {
                    debug!("transfer signaling events full: one dropped");
                }
            }
        })
    }
}

/// The task forwarding one registration's events, ended when replaced or dropped
/// (with the supervisor).
struct Forwarding(Option<JoinHandle<()>>);

impl Drop for Forwarding {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}
