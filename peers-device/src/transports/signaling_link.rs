//! The device's link to the signaling server ([`SignalingServerLink`]), and the
//! server as a transport source: WebRTC signals through it
//! ([`ServerSignaling`]) and its end-to-end encrypted frame relay as a last-resort
//! [`Dialer`] ([`RelayDialer`]).
//!
//! A supervisor task keeps the device registered and reads the client's
//! incoming signals, routing them: offers,
//! answers, candidates, cancels and errors to the WebRTC endpoint; a `ready`
//! signal whose body is `{"relay": true}` is a peer asking for a frame relay, which
//! is opened and handed to the manager as an accepted connection. (The relay
//! needs both devices to ask; `ready` is how the dialing side asks the other.)
//! A signal from a device outside the manager's trust set
//! ([`ConnectionManager::trusts`]) is dropped unanswered before it is routed,
//! and the server is given that trust set as this device's allow list
//! (`allow_sync.rs`), so it does not pass on such signals in the first place.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use peers_sdk::{BoxSocket, DeviceId, DeviceKeys};
use peers_signaling::{Outcome, OutgoingSignal, SignalKind, SignalingClient, SignalingClientOptions};
use peers_transport_webrtc::{Error, IceServer, IncomingSignal, SignalKindName, Signaling, WebRtcSignal};
use rand_core::{OsRng, RngCore};
use serde_json::json;
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::allow_sync::AllowSync;
use crate::ConnectionClass;
use crate::manager::backoff::{Backoff, BackoffOptions};
use crate::manager::{ConnectionManager, DialError, Dialer, LinkState, SignalingStatus};

/// WebRTC signals waiting for the endpoint.
const WEBRTC_QUEUE: usize = 256;
/// A registration that lasted this long was healthy: when it ends, the next
/// URL is tried at once.
const LASTING_REGISTRATION: Duration = Duration::from_secs(30);
/// After a network change, the server must answer within this time or the
/// link registers again.
const NETWORK_PROBE: Duration = Duration::from_secs(3);
/// Why a registration was given up after a network change.
const NETWORK_CHANGED: &str = "no answer from the server after a network change";
/// How long a relay request waits for the other side.
const RELAY_WAIT: Duration = Duration::from_secs(15);
/// How long a signal, an ICE configuration request or a relay dial made while
/// the link is (re)registering waits for the registration before failing with
/// "not registered": at start-up, the first WebRTC dial usually comes a moment
/// before the first registration.
pub(crate) const REGISTRATION_WAIT: Duration = Duration::from_secs(5);

/// How the registration retries after a failure: its own jittered exponential
/// backoff, capped at a few seconds and with no cooldown, so that a server
/// that restarts often is registered with again within seconds of each start.
/// (The device links' [`BackoffOptions`] cooldown is for peers that keep
/// dropping connections; a restarting server is not that.)
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ReconnectOptions {
    /// The first delay. Default: 250 ms.
    pub initial: Duration,
    /// The longest delay. Default: 2 s.
    pub max: Duration,
}

impl Default for ReconnectOptions {
    fn default() -> Self {
        ReconnectOptions { initial: Duration::from_millis(250), max: Duration::from_secs(2) }
    }
}

impl ReconnectOptions {
    /// The schedule: equal jitter between half the delay and the delay, no cooldown
    /// (also a transfer by code's, `transfer::reconnect`).
    pub(crate) fn backoff(&self) -> Backoff {
        Backoff::new(BackoffOptions {
            initial: self.initial,
            max: self.max.max(self.initial),
            young_deaths_for_cooldown: u32::MAX,
            cooldown: Duration::ZERO,
            ..BackoffOptions::default()
        })
    }
}

type SharedStatus = Arc<std::sync::Mutex<SignalingStatus>>;

/// Publishes the link's state: the watch, and the status the manager shows.
struct Reporter {
    state: watch::Sender<LinkState>,
    status: SharedStatus,
}

impl Reporter {
    fn set(&self, url: &str, state: LinkState) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if let LinkState::Disconnected(reason) = &state {
            status.last_error = Some(reason.clone());
        }
        if status.state != state || status.url != url {
            status.since = SystemTime::now();
        }
        status.url = url.to_owned();
        status.state = state.clone();
        self.state.send_replace(state);
    }
}

