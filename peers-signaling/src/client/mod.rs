//! [`SignalingClient`]: a device's connection to the signaling server, over
//! `rust_socketio` 0.6.
//!
//! - Requests carry a `req` number and wait for the server's `"reply"` event
//!   (not socket.io acks: `rust_socketio` picks ack ids at random from 0..999
//!   and confuses acks whose ids collide). Every request has a timeout.
//! - Callbacks run in `rust_socketio`'s one polling task and never wait:
//!   incoming signals and events go into bounded channels with `try_send`; a
//!   full channel drops the item and says so with
//!   [`ClientEvent::Dropped`] (or a log line when the event channel itself is
//!   full), so a caller that stops reading cannot stall replies.
//! - It never reconnects. `rust_socketio` reports a connection that simply
//!   ends only to its reconnect logic, so reconnection stays on with one
//!   attempt whose callback records the close and hands back an empty address
//!   (the attempt then fails before any I/O), the same way
//!   `peers-transport-socketio`'s client does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use peers_sdk::{DeviceId, DeviceKeys};
use rand_core::{OsRng, RngCore};
use rust_socketio::Payload;
use rust_socketio::asynchronous::Client;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

mod allow;
mod callbacks;
mod pace;
mod relay;
mod sessions;

pub use relay::RelaySocket;
pub use sessions::{CreatedSession, JoinedSession};

use relay::RelayCore;

use crate::error::{Error, Result};
use crate::protocol::IceConfig;
use crate::protocol::{self, AllowList, Challenge, DEFAULT_NAMESPACE, OutcomeKind, Rejection, SignalKind, events};

/// Settings of [`SignalingClient::connect`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SignalingClientOptions {
    /// The server's namespace. Default: `/signaling`.
    pub namespace: String,
    /// Dialing, the challenge and registration must finish within this time.
    /// Default: 10 s.
    pub connect_timeout: Duration,
    /// Each request waits at most this long for its reply. Default: 10 s.
    pub request_timeout: Duration,
    /// Incoming signals buffered until [`SignalingClient::incoming`]'s
    /// receiver reads them. Default: 256.
    pub incoming_capacity: usize,
    /// Events buffered until [`SignalingClient::events`]' receiver reads them.
    /// Default: 256.
    pub events_capacity: usize,
    /// Requests waiting for a reply at once; more fail at once. Default: 1024.
    pub max_in_flight: usize,
    /// The devices that may reach this one through the server (signals,
    /// presence, relays), sent signed with the registration; an empty list:
    /// nobody. Default: `None`, everyone may. Replace it later with
    /// [`SignalingClient::set_allow`].
    pub allow: Option<AllowList>,
}

impl Default for SignalingClientOptions {
    fn default() -> Self {
        SignalingClientOptions {
            namespace: DEFAULT_NAMESPACE.into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            incoming_capacity: 256,
            events_capacity: 256,
            max_in_flight: 1024,
            allow: None,
        }
    }
}

/// What became of a sent signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Handed to the recipient's connection.
    Delivered,
    /// Waiting in the recipient's queue until this time (unix milliseconds).
    Queued {
        /// When it expires unless the recipient registers first.
        expires_at: u64,
    },
    /// Not delivered in time (the recipient was offline and the time to live
    /// ran out, or was 0).
    Expired,
    /// Refused; nothing was queued.
    Rejected {
        /// The server's code and reason.
        reason: Rejection,
    },
}

/// A signal accepted for sending: its id and its first outcome. Later
/// outcomes arrive as [`ClientEvent::Outcome`] with the same id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The message id.
    pub id: String,
    /// The server's first outcome.
    pub outcome: Outcome,
}

/// A signal to send, with the optional settings.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OutgoingSignal {
    /// The recipient.
    pub to: DeviceId,
    /// The kind.
    pub kind: SignalKind,
    /// The body (a JSON object; see `docs/signaling.md` for each kind).
    pub body: Value,
    /// The message id; generated when `None`.
    pub id: Option<String>,
    /// How long it may wait for an offline recipient; the server's default
    /// when `None`, capped at its maximum. Zero: deliver now or expire.
    pub ttl: Option<Duration>,
}

