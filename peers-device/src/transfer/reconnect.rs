//! A transfer's signaling connection, registered again after it drops (the server
//! restarted, the network blinked): [`Signaling`].
//!
//! ```text
//! registered ── the connection ends (not closed by this side) ──▶ down (drops + 1;
//!   the transfer's status says SignalingLink::Reconnecting until registered again)
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
//! [`ClientEvent::Closed`]). So do the WebRTC signals of every registration, for the
//! transfer's one WebRTC endpoint ([`Signaling::webrtc_signaling`]): a WebRTC
//! connection already up is not disturbed, and new ones are signaled once registered
//! again. The registered client lives in one place, the supervisor's `watch`: the
//! transfer, its status and its WebRTC signaling (through the link's `Registration`
//! trait) all read it there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use peers_sdk::DeviceKeys;
use peers_signaling::{ClientEvent, DeliveredSignal, SignalingClient};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::TransferError;
use super::live::LinkOptions;
use super::meeting::register;
use super::status::{SignalingLink, Status};
use crate::Result;
use crate::transports::ServerSignaling;
use crate::transports::signaling_link::{REGISTRATION_WAIT, Registration as RegisteredClient, unit as jitter_unit};

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
    /// The WebRTC signals of every registration, until WebRTC signaling takes them.
    signals: Arc<std::sync::Mutex<Option<mpsc::Receiver<DeliveredSignal>>>>,
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
        status: watch::Sender<Status>,
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
        let (signals_tx, signals) = mpsc::channel(link.client.incoming_capacity.max(1));
        let supervisor = Supervisor {
            state: state_tx,
            keys,
            link: link.clone(),
            events: events_tx,
            signals: signals_tx,
            closing: closing.clone(),
            status,
        };
        let task = tokio::spawn(supervisor.run(client.clone(), events));
        let wait = link.reconnect_give_up.saturating_add(link.client.connect_timeout);
        let signals = Arc::new(std::sync::Mutex::new(Some(signals)));
        let signaling = Signaling { state, closing, supervisor: Arc::new(task), first: client, wait, signals };
        (signaling, events_rx)
    }

    /// The first registration's client.
    pub(super) fn first(&self) -> &SignalingClient {
        &self.first
    }

    /// WebRTC signaling over every registration (signals made while registering again
    /// wait for it, as on the device's link), sent with `ttl`; `None` after the first
    /// call.
    pub(super) fn webrtc_signaling(&self, ttl: Duration) -> Option<ServerSignaling> {
        let incoming = self.signals.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        Some(ServerSignaling::over_registration(*self.first.device_id(), Arc::new(self.clone()), incoming, ttl))
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

impl std::fmt::Debug for Signaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signaling").field("device", self.first.device_id()).finish_non_exhaustive()
    }
}

/// WebRTC signaling asks for the client here: it waits up to the device link's
/// [`REGISTRATION_WAIT`] for a registration under way, as it does on the link.
#[async_trait::async_trait]
impl RegisteredClient for Signaling {
    async fn registered(&self) -> std::result::Result<SignalingClient, String> {
        match tokio::time::timeout(REGISTRATION_WAIT, self.client()).await {
            Ok(client) => client.map_err(|e| e.to_string()),
            Err(_) => Err("not registered with the signaling server".into()),
        }
    }
}

/// The task that registers again.
struct Supervisor {
    state: watch::Sender<Registration>,
    keys: Arc<DeviceKeys>,
    link: LinkOptions,
    events: Option<mpsc::Sender<ClientEvent>>,
    signals: mpsc::Sender<DeliveredSignal>,
    closing: Arc<AtomicBool>,
    /// The transfer's status: its [`SignalingLink`] follows the registration.
    status: watch::Sender<Status>,
}

impl Supervisor {
    async fn run(self, mut client: SignalingClient, events: Option<mpsc::Receiver<ClientEvent>>) {
        let mut backoff = self.link.reconnect.backoff();
        backoff.on_connected(Instant::now());
        let mut _forwarding = self.forwarding(&client, events);
        loop {
            let why = client.closed().await;
            if self.closing.load(Ordering::SeqCst) {
                return;
            }
            let since = Instant::now();
            self.publish(None);
            self.state.send_modify(|r| r.drops += 1);
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
            let events = client.events();
            _forwarding = self.forwarding(&client, events);
            info!(down = ?since.elapsed(), "registered again with the signaling server");
            self.publish(Some(client.clone()));
        }
    }

    /// The registered client now (`None` while down): the one place it is kept, for
    /// the transfer and its WebRTC signaling alike; the transfer's status follows.
    fn publish(&self, client: Option<SignalingClient>) {
        let link = if client.is_some() { SignalingLink::Registered } else { SignalingLink::Reconnecting };
        self.status.send_if_modified(|s| std::mem::replace(&mut s.signaling, link) != link);
        self.state.send_modify(|r| r.client = client);
    }

    /// Passes on `client`'s WebRTC signals and `events` (its events).
    fn forwarding(&self, client: &SignalingClient, events: Option<mpsc::Receiver<ClientEvent>>) -> Forwarding {
        let events = events.map(|events| self.forward(events));
        let signals = client.incoming().map(|mut incoming| {
            let out = self.signals.clone();
            tokio::spawn(async move {
                while let Some(signal) = incoming.recv().await {
                    if out.try_send(signal).is_err() {
                        debug!("transfer WebRTC signals full (or WebRTC off): one dropped");
                    }
                }
            })
        });
        Forwarding(events.into_iter().chain(signals).collect())
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

/// The tasks forwarding one registration's events and signals, ended when replaced or dropped
/// (with the supervisor).
struct Forwarding(Vec<JoinHandle<()>>);

impl Drop for Forwarding {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