/// The signaling server, seen by the manager: its WebRTC signaling and its
/// relay, over a registration that is kept up.
///
/// A supervisor task registers with the server and registers again, with
/// jittered exponential backoff, whenever the connection ends (the server
/// restarted, the network changed). While it is down, signals and relay dials
/// fail at once with a clear error and the manager's dialers back off.
#[derive(Debug)]
pub struct SignalingServerLink {
    /// WebRTC signaling through the server, for a `WebRtcEndpoint`.
    pub signaling: Arc<ServerSignaling>,
    /// Frame relays through the server, as a dialer.
    pub relay: Arc<RelayDialer>,
    state: watch::Receiver<LinkState>,
    status: SharedStatus,
    network: watch::Sender<u64>,
    current: Current,
    allow: Arc<AllowSync>,
    supervisor: JoinHandle<()>,
}

/// The signaling servers a link may register with: one, or several instances
/// of one deployment (sharing a Redis store) to fail over between, in order of
/// preference. Made from a `String`, a `&str` or a `Vec<String>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrls(Vec<String>);

impl ServerUrls {
    /// The URLs, in order of preference.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl From<String> for ServerUrls {
    fn from(url: String) -> Self {
        ServerUrls(vec![url])
    }
}

impl From<&str> for ServerUrls {
    fn from(url: &str) -> Self {
        ServerUrls(vec![url.to_owned()])
    }
}

impl From<Vec<String>> for ServerUrls {
    fn from(urls: Vec<String>) -> Self {
        ServerUrls(urls)
    }
}

/// The client in use, if registered.
pub(crate) type Current = Arc<std::sync::RwLock<Option<SignalingClient>>>;

fn current_client(current: &Current) -> Result<SignalingClient, DialError> {
    current
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or(DialError::NoRoute { why: "not registered with the signaling server" })
}

/// The registered client, waiting up to [`REGISTRATION_WAIT`] for a
/// registration in progress.
async fn registered_client(
    current: &Current,
    state: &watch::Receiver<LinkState>,
) -> Result<SignalingClient, DialError> {
    if let Ok(client) = current_client(current) {
        return Ok(client);
    }
    let mut state = state.clone();
    let _ = tokio::time::timeout(REGISTRATION_WAIT, state.wait_for(|s| *s == LinkState::Registered)).await;
    current_client(current)
}

impl SignalingServerLink {
    /// Registers `keys`' device with the server at `urls` (in the background) and
    /// keeps it registered; relays other devices ask for are accepted into
    /// `manager`. WebRTC signals are sent with a time to live of `signal_ttl`
    /// (the connect timeout is a good value).
    ///
    /// With several URLs the link registers with the first that answers and,
    /// when that connection ends or a registration fails, moves on to the next
    /// one at once; it backs off (`reconnect`) only after every URL has failed
    /// in a row.
    ///
    /// # Panics
    ///
    /// If `urls` is empty.
    pub fn start(
        manager: ConnectionManager,
        urls: impl Into<ServerUrls>,
        keys: Arc<DeviceKeys>,
        options: SignalingClientOptions,
        reconnect: ReconnectOptions,
        signal_ttl: Duration,
    ) -> Self {
        let (webrtc_tx, webrtc_rx) = mpsc::channel(WEBRTC_QUEUE);
        let current: Current = Arc::default();
        let (state_tx, state) = watch::channel(LinkState::Connecting);
        let urls = urls.into();
        assert!(!urls.0.is_empty(), "a signaling link needs at least one URL");
        let status = Arc::new(std::sync::Mutex::new(SignalingStatus {
            url: urls.0[0].clone(),
            state: LinkState::Connecting,
            since: SystemTime::now(),
            last_error: None,
        }));
        manager.report_signaling(&status);
        let (network, network_rx) = watch::channel(0);
        let reporter = Reporter { state: state_tx, status: status.clone() };
        let allow = Arc::new(AllowSync::new(manager.clone()));
        let supervisor = tokio::spawn(supervise(
            manager,
            allow.clone(),
            urls,
            keys.clone(),
            options,
            reconnect,
            current.clone(),
            webrtc_tx,
            reporter,
            network_rx,
        ));
        let device = keys.device_id();
        SignalingServerLink {
            signaling: Arc::new(ServerSignaling {
                device,
                current: current.clone(),
                state: Some(state.clone()),
                incoming: Mutex::new(webrtc_rx),
                ttl: signal_ttl,
                allow: Some(allow.clone()),
                registration: None,
            }),
            relay: Arc::new(RelayDialer {
                device,
                current: current.clone(),
                state: Some(state.clone()),
                allow: Some(allow.clone()),
            }),
            state,
            status,
            network,
            current,
            allow,
            supervisor,
        }
    }