impl OutgoingSignal {
    /// A signal with a generated id and the server's default time to live.
    pub fn new(to: DeviceId, kind: SignalKind, body: Value) -> Self {
        OutgoingSignal { to, kind, body, id: None, ttl: None }
    }

    /// Sets the time to live.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the message id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// A signal from another device.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DeliveredSignal {
    /// The sender's message id.
    pub id: String,
    /// The sender, as the server authenticated it.
    pub from: DeviceId,
    /// The kind.
    pub kind: SignalKind,
    /// The body.
    pub body: Value,
    /// When the server accepted it (unix milliseconds).
    pub sent_at: u64,
    /// Whether it waited in the offline queue.
    pub queued: bool,
}

/// Everything but incoming signals.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A watched device came online or went offline.
    Presence {
        /// The device.
        device: DeviceId,
        /// Whether it is online now.
        online: bool,
    },
    /// A later outcome of a signal this device sent: delivered from the queue,
    /// or expired undelivered.
    Outcome {
        /// The message id.
        id: String,
        /// The recipient.
        to: DeviceId,
        /// [`Outcome::Delivered`] or [`Outcome::Expired`].
        outcome: Outcome,
    },
    /// A notice from the server (for instance `replaced` before it
    /// disconnects this connection).
    Notice(Rejection),
    /// An incoming signal was dropped because the incoming channel was full.
    Dropped {
        /// Its id.
        id: String,
        /// Its sender.
        from: DeviceId,
    },
    /// A session of this device changed state (joined, closed, expired).
    Session {
        /// The session.
        transfer_id: String,
        /// Its new state.
        state: crate::protocol::SessionState,
        /// The other party, when there is one.
        peer: Option<DeviceId>,
        /// Why it closed.
        reason: Option<String>,
    },
    /// The connection closed; the client is unusable from now on.
    Closed {
        /// Why.
        reason: String,
    },
}

/// A device's connection to the signaling server. Cheap to clone; every
/// clone is the same connection. Dropping the last clone disconnects.
#[derive(Clone, Debug)]
pub struct SignalingClient {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    device_id: DeviceId,
    shared: Arc<Shared>,
    options: SignalingClientOptions,
    next_req: AtomicU64,
    next_message: AtomicU64,
    message_prefix: String,
    incoming: Mutex<Option<mpsc::Receiver<DeliveredSignal>>>,
    events: Mutex<Option<mpsc::Receiver<ClientEvent>>>,
    /// Signs `"allow"` requests; held across one so counters go out in order.
    allow_signer: tokio::sync::Mutex<Option<allow::AllowSigner>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingClient")
            .field("device_id", &self.device_id)
            .field("closed", &*self.shared.closed.borrow())
            .finish_non_exhaustive()
    }
}

/// What the callbacks share with the client.
#[derive(Debug)]
struct Shared {
    pending: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    challenge: Mutex<Option<oneshot::Sender<Challenge>>>,
    incoming: mpsc::Sender<DeliveredSignal>,
    events: mpsc::Sender<ClientEvent>,
    closed: watch::Sender<Option<String>>,
    /// Open relays by id.
    relays: Mutex<HashMap<u64, Arc<RelayCore>>>,
    /// `open_relay` calls waiting for their relay, by peer.
    relay_waiters: Mutex<HashMap<DeviceId, oneshot::Sender<Arc<RelayCore>>>>,
    /// The budget every relay's events are paced to (the server's rate for
    /// this device is one for all its relays).
    relay_pacer: Arc<Mutex<pace::Pacer>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn event(&self, event: ClientEvent) {
        if self.events.try_send(event).is_err() {
            warn!("signaling client event channel full or gone; event dropped");
        }
    }

    /// Records the close (first reason wins), fails every pending request and
    /// tells the event channel.
    fn close(&self, reason: impl Into<String>) {
        let reason = reason.into();
        let first = self.closed.send_if_modified(|state| {
            if state.is_none() {
                *state = Some(reason.clone());
                true
            } else {
                false
            }
        });
        if first {
            debug!(%reason, "signaling client closed");
            lock(&self.pending).clear();
            lock(&self.challenge).take();
            lock(&self.relay_waiters).clear();
            let relays: Vec<Arc<RelayCore>> = lock(&self.relays).drain().map(|(_, core)| core).collect();
            for core in relays {
                core.close_quietly(peers_sdk::CloseReason::new(
                    peers_sdk::CloseCode::TransportFailure,
                    format!("signaling connection closed: {reason}"),
                ));
            }
            self.event(ClientEvent::Closed { reason });
        }
    }

    fn closed_error(&self) -> Error {
        Error::Closed { reason: self.closed.borrow().clone().unwrap_or_else(|| "closed".into()) }
    }
}

impl SignalingClient {
    /// Dials `url` (`http://host:port`, `https://…`), answers the server's
    /// challenge with a signature by `keys` and returns once registered. Never
    /// reconnects: when the connection ends, [`events`](Self::events) says
    /// [`ClientEvent::Closed`] and every call fails with [`Error::Closed`].
    pub async fn connect(url: &str, keys: &DeviceKeys, options: SignalingClientOptions) -> Result<SignalingClient> {
        let invalid_url = |detail: String| Error::InvalidUrl { url: url.to_owned(), detail };
        let parsed = url::Url::parse(url).map_err(|e| invalid_url(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https" | "ws" | "wss") {
            return Err(invalid_url("scheme must be http, https, ws or wss".into()));
        }
        if !options.namespace.starts_with('/') {
            return Err(Error::InvalidConfig { field: "namespace", detail: "must start with '/'".into() });
        }
        let (incoming_tx, incoming_rx) = mpsc::channel(options.incoming_capacity.max(1));
        let (events_tx, events_rx) = mpsc::channel(options.events_capacity.max(1));
        let (challenge_tx, challenge_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            challenge: Mutex::new(Some(challenge_tx)),
            incoming: incoming_tx,
            events: events_tx,
            closed: watch::Sender::new(None),
            relays: Mutex::new(HashMap::new()),
            relay_waiters: Mutex::new(HashMap::new()),
            relay_pacer: Arc::default(),
        });
        let ended = shared.clone();
        let builder = peers_transport_socketio::client_builder(parsed.as_str(), &options.namespace, move |why| {
            ended.close(why);
        });
        let builder = callbacks::callbacks(builder, &shared);
        let connect_error = |detail: String| Error::Connect { url: url.to_owned(), detail };
        let timeout = options.connect_timeout;
        let client = match tokio::time::timeout(timeout, builder.connect()).await {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => return Err(connect_error(err.to_string())),
            Err(_) => return Err(Error::Timeout { what: "connecting to the signaling server", after: timeout }),
        };
        let mut prefix = [0u8; 6];
        OsRng.fill_bytes(&mut prefix);
        let inner = Arc::new(Inner {
            client,
            device_id: keys.device_id(),
            shared: shared.clone(),
            options,
            next_req: AtomicU64::new(1),
            next_message: AtomicU64::new(1),
            message_prefix: prefix.iter().map(|b| format!("{b:02x}")).collect(),
            incoming: Mutex::new(Some(incoming_rx)),
            events: Mutex::new(Some(events_rx)),
            allow_signer: tokio::sync::Mutex::new(None),
        });
        let this = SignalingClient { inner };
        // Dropping `this` on an error below disconnects.
        let mut closed = shared.closed.subscribe();
        let challenge = tokio::select! {
            challenge = tokio::time::timeout(timeout, challenge_rx) => match challenge {
                Ok(Ok(challenge)) => challenge,
                Ok(Err(_)) => return Err(shared.closed_error()),
                Err(_) => return Err(Error::Timeout { what: "the server's challenge", after: timeout }),
            },
            _ = closed.wait_for(Option::is_some) => return Err(shared.closed_error()),
        };
        let allow = this.inner.options.allow.as_ref();
        let request = protocol::answer_challenge_allowing(keys, &challenge, url, allow)
            .map_err(|detail| Error::Protocol { what: "challenge", detail })?;
        *this.inner.allow_signer.lock().await = Some(allow::AllowSigner::new(keys, &challenge.nonce, url)?);
        let request = serde_json::to_value(request)
            .map_err(|err| Error::Protocol { what: "register request", detail: err.to_string() })?;
        let reply = this.request_as(events::REGISTER, "registration", request).await?;
        let registered = reply.get("device_id").and_then(Value::as_str).unwrap_or_default();
        if registered != keys.device_id().to_string() {
            return Err(Error::Protocol {
                what: "register reply",
                detail: format!("server registered {registered:?}, not this device"),
            });
        }
        debug!(device = %keys.device_id(), "registered with the signaling server");
        Ok(this)
    }