    /// The registration now: server, state, since when, last error (also in
    /// the manager's [`status`](ConnectionManager::status)).
    pub fn status(&self) -> SignalingStatus {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Tells the link that this device's network changed: it asks the server
    /// for something at once and, if no answer comes within a few seconds,
    /// registers again right away instead of waiting for the connection's
    /// keep-alive to time out.
    pub fn network_changed(&self) {
        self.network.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Gives the server the manager's trust set now, as this device's allow
    /// list, if it holds another one, and waits for its answer (at most a
    /// few seconds). The link does this by itself soon after every change
    /// of the trust set, and before it signals a device the server does not
    /// list yet; call it after trusting a device that is about to dial this
    /// one, so that its first request is not taken for a stranger's. Nothing
    /// to do while not registered: the next registration sends the set.
    pub async fn sync_allow(&self) {
        if let Ok(client) = current_client(&self.current) {
            self.allow.sync(&client).await;
        }
    }

    /// The registration's state, as it changes.
    pub fn state(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// Waits until registered, for at most `timeout`; the last failure otherwise.
    pub async fn registered(&self, timeout: Duration) -> Result<(), String> {
        let mut state = self.state.clone();
        let wait = state.wait_for(|s| *s == LinkState::Registered);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(match &*self.state.borrow() {
                LinkState::Disconnected(reason) => reason.clone(),
                _ => format!("not registered within {timeout:?}"),
            }),
        }
    }
}

impl Drop for SignalingServerLink {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

/// Registers, routes incoming signals until the connection ends, and again.
#[allow(clippy::too_many_arguments)]
async fn supervise(
    manager: ConnectionManager,
    allow: Arc<AllowSync>,
    urls: ServerUrls,
    keys: Arc<DeviceKeys>,
    options: SignalingClientOptions,
    reconnect: ReconnectOptions,
    current: Current,
    webrtc: mpsc::Sender<peers_signaling::DeliveredSignal>,
    report: Reporter,
    mut network: watch::Receiver<u64>,
) {
    let mut backoff = reconnect.backoff();
    let urls = urls.0;
    // The URL to try next, and how many have failed in a row.
    let (mut next, mut failed) = (0, 0);
    let mut trust = manager.trust_changes();
    loop {
        let url = &urls[next % urls.len()];
        next += 1;
        report.set(url, LinkState::Connecting);
        let mut options = options.clone();
        options.allow = allow.wanted();
        let allowed = options.allow.clone();
        let client = match SignalingClient::connect(url, &keys, options).await {
            Ok(client) => client,
            Err(err) => {
                failed += 1;
                let delay = backoff.on_dial_failed(Instant::now(), unit());
                let wait = delay.saturating_duration_since(Instant::now());
                // The first failure of a streak is worth a warning; the retries
                // that follow every few seconds are not.
                if failed == 1 {
                    warn!(%url, %err, "signaling registration failed; retrying");
                } else {
                    debug!(%url, %err, failed, ?wait, "signaling registration failed again");
                }
                report.set(url, LinkState::Disconnected(err.to_string()));
                if failed >= urls.len() {
                    sleep_until(delay).await;
                }
                continue;
            }
        };
        let registered_at = Instant::now();
        let Some(mut incoming) = client.incoming() else { return };
        allow.registered(allowed).await;
        // The trust set may have changed while registering.
        allow.sync(&client).await;
        backoff.on_connected(Instant::now());
        *current.write().unwrap_or_else(|e| e.into_inner()) = Some(client.clone());
        report.set(url, LinkState::Registered);
        info!(%url, "registered with the signaling server");
        // Why the registration ended, and whether a network change ended it.
        let (reason, network_changed) = loop {
            let signal = tokio::select! {
                reason = client.closed() => break (reason, false),
                Ok(()) = trust.changed() => {
                    allow.sync(&client).await;
                    continue;
                }
                Ok(()) = network.changed() => {
                    match tokio::time::timeout(NETWORK_PROBE, client.ice_config()).await {
                        Ok(Ok(_)) => continue,
                        _ => {
                            let _ = tokio::time::timeout(NETWORK_PROBE, client.close()).await;
                            break (NETWORK_CHANGED.to_owned(), true);
                        }
                    }
                }
                signal = incoming.recv() => match signal {
                    Some(signal) => signal,
                    None => break ("incoming signals ended".to_owned(), false),
                },
            };
            // One check for everything the server brings: a stranger's offer,
            // candidate or relay request is dropped here, before the WebRTC
            // endpoint or the relay sees it.
            if !manager.admits(&signal.from, signal.kind.as_str()) {
                continue;
            }
            if signal.kind == SignalKind::Ready {
                if signal.body.get("relay").and_then(|v| v.as_bool()) == Some(true) {
                    accept_relay(manager.clone(), client.clone(), signal.from);
                }
                continue;
            }
            // Backpressure rather than loss: the endpoint reads promptly.
            if webrtc.send(signal).await.is_err() {
                return;
            }
        };
        *current.write().unwrap_or_else(|e| e.into_inner()) = None;
        warn!(%url, %reason, "signaling connection ended; registering again");
        report.set(url, LinkState::Disconnected(reason));
        // After a network change the old path is gone, not the server: the
        // same URL again, at once.
        if network_changed {
            next -= 1;
            continue;
        }
        // A registration that lasted starts a fresh round of the URLs, at once;
        // one that died young counts as a failure, so servers that accept and
        // drop at once are not hammered (but the delay stays a few seconds at
        // most: a server restarting often is not a peer to cool down on).
        let delay = backoff.on_closed(Instant::now(), unit());
        failed = if registered_at.elapsed() >= LASTING_REGISTRATION { 1 } else { failed + 1 };
        if failed >= urls.len() {
            sleep_until(delay).await;
        }
    }
}

fn accept_relay(manager: ConnectionManager, client: SignalingClient, peer: DeviceId) {
    tokio::spawn(async move {
        match client.open_relay(&peer, RELAY_WAIT).await {
            Ok(socket) => {
                if let Err(err) = manager.accept(Box::new(socket)).await {
                    debug!(%peer, %err, "relayed connection not kept");
                }
            }
            Err(err) => debug!(%peer, %err, "relay asked for could not open"),
        }
    });
}

async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(at.into()).await;
}

/// A uniform random number in [0, 1) for backoff jitter.
pub(crate) fn unit() -> f64 {
    f64::from(OsRng.next_u32()) / (f64::from(u32::MAX) + 1.0)
}

/// A registration that another supervisor keeps up (a transfer by code's,
/// `transfer::reconnect`), as [`ServerSignaling::over_registration`] uses it.
#[async_trait]
pub(crate) trait Registration: Send + Sync + std::fmt::Debug {
    /// The registered client, waiting a while (bounded) for a registration under way.
    async fn registered(&self) -> Result<SignalingClient, String>;
}

/// The WebRTC `Signaling` trait over the signaling server's client.
///
/// Signals are sent with a time to live, so an offer to a device that is offline
/// waits in the server's queue only as long as the dialer does.
#[derive(Debug)]
pub struct ServerSignaling {
    device: DeviceId,
    current: Current,
    /// The link's state, to wait for a registration in progress (`None`: a
    /// single client, nothing to wait for).
    state: Option<watch::Receiver<LinkState>>,
    incoming: Mutex<mpsc::Receiver<peers_signaling::DeliveredSignal>>,
    ttl: Duration,
    /// The link's allow list (`None`: a single client, which keeps none).
    allow: Option<Arc<AllowSync>>,
    /// Another supervisor's registration, asked for the client instead of `current`.
    registration: Option<Arc<dyn Registration>>,
}

impl ServerSignaling {
    /// WebRTC signaling over one registered `client`, without registering again
    /// or answering relay requests (for tools and transport tests; devices use
    /// [`SignalingServerLink`]). Takes the client's incoming signals: `None` if
    /// they were taken already.
    pub fn over_client(client: SignalingClient, signal_ttl: Duration) -> Option<ServerSignaling> {
        let incoming = client.incoming()?;
        let device = *client.device_id();
        let current: Current = Arc::new(std::sync::RwLock::new(Some(client)));
        Some(ServerSignaling {
            device,
            current,
            state: None,
            incoming: Mutex::new(incoming),
            ttl: signal_ttl,
            allow: None,
            registration: None,
        })
    }
}

impl ServerSignaling {
    /// WebRTC signaling over a registration that another supervisor keeps up (a
    /// transfer by code's, `transfer::reconnect`): `registration` hands out the
    /// registered client (a signal made while it registers again waits for it, as on
    /// the link), `incoming` is the signals of every registration.
    pub(crate) fn over_registration(
        device: DeviceId,
        registration: Arc<dyn Registration>,
        incoming: mpsc::Receiver<peers_signaling::DeliveredSignal>,
        signal_ttl: Duration,
    ) -> ServerSignaling {
        ServerSignaling {
            device,
            current: Current::default(),
            state: None,
            incoming: Mutex::new(incoming),
            ttl: signal_ttl,
            allow: None,
            registration: Some(registration),
        }
    }

    async fn client(&self) -> Result<SignalingClient, String> {
        if let Some(registration) = &self.registration {
            return registration.registered().await;
        }
        match &self.state {
            Some(state) => registered_client(&self.current, state).await,
            None => current_client(&self.current),
        }
        .map_err(|e| e.to_string())
    }
}

fn kind_to_server(kind: SignalKindName) -> SignalKind {
    match kind {
        SignalKindName::Offer => SignalKind::Offer,
        SignalKindName::Answer => SignalKind::Answer,
        SignalKindName::Candidate => SignalKind::IceCandidate,
        SignalKindName::Cancel => SignalKind::Cancel,
        SignalKindName::Error => SignalKind::Error,
    }
}

fn kind_from_server(kind: SignalKind) -> Option<SignalKindName> {
    Some(match kind {
        SignalKind::Offer => SignalKindName::Offer,
        SignalKind::Answer => SignalKindName::Answer,
        SignalKind::IceCandidate => SignalKindName::Candidate,
        SignalKind::Cancel => SignalKindName::Cancel,
        SignalKind::Error => SignalKindName::Error,
        _ => return None,
    })
}

#[async_trait]
impl Signaling for ServerSignaling {
    fn local_device(&self) -> DeviceId {
        self.device
    }

    async fn send(&self, to: DeviceId, signal: WebRtcSignal) -> peers_transport_webrtc::Result<()> {
        let kind = kind_to_server(signal.payload.kind_name());
        let outgoing = OutgoingSignal::new(to, kind, signal.body()).with_ttl(self.ttl);
        let client = self.client().await.map_err(Error::Signaling)?;
        if let Some(allow) = &self.allow {
            allow.before_contacting(&client, &to).await;
        }
        let sent = client.send_signal(outgoing).await.map_err(|e| Error::Signaling(e.to_string()))?;
        match sent.outcome {
            Outcome::Delivered | Outcome::Queued { .. } => Ok(()),
            Outcome::Expired => Err(Error::Signaling(format!("{to} is offline"))),
            Outcome::Rejected { reason } => Err(Error::Signaling(format!("server refused the signal: {reason:?}"))),
        }
    }

    async fn recv(&self) -> peers_transport_webrtc::Result<Option<IncomingSignal>> {
        let mut incoming = self.incoming.lock().await;
        loop {
            let Some(signal) = incoming.recv().await else { return Ok(None) };
            let Some(kind) = kind_from_server(signal.kind) else { continue };
            return match WebRtcSignal::from_body(kind, &signal.body) {
                Ok(parsed) => Ok(Some(IncomingSignal { from: signal.from, signal: parsed })),
                Err(reason) => Err(Error::InvalidSignal { from: signal.from, reason }),
            };
        }
    }

    async fn ice_servers(&self) -> peers_transport_webrtc::Result<Vec<IceServer>> {
        let client = self.client().await.map_err(Error::Signaling)?;
        let config = client.ice_config().await.map_err(|e| Error::Signaling(e.to_string()))?;
        Ok(config
            .ice_servers
            .into_iter()
            .map(|server| IceServer {
                urls: server.urls,
                username: server.username.unwrap_or_default(),
                credential: server.credential.unwrap_or_default(),
            })
            .collect())
    }
}

/// Dials devices through the signaling server's frame relay: asks the peer with a
/// `ready` signal, then opens the relay (both sides must ask).
#[derive(Debug, Clone)]
pub struct RelayDialer {
    device: DeviceId,
    current: Current,
    state: Option<watch::Receiver<LinkState>>,
    allow: Option<Arc<AllowSync>>,
}

#[async_trait]
impl Dialer for RelayDialer {
    fn name(&self) -> &str {
        "server-relay"
    }

    fn class_for(&self, device: &DeviceId) -> Option<ConnectionClass> {
        (*device != self.device).then_some(ConnectionClass::ServerRelay)
    }

    fn timeout(&self) -> Duration {
        RELAY_WAIT + Duration::from_secs(10)
    }

    async fn dial(&self, device: DeviceId) -> Result<BoxSocket, DialError> {
        let ask = OutgoingSignal::new(device, SignalKind::Ready, json!({ "relay": true })).with_ttl(RELAY_WAIT);
        let client = match &self.state {
            Some(state) => registered_client(&self.current, state).await?,
            None => current_client(&self.current)?,
        };
        if let Some(allow) = &self.allow {
            allow.before_contacting(&client, &device).await;
        }
        let sent = client.send_signal(ask).await.map_err(DialError::transport)?;
        if !matches!(sent.outcome, Outcome::Delivered) {
            return Err(DialError::Refused {
                reason: format!("the peer did not get the relay request: {:?}", sent.outcome),
            });
        }
        let socket = client.open_relay(&device, RELAY_WAIT).await.map_err(DialError::transport)?;
        Ok(Box::new(socket))
    }
}