    /// This device's id.
    pub fn device_id(&self) -> &DeviceId {
        &self.inner.device_id
    }

    /// Sends a signal with a generated id and the server's default time to
    /// live; resolves with the server's first outcome. A refusal is
    /// [`Outcome::Rejected`]; `Err` means the request itself failed (closed,
    /// timed out).
    pub async fn send(&self, to: &DeviceId, kind: SignalKind, body: Value) -> Result<Sent> {
        self.send_signal(OutgoingSignal::new(*to, kind, body)).await
    }

    /// Sends a signal with the given settings (id, time to live).
    pub async fn send_signal(&self, signal: OutgoingSignal) -> Result<Sent> {
        let id = match signal.id {
            Some(id) => id,
            None => {
                format!("{}-{}", self.inner.message_prefix, self.inner.next_message.fetch_add(1, Ordering::Relaxed))
            }
        };
        protocol::validate_message_id(&id)
            .map_err(|r| Error::InvalidInput { what: "message id", detail: r.message })?;
        let mut request =
            json!({ "id": id, "to": signal.to.to_string(), "kind": signal.kind.as_str(), "body": signal.body });
        if let Some(ttl) = signal.ttl {
            request["ttl_ms"] = Value::from(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        }
        let outcome = match self.request(events::SIGNAL, request).await? {
            Ok(fields) => {
                match fields.get("outcome").and_then(|o| serde_json::from_value::<OutcomeKind>(o.clone()).ok()) {
                    Some(OutcomeKind::Delivered) => Outcome::Delivered,
                    Some(OutcomeKind::Expired) => Outcome::Expired,
                    Some(OutcomeKind::Queued) => Outcome::Queued {
                        expires_at: fields.get("expires_at").and_then(Value::as_u64).unwrap_or_default(),
                    },
                    None => return Err(Error::Protocol { what: "signal reply", detail: "no outcome".into() }),
                }
            }
            Err(reason) => Outcome::Rejected { reason },
        };
        Ok(Sent { id, outcome })
    }

    /// The incoming signals, in arrival order. The receiver is handed out once
    /// (`None` after that); it holds [`SignalingClientOptions::incoming_capacity`]
    /// signals, beyond which new ones are dropped with
    /// [`ClientEvent::Dropped`].
    pub fn incoming(&self) -> Option<mpsc::Receiver<DeliveredSignal>> {
        lock(&self.inner.incoming).take()
    }

    /// Presence changes, later outcomes (expiry notices), server notices and
    /// the close. Handed out once, bounded like [`incoming`](Self::incoming).
    pub fn events(&self) -> Option<mpsc::Receiver<ClientEvent>> {
        lock(&self.inner.events).take()
    }

    /// Watches `devices`' presence; returns those online now. Changes arrive
    /// as [`ClientEvent::Presence`].
    pub async fn subscribe_presence(&self, devices: &[DeviceId]) -> Result<Vec<DeviceId>> {
        let names: Vec<String> = devices.iter().map(ToString::to_string).collect();
        let reply = self.request_as(events::SUBSCRIBE, "subscription", json!({ "devices": names })).await?;
        let online = reply.get("online").and_then(Value::as_array).cloned().unwrap_or_default();
        online
            .iter()
            .map(|d| {
                d.as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| Error::Protocol { what: "subscribe reply", detail: "bad device id".into() })
            })
            .collect()
    }

    /// Stops watching `devices`.
    pub async fn unsubscribe_presence(&self, devices: &[DeviceId]) -> Result<()> {
        let names: Vec<String> = devices.iter().map(ToString::to_string).collect();
        self.request_as(events::UNSUBSCRIBE, "unsubscription", json!({ "devices": names })).await.map(|_| ())
    }

    /// The ICE servers to use, with fresh TURN credentials when the server
    /// has a TURN server configured.
    pub async fn ice_config(&self) -> Result<IceConfig> {
        let reply = self.request_as(events::ICE_CONFIG, "ice configuration", json!({})).await?;
        serde_json::from_value(Value::Object(reply))
            .map_err(|e| Error::Protocol { what: "ice-config reply", detail: e.to_string() })
    }

    /// Sends any request (`payload` must be a JSON object; `req` is added) and
    /// waits for its reply: the reply's fields, or the server's rejection.
    /// For protocol extensions and tests.
    pub async fn request(&self, event: &str, payload: Value) -> Result<Result<Map<String, Value>, Rejection>> {
        let shared = &self.inner.shared;
        let Value::Object(mut object) = payload else {
            return Err(Error::InvalidInput { what: "request", detail: "payload must be a JSON object".into() });
        };
        if shared.closed.borrow().is_some() {
            return Err(shared.closed_error());
        }
        let req = self.inner.next_req.fetch_add(1, Ordering::Relaxed);
        object.insert("req".into(), Value::from(req));
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&shared.pending);
            if pending.len() >= self.inner.options.max_in_flight {
                return Err(Error::InvalidInput {
                    what: "request",
                    detail: format!("{} requests already wait for replies", pending.len()),
                });
            }
            pending.insert(req, tx);
        }
        let forget = || {
            lock(&shared.pending).remove(&req);
        };
        let timeout = self.inner.options.request_timeout;
        // The emit is inside the timeout too: it waits for the WebSocket write.
        let exchange = async {
            self.inner
                .client
                .emit(event.to_owned(), Payload::Text(vec![Value::Object(object)]))
                .await
                .map_err(|err| Error::Closed { reason: format!("emit failed: {err}") })?;
            rx.await.map_err(|_| shared.closed_error())
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(value)) => protocol::parse_reply(value).map_err(|detail| Error::Protocol { what: "reply", detail }),
            Ok(Err(err)) => {
                forget();
                Err(err)
            }
            Err(_) => {
                forget();
                Err(Error::Timeout { what: "a reply from the signaling server", after: timeout })
            }
        }
    }

    pub(crate) async fn request_as(
        &self,
        event: &'static str,
        what: &'static str,
        payload: Value,
    ) -> Result<Map<String, Value>> {
        self.request(event, payload).await?.map_err(|rejection| Error::Refused { what, rejection })
    }

    /// Opens a frame relay with `peer` through the server, the last resort
    /// when no direct transport works. `peer` must ask for this device too
    /// (within the server's wait, 30 s by default); this call waits at most
    /// `timeout` for that. Run a peers `Connection` over the socket: its AEAD
    /// keeps the frames secret from the server.
    pub async fn open_relay(&self, peer: &DeviceId, timeout: Duration) -> Result<RelaySocket> {
        let shared = &self.inner.shared;
        let (tx, rx) = oneshot::channel();
        {
            let mut waiters = lock(&shared.relay_waiters);
            if waiters.contains_key(peer) {
                return Err(Error::InvalidInput {
                    what: "relay",
                    detail: format!("already opening a relay with {peer}"),
                });
            }
            waiters.insert(*peer, tx);
        }
        let forget = || {
            lock(&shared.relay_waiters).remove(peer);
        };
        if let Err(err) = self.request_as(events::RELAY_OPEN, "relay", json!({ "peer": peer.to_string() })).await {
            forget();
            return Err(err);
        }
        let core = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(core)) => core,
            Ok(Err(_)) => return Err(shared.closed_error()),
            Err(_) => {
                forget();
                return Err(Error::Timeout { what: "the other device to open the relay", after: timeout });
            }
        };
        let id = core.id;
        let weak = Arc::downgrade(shared);
        let on_end = Box::new(move || {
            if let Some(shared) = weak.upgrade() {
                lock(&shared.relays).remove(&id);
            }
        });
        Ok(RelaySocket::start(core, self.inner.client.clone(), on_end))
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.closed.borrow().is_some()
    }

    /// Waits until the connection closes and returns why.
    pub async fn closed(&self) -> String {
        let mut closed = self.inner.shared.closed.subscribe();
        match closed.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "client dropped".into(),
        }
    }

    /// Disconnects. Pending requests fail with [`Error::Closed`].
    pub async fn close(&self) {
        self.inner.shared.close("closed by this client");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.client.disconnect()).await;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.close("client dropped");
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            runtime.spawn(async move {
                let _ = client.disconnect().await;
            });
        }
    }
}
