//! Redis mode: several server instances share one Redis ([`StoreConfig::Redis`](crate::store::StoreConfig::Redis)).
//!
//! Redis is the authority for the queue, the outcome notices, presence,
//! sessions (`cluster_sessions.rs`) and the shared rate budgets
//! ([`RedisState`]; a device's request budget is held by the instance that
//! holds the device, an address's is leased: `cluster_budgets.rs`);
//! deliveries cross instances as
//! socket.io room broadcasts through `socketioxide-redis`. Every registered
//! socket joins the room `d:<device id>`; a socket watching a device joins
//! `w:<device id>`.
//!
//! ```text
//!  register ─▶ claim presence "pending" ─(an older connection held it)─▶ "replaced" + disconnect to d:<dev>
//!     │ join d:<dev>, announce online to w:<dev> (if it was offline)
//!     ▼
//!  take a batch of the queue ─(non-empty)─▶ emit each, "delivered" notice to its sender ─┐
//!     │ (empty: the script turns presence "up" atomically)  ◀─────────────────────────────┘
//!     ▼
//!  notices kept for this device ─▶ emitted
//!
//!  signal ─▶ recipient held here, "up", allows the sender ─▶ its connection (delivered, no Redis)
//!     │ otherwise
//!     ▼
//!  queue.lua: recipient "up" ─▶ emit to d:<to> (delivered)
//!             otherwise ─▶ queued / expired (ttl 0) / queue_full
//! ```
//!
//! A sender that sees the recipient "pending" queues: the registration's
//! drain loop takes it, so a direct delivery never overtakes queued messages.
//! Each instance refreshes the presence of the devices it holds (a third of
//! `presence_ttl`), and stays subscribed to its own `P:alive:<instance>`
//! channel: before delivering to a device another instance holds, the
//! sender checks that channel still has a subscriber (looking again for half
//! a second if not: a slot move empties it for a moment), so a crashed instance's
//! devices count as offline as soon as Redis sees its connection close (and
//! at the latest when their presence runs out).
//! Each instance also runs the expiry loop; the expiry index hands each due
//! message to one instance, which tells its sender.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use axum::Router;
use peers_sdk::DeviceId;
use rand_core::{OsRng, RngCore};
use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::operators::BroadcastOperators;
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};
use tracing::{debug, info, warn};

use super::cluster_budgets::{AddressLeases, Gcra, Rate};
use super::cluster_held::HeldDevices;
use super::cluster_relay::{self, ClusterRelays};
use super::config::ServerConfig;
use super::connection::{self, Connection, Replier, lock, registered_reply, registration_refused};
use super::hub::{CheckedSignal, Peer, incoming};
use super::state::{Charge, SignalOutcome};
use super::state_redis::RedisBackend;
use super::{AnyIo, Shared, SignalingServer, metrics as m, now_ms};
use super::{cluster_presence, cluster_sessions};
use crate::error::Error;
use crate::protocol::{AllowList, DeliveredSignalWire, ErrorCode, OutcomeKind, OutcomeNotice, Rejection, events};
use crate::queue::QueuedMessage;
use crate::ratelimit::RateLimits;
use crate::sessions::SessionLimits;
use crate::store::StoreConfig;
use crate::store::redis::{NotifyOutcome, PubSubDriver, RedisClient, RedisState, SendOutcome};

/// Connects to Redis and registers the namespace on a `SocketIo` with the
/// Redis adapter: the server and its routes, for [`SignalingServer::bind`].
pub(super) async fn attach(config: ServerConfig) -> Result<(SignalingServer, Router), Error> {
    let StoreConfig::Redis { url, cluster, key_prefix, presence_ttl } = &config.store else {
        return Err(Error::InvalidConfig { field: "store", detail: "not a Redis store".into() });
    };
    let client = RedisClient::open(url, *cluster)
        .map_err(|err| Error::InvalidConfig { field: "store.redis_url", detail: err.to_string() })?;
    let state =
        RedisState::connect(&client, key_prefix, config.queue.clone(), config.notices.clone(), *presence_ttl).await?;
    // The adapter's pub/sub messages wait in a bounded channel per subscribed
    // channel until its reader takes them, and one that finds it full is
    // dropped (`pubsub.rs`, logged): 8,192 (the crate's default is 1,024) is
    // about 4 s of signals between instances at P6's 2,000/s, a few MiB at
    // most, so a reader starved for a moment loses nothing.
    let adapter_config =
        RedisAdapterConfig::new().with_prefix(format!("{key_prefix}:socket.io")).with_stream_buffer(PUBSUB_BUFFER);
    let pubsub = PubSubDriver::connect(&client)
        .await
        .map_err(|err| Error::Redis { operation: "connect the socket.io adapter", detail: err.to_string() })?;
    let adapter = RedisAdapterCtr::new_with_driver(pubsub.clone(), adapter_config);
    let (layer, io) = SignalingServer::builder(&config).with_adapter::<RedisIo>(adapter).build_layer();
    let cluster = Cluster::start(state, pubsub, &config)
        .await
        .map_err(|err| Error::Redis { operation: "subscribe", detail: err.to_string() })?;
    let cluster = Arc::new(cluster);
    cluster.set_io(io.clone());
    let state = Arc::new(RedisBackend(cluster.clone()));
    let mut shared = SignalingServer::open_state(config, state)?;
    shared.cluster = Some(cluster);
    let shared = Arc::new(shared);
    io.ns(shared.config.namespace.clone(), connection::Namespace { shared: shared.clone() })
        .await
        .map_err(|err| Error::Redis { operation: "join the socket.io adapter", detail: err.to_string() })?;
    let server = SignalingServer::start(shared, AnyIo::Redis(io));
    let app = server.http_routes().layer(layer);
    Ok((server, app))
}

/// The socket.io adapter of Redis mode.
pub(crate) type RedisIo = socketioxide_redis::CustomRedisAdapter<socketioxide::adapter::Emitter, PubSubDriver>;

/// How long an instance's "alive" channel is looked at again (ten times)
/// after it was found without subscriber, before the instance's devices
/// count as offline: a slot move leaves the channel without subscriber
/// until the instance has subscribed it on the new node (milliseconds; as
/// long as the new node is slow to answer).
const ALIVE_GRACE: Duration = Duration::from_millis(500);
/// How often the expiry loop looks for due messages.
const EXPIRY_POLL: Duration = Duration::from_millis(200);
/// How often the shared sessions are checked for deadlines.
const SESSION_EXPIRY: Duration = Duration::from_secs(1);
/// How often stale notice boxes are swept.
const NOTICE_SWEEP: Duration = Duration::from_secs(30);

/// `N` random bytes as hex: instance names, lock tokens.
pub(super) fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn device_room(device: &DeviceId) -> String {
    format!("d:{device}")
}

/// The refusal for a request Redis could not serve; the request had no effect.
pub(super) fn unavailable(err: Error) -> Rejection {
    warn!(%err, "redis request failed");
    m::store_errors();
    Rejection::new(ErrorCode::Internal, "the shared store is unavailable; the request had no effect")
}

/// This instance's part of Redis mode.
pub(crate) struct Cluster {
    pub(crate) state: RedisState,
    /// The socket.io adapter's pub/sub connection (pinged by the heartbeat).
    pubsub: PubSubDriver,
    /// Random per start; names this instance in presence values.
    instance: String,
    namespace: String,
    io: OnceLock<SocketIo<RedisIo>>,
    /// The devices registered here: their connections, registration phase
    /// and request budgets (`cluster_held.rs`).
    pub(super) held: HeldDevices,
    /// This instance's leases of the address budgets (`cluster_budgets.rs`).
    pub(super) leases: Mutex<AddressLeases>,
    /// The request rate limits (the device and address budgets).
    pub(super) rate_limits: RateLimits,
    /// Keeps the "alive" subscription (nothing is ever published on it).
    _alive: MessageStream<ChanItem>,
    /// The limits of the shared sessions (for their expiry).
    sessions: SessionLimits,
    /// The relay legs of this instance's devices (`cluster_relay.rs`).
    pub(super) relays: ClusterRelays,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("instance", &self.instance).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Names this instance and subscribes its "alive" channel, which Redis
    /// drops the moment this process's connection closes.
    /// Also subscribes its relay channel (`P:relay:<instance>`).
    pub(crate) async fn start(
        state: RedisState,
        pubsub: PubSubDriver,
        config: &ServerConfig,
    ) -> Result<Cluster, redis::RedisError> {
        let instance = random_hex::<8>();
        let alive = pubsub.subscribe(state.alive_channel(&instance), 1).await?;
        let inbound =
            pubsub.subscribe_channel(state.relay_channel(&instance), cluster_relay::queue_size(&config.relay)).await?;
        Ok(Cluster {
            state,
            pubsub,
            instance,
            namespace: config.namespace.clone(),
            io: OnceLock::new(),
            held: HeldDevices::default(),
            leases: Mutex::new(AddressLeases::new(&config.rate_limits, config.max_connections)),
            rate_limits: config.rate_limits.clone(),
            _alive: alive,
            sessions: config.sessions.clone(),
            relays: ClusterRelays::new(config.relay.clone(), inbound),
        })
    }

    /// This instance's name (random per start).
    pub(super) fn instance(&self) -> &str {
        &self.instance
    }

    /// Gives the cluster the `SocketIo` its rooms live on (once, at start).
    pub(crate) fn set_io(&self, io: SocketIo<RedisIo>) {
        let _ = self.io.set(io);
    }

    /// The presence token of connection `peer_id` on this instance.
    pub(super) fn token(&self, peer_id: u64) -> String {
        presence_token(&self.instance, peer_id)
    }

    fn room(&self, room: String) -> Option<BroadcastOperators<RedisIo>> {
        Some(self.io.get()?.of(&self.namespace)?.to(room))
    }

    /// Emits to every socket in `room`, on any instance.
    async fn emit<T: Serialize + ?Sized>(&self, room: String, event: &'static str, data: &T) -> Result<(), String> {
        let Some(operators) = self.room(room) else { return Err("the namespace is gone".into()) };
        operators.emit(event, data).await.map_err(|err| err.to_string())
    }

    /// Emits to every socket in the rooms `to` and in none of `except`, on
    /// any instance (one broadcast).
    pub(super) async fn emit_rooms<T: Serialize + ?Sized>(
        &self,
        to: Vec<String>,
        except: Vec<String>,
        event: &'static str,
        data: &T,
    ) -> Result<(), String> {
        let operators = self.io.get().and_then(|io| io.of(&self.namespace)).map(|ns| ns.to(to).except(except));
        let Some(operators) = operators else { return Err("the namespace is gone".into()) };
        operators.emit(event, data).await.map_err(|err| err.to_string())
    }

    /// Emits `event` to `device`'s connection, on whatever instance holds it.
    pub(super) async fn tell<T: Serialize + ?Sized>(&self, device: &DeviceId, event: &'static str, data: &T) {
        if let Err(err) = self.emit(device_room(device), event, data).await {
            warn!(%device, event, %err, "could not reach the device");
        }
    }

    /// `device`'s connection, if `holder` (its presence value,
    /// `<instance>|<connection>|up`, or a presence token) names one of this
    /// instance's that is still open.
    fn local_holder(&self, shared: &Shared, device: &DeviceId, holder: &str) -> Option<Arc<Peer>> {
        let (instance, connection) = holder_connection(holder)?;
        (instance == self.instance).then_some(())?;
        shared.hub().peer(device).filter(|peer| peer.id == connection && peer.connected())
    }

    /// Whether the connection named in `holder` (a presence value of
    /// `device`) is still there. One of this instance's is while it holds
    /// the device (its presence can outlive it by the release's round trip,
    /// or longer when that fails). Another instance's is while that instance
    /// is alive (looked at for [`ALIVE_GRACE`]; on a Redis error it is taken
    /// as alive). A holder that is gone loses `device`'s presence (only if it
    /// is still that holder's), and the watchers hear "offline".
    async fn holder_alive(&self, device: &DeviceId, holder: &str) -> bool {
        let Some((instance, connection)) = holder_connection(holder) else { return true };
        if instance == self.instance {
            if self.held.holds(device, connection) {
                return true;
            }
            debug!(%device, connection, "the device's connection here closed; it is offline");
        } else {
            if self.instance_alive(instance).await {
                return true;
            }
            info!(%device, instance, "the device's instance is gone; it is offline");
        }
        // Its list goes with its presence: read it first.
        let allow = self.state.allow_list(device).await.ok().flatten();
        if let Ok(true) = self.state.release(device, &presence_token(instance, connection), None).await {
            cluster_presence::announce(self, device, false, allow.as_ref()).await;
        }
        false
    }

    /// Whether `instance` is alive. A channel is without its subscriber for a
    /// moment while its slot moves (it is subscribed again on the new node):
    /// it is looked at again for a while before the instance counts as gone.
    async fn instance_alive(&self, instance: &str) -> bool {
        let grace = tokio::time::Instant::now() + ALIVE_GRACE;
        loop {
            if !matches!(self.state.instance_alive(instance).await, Ok(false)) {
                return true;
            }
            if tokio::time::Instant::now() >= grace {
                return false;
            }
            tokio::time::sleep(ALIVE_GRACE / 10).await;
        }
    }

    /// Tells `sender` what became of its message: at once if it is up
    /// somewhere, otherwise kept in its notice box in Redis.
    async fn outcome(&self, now: u64, message: &QueuedMessage, outcome: OutcomeKind) {
        let notice = OutcomeNotice { id: message.id.clone(), to: message.to.to_string(), outcome, at: now };
        let sender = &message.from;
        let mut notified = self.state.notify(now, sender, &notice).await;
        if let Ok(NotifyOutcome::Online { holder }) = &notified
            && !self.holder_alive(sender, holder).await
        {
            // Its connection is gone: so is the presence now, and this keeps it.
            notified = self.state.notify(now, sender, &notice).await;
        }
        match notified {
            Ok(NotifyOutcome::Online { .. }) => {
                if let Err(err) = self.emit(device_room(sender), events::OUTCOME, &notice).await {
                    warn!(device = %sender, %err, "could not send an outcome notice");
                }
            }
            Ok(NotifyOutcome::Stored { dropped: 0 }) => {}
            Ok(NotifyOutcome::Stored { dropped }) => {
                warn!(device = %sender, dropped, "notice box full; oldest notices dropped");
                m::notices_dropped(dropped);
            }
            Ok(NotifyOutcome::Refused) => {
                warn!(device = %sender, id = %notice.id, "notices full overall; this notice was not kept");
                m::notices_dropped(1);
            }
            Err(err) => {
                warn!(device = %sender, id = %notice.id, %err, "could not keep an outcome notice");
                m::store_errors();
            }
        }
    }
}

/// Registers `device` (its signature already checked) on `conn` with its
/// allow list: presence, rooms, the queue and the notices, as drawn in the
/// module docs.
pub(super) async fn register(
    cluster: &Arc<Cluster>,
    conn: &Arc<Connection>,
    device: DeviceId,
    allow: Option<AllowList>,
    replier: Replier,
) {
    let token = cluster.token(conn.peer.id);
    // The list an older connection of the device set, if it is still online
    // (for the watchers the new list changes things for).
    let old_allow = cluster.state.allow_list(&device).await.ok().flatten();
    // No direct delivery to an older connection of the device here from now on.
    let held_here = cluster.held.registering(&device);
    let claimed = match cluster.state.claim(&device, &token, allow.as_ref()).await {
        Ok(claimed) => claimed,
        Err(err) => return registration_refused(conn, unavailable(err), replier),
    };
    let previous = claimed.previous;
    // The device's budget: as this instance held it, as the last release
    // left it, or, when a connection elsewhere still holds it, with its
    // burst spent (what it spent there since is not known yet).
    let budget = match (held_here, &previous) {
        (Some(budget), _) => budget,
        (None, Some(_)) => Gcra::moved(claimed.budget, now_ms(), Rate::device(&cluster.rate_limits)),
        (None, None) => Gcra::stored(claimed.budget),
    };
    let room = device_room(&device);
    if previous.is_some() {
        // An older connection (here or on another instance, or a crashed
        // instance's leftover) held the device: the new one wins.
        info!(%device, peer = conn.peer.id, "device registered again; replacing its old connection");
        let replaced = Rejection::new(ErrorCode::Replaced, "a newer connection registered this device");
        if let Err(err) = cluster.emit(room.clone(), events::NOTICE, &replaced).await {
            warn!(%device, %err, "could not tell the old connection it was replaced");
        }
        if let Some(operators) = cluster.room(room.clone())
            && let Err(err) = operators.disconnect().await
        {
            warn!(%device, %err, "could not disconnect the old connection");
        }
        m::replaced();
    }
    conn.bind(device);
    conn.shared.hub().bind_local(device, conn.peer.clone());
    if let Some(socket) = conn.peer.socket.upgrade() {
        socket.join_room(room);
    }
    cluster.held.hold(device, conn, budget);
    if !conn.peer.connected() {
        // It closed before it had a device, so its disconnect handler could
        // not clean up: do it here (both are idempotent).
        conn.shared.hub().unregister(&device, conn.peer.id);
        disconnected(&conn.shared, cluster, device, conn.peer.id, allow);
        return;
    }
    if previous.is_none() {
        cluster_presence::announce(cluster, &device, true, allow.as_ref()).await;
    } else {
        cluster_presence::allow_changed(cluster, &device, old_allow.as_ref(), allow.as_ref()).await;
    }
    *lock(&conn.allow) = allow;
    m::registered();
    let mut replier = Some(replier);
    let mut delivered = 0usize;
    loop {
        let batch = match cluster.state.take(&device, &token).await {
            Ok(batch) => batch,
            Err(err) => {
                // What is left stays queued; the device has to register again.
                let rejection = unavailable(err);
                if let Some(replier) = replier.take() {
                    replier.send(Err(rejection));
                }
                conn.peer.disconnect();
                return;
            }
        };
        if let Some(replier) = replier.take() {
            replier.send(Ok(registered_reply(&device, batch.len())));
        }
        if batch.is_empty() {
            // The take that found the queue empty turned the presence "up".
            cluster.held.up(&device, conn.peer.id);
            break;
        }
        let mut rest = batch.into_iter();
        while let Some(message) = rest.next() {
            if !conn.peer.emit_forced(events::INCOMING, &incoming(&message, true)) {
                let back: Vec<QueuedMessage> = std::iter::once(message).chain(rest).collect();
                warn!(%device, left = back.len(), "could not deliver the whole queue; the rest stays queued");
                if let Err(err) = cluster.state.requeue(&back).await {
                    warn!(%device, %err, lost = back.len(), "could not put undelivered messages back");
                    m::store_errors();
                }
                return;
            }
            delivered += 1;
            m::signal_outcome("delivered_from_queue");
            cluster.outcome(now_ms(), &message, OutcomeKind::Delivered).await;
        }
    }
    match cluster.state.take_notices(now_ms(), &device).await {
        Ok((notices, _stale)) => {
            for notice in &notices {
                conn.peer.emit_forced(events::OUTCOME, notice);
            }
        }
        Err(err) => {
            warn!(%device, %err, "could not read the notices kept for this device");
            m::store_errors();
        }
    }
    cluster_sessions::tell_joined(cluster, conn, &device).await;
    info!(%device, peer = conn.peer.id, delivered, "device registered");
}

/// The presence token of connection `peer_id` on `instance`: what a presence
/// value starts with (`presence.lua` adds `|pending` or `|up`).
fn presence_token(instance: &str, peer_id: u64) -> String {
    format!("{instance}|{peer_id}")
}

/// The instance and connection a presence value names.
fn holder_connection(holder: &str) -> Option<(&str, u64)> {
    let mut parts = holder.split('|');
    Some((parts.next()?, parts.next()?.parse().ok()?))
}

/// The first pause before a failed presence release is tried again (doubled
/// each time, at most [`RELEASE_RETRY_MAX`], while the presence would last).
const RELEASE_RETRY: Duration = Duration::from_millis(250);
const RELEASE_RETRY_MAX: Duration = Duration::from_secs(2);

/// The adapter's stream buffer: pub/sub messages held for one channel's reader.
const PUBSUB_BUFFER: usize = 8192;

/// Delivers, forwards or queues a checked signal; returns its first outcome.
///
/// A recipient held by this instance, its queue handed over and its allow
/// list letting the sender reach it, is handed the signal here, as one
/// instance does, without a call to Redis (`cluster_held.rs`); with the
/// request's budgets held here too (`cluster_budgets.rs`), such a signal
/// completes in the connection's read loop. Any other goes through Redis:
/// the request's `charge` and the recipient's lookup (`queue.lua`'s peek)
/// go out together, so a delivered signal waits one round trip; nothing is
/// delivered or queued before the charge is known. A recipient whose
/// connection this instance holds is still handed the signal here; one held
/// elsewhere gets it through the adapter's pub/sub.
pub(super) async fn signal(
    cluster: &Cluster,
    shared: &Shared,
    signal: CheckedSignal,
    charge: Charge<'_>,
) -> Result<SignalOutcome, Rejection> {
    let mut charge = Some(charge);
    if cluster.held.direct(&signal.to, &signal.from).is_some()
        && let Some(charge) = charge.take()
    {
        // Charged first (ready at once while the address's lease lasts); the
        // recipient is looked up again after it.
        connection::charged(charge.await)?;
        if let Some(peer) = cluster.held.direct(&signal.to, &signal.from) {
            deliver_here(&peer, wire(signal, now_ms()))?;
            return Ok(SignalOutcome { outcome: OutcomeKind::Delivered, expires_at: None });
        }
    }
    let now = now_ms();
    let message = QueuedMessage {
        seq: 0,
        to: signal.to,
        from: signal.from,
        origin: signal.origin,
        id: signal.id.clone(),
        kind: signal.kind,
        body: serde_json::to_string(&signal.body).unwrap_or_default(),
        sent_at: now,
        expires_at: now.saturating_add(signal.ttl_ms),
        // queue.lua shadows it if `to` does not allow `from`.
        shadowed: false,
    };
    let peek = cluster.state.peek(&message, signal.ttl_ms);
    let peeked = match charge {
        Some(charge) => {
            let (charged, peeked) = tokio::join!(charge, peek);
            connection::charged(charged)?;
            peeked
        }
        None => peek.await,
    };
    let peeked = peeked.map_err(unavailable)?;
    let mut sent = cluster.state.send_peeked(&message, peeked).await.map_err(unavailable)?;
    if let SendOutcome::Deliver { holder } = &sent
        && !cluster.holder_alive(&message.to, holder).await
    {
        // Its connection is gone: so is the presence now, and this queues it.
        sent = cluster.state.send(&message, signal.ttl_ms).await.map_err(unavailable)?;
    }
    match sent {
        SendOutcome::Deliver { holder } => {
            let wire = wire(signal, now);
            match cluster.local_holder(shared, &message.to, &holder) {
                Some(peer) => deliver_here(&peer, wire)?,
                None => {
                    if let Err(err) = cluster.emit(device_room(&message.to), events::INCOMING, &wire).await {
                        debug!(to = %message.to, %err, "delivery failed");
                        return Err(recipient_busy());
                    }
                    m::signal_outcome("delivered");
                }
            }
            Ok(SignalOutcome { outcome: OutcomeKind::Delivered, expires_at: None })
        }
        SendOutcome::Expired => {
            m::signal_outcome("expired");
            Ok(SignalOutcome { outcome: OutcomeKind::Expired, expires_at: None })
        }
        SendOutcome::Full(bound, usage) => Err(cluster.state.queue_limits().refusal(bound, &usage, message.size())),
        SendOutcome::Queued { seq } => {
            debug!(seq, id = %message.id, to = %message.to, "queued in redis");
            m::signal_outcome("queued");
            Ok(SignalOutcome { outcome: OutcomeKind::Queued, expires_at: Some(message.expires_at) })
        }
    }
}

/// What the recipient of `signal` gets.
fn wire(signal: CheckedSignal, sent_at: u64) -> DeliveredSignalWire {
    DeliveredSignalWire {
        id: signal.id,
        from: signal.from.to_string(),
        kind: signal.kind,
        body: signal.body,
        sent_at,
        queued: false,
    }
}

/// Hands a signal to its recipient's connection on this instance.
fn deliver_here(peer: &Peer, wire: DeliveredSignalWire) -> Result<(), Rejection> {
    if !peer.emit(events::INCOMING, &wire) {
        debug!(peer = peer.id, "delivery failed: its connection here is not taking messages");
        return Err(recipient_busy());
    }
    m::signal_outcome("delivered");
    Ok(())
}

fn recipient_busy() -> Rejection {
    Rejection::new(ErrorCode::RecipientBusy, "the recipient's connection is not taking messages")
}

/// Replaces `device`'s allow list (the request's signature is checked);
/// watchers that gain or lose sight of it are told.
pub(super) async fn set_allow(
    cluster: &Cluster,
    conn: &Connection,
    device: DeviceId,
    allow: Option<AllowList>,
) -> Result<(), Rejection> {
    let token = cluster.token(conn.peer.id);
    if !cluster.state.set_allow(&device, &token, allow.as_ref()).await.map_err(unavailable)? {
        return Err(Rejection::new(ErrorCode::Replaced, "a newer connection registered this device"));
    }
    let old = std::mem::replace(&mut *lock(&conn.allow), allow.clone());
    cluster_presence::allow_changed(cluster, &device, old.as_ref(), allow.as_ref()).await;
    Ok(())
}

/// Connection `peer_id` of `device` closed: ends its presence unless a newer
/// registration holds it, and tells the watchers.
pub(super) fn disconnected(
    shared: &Shared,
    cluster: &Arc<Cluster>,
    device: DeviceId,
    peer_id: u64,
    allow: Option<AllowList>,
) {
    let budget = cluster.held.release(&device, peer_id);
    cluster_relay::device_gone(shared, cluster, device, peer_id);
    let cluster = cluster.clone();
    tokio::spawn(async move {
        // Both at once: until the release, a signal from another instance
        // finds the device up and is sent to a connection that is gone. The
        // release keeps the device's budget for its next registration.
        let token = cluster.token(peer_id);
        let now = now_ms();
        let budget = budget.and_then(|budget| budget.state(now)).map(|tat| (now, tat));
        let (dropped, released) =
            tokio::join!(cluster.state.relay_drop(&device, &token), cluster.state.release(&device, &token, budget));
        if let Err(err) = dropped {
            warn!(%device, %err, "could not drop the relay requests; they lapse with relay.pending_wait");
        }
        if release_presence(&cluster, &device, &token, budget, released).await {
            info!(%device, "device offline");
            cluster_presence::announce(&cluster, &device, false, allow.as_ref()).await;
        }
    });
}

/// Whether `device` is offline once the release of its presence held by `token`
/// (`first`: the first try's result) is done. A release that fails is tried again
/// while the presence would last: until it ends, signals from other instances are
/// sent to nobody. A try that timed out may still have been carried out: after
/// one, "not ours to release" means gone, unless the device is online again.
async fn release_presence(
    cluster: &Cluster,
    device: &DeviceId,
    token: &str,
    budget: Option<(u64, f64)>,
    first: crate::Result<bool>,
) -> bool {
    let (mut released, mut pause, mut retried) = (first, RELEASE_RETRY, false);
    let give_up = tokio::time::Instant::now() + cluster.state.presence_ttl();
    loop {
        match released {
            Ok(true) => return true,
            Ok(false) => return retried && cluster.state.online(&[*device]).await.is_ok_and(|on| on.is_empty()),
            Err(err) if tokio::time::Instant::now() + pause < give_up => {
                debug!(%device, %err, ?pause, "could not end the presence; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RELEASE_RETRY_MAX);
                released = cluster.state.release(device, token, budget).await;
                retried = true;
            }
            Err(err) => {
                warn!(%device, %err, "could not end the presence; it runs out with presence_ttl");
                m::store_errors();
                return false;
            }
        }
    }
}

/// Keeps the presence of this instance's devices alive, and the pub/sub
/// connection awake. A device whose presence Redis lost (a restart without
/// its data, an outage longer than the presence's lifetime) is told and its
/// connection closed: registering again restores its allow list, hands it
/// what senders queued meanwhile, in order, and makes it reachable again.
pub(super) async fn run_heartbeat(cluster: Weak<Cluster>, shared: Weak<Shared>) {
    let every = cluster.upgrade().map_or(Duration::from_secs(1), |c| c.state.presence_ttl() / 3);
    loop {
        tokio::time::sleep(every).await;
        let (Some(cluster), Some(shared)) = (cluster.upgrade(), shared.upgrade()) else { return };
        let held: Vec<(DeviceId, String)> =
            cluster.held.connections().into_iter().map(|(device, peer)| (device, cluster.token(peer))).collect();
        match cluster.state.refresh(&held).await {
            Ok(refreshed) => {
                for (device, token) in refreshed.lost {
                    warn!(%device, "Redis lost this device's presence; closing its connection so it registers again");
                    let lost = "the server lost this registration (its store); register again";
                    close_held(&cluster, &shared, &device, &token, Rejection::new(ErrorCode::Internal, lost));
                    m::store_errors();
                }
                for (device, token) in refreshed.replaced {
                    // Its `replaced` broadcast did not arrive: until now this
                    // connection kept its signals and its own budget here.
                    info!(%device, "a newer connection holds this device; closing the old one");
                    let replaced = Rejection::new(ErrorCode::Replaced, "a newer connection registered this device");
                    close_held(&cluster, &shared, &device, &token, replaced);
                }
            }
            Err(err) => {
                warn!(%err, devices = held.len(), "presence heartbeat failed");
                m::store_errors();
            }
        }
        if let Err(err) = cluster.pubsub.ping().await {
            warn!(%err, "redis pub/sub connection is down; deliveries between instances wait for it");
        }
    }
}

/// Closes `device`'s connection here (registration `token`) with `notice`:
/// Redis lost its presence, or a newer connection holds it.
fn close_held(cluster: &Cluster, shared: &Shared, device: &DeviceId, token: &str, notice: Rejection) {
    let Some(peer) = cluster.local_holder(shared, device, token) else { return };
    peer.emit(events::NOTICE, &notice);
    peer.disconnect();
}

/// Expires due messages (telling their senders) and sessions, and sweeps
/// stale notice boxes.
pub(super) async fn run_expiry(cluster: Weak<Cluster>) {
    let mut next_sweep = tokio::time::Instant::now() + NOTICE_SWEEP;
    let mut next_sessions = tokio::time::Instant::now() + SESSION_EXPIRY;
    loop {
        let Some(strong) = cluster.upgrade() else { return };
        let now = now_ms();
        let more = match strong.state.expire(now).await {
            Ok(expired) => {
                for message in &expired {
                    debug!(id = %message.id, from = %message.from, to = %message.to, "queued message expired");
                    m::expired();
                    strong.outcome(now, message, OutcomeKind::Expired).await;
                }
                !expired.is_empty()
            }
            Err(err) => {
                warn!(%err, "expiry failed");
                m::store_errors();
                false
            }
        };
        if tokio::time::Instant::now() >= next_sessions {
            super::cluster_sessions::expire(&strong, &strong.sessions).await;
            next_sessions = tokio::time::Instant::now() + SESSION_EXPIRY;
        }
        if tokio::time::Instant::now() >= next_sweep {
            if let Err(err) = strong.state.sweep_notices(now).await {
                warn!(%err, "notice sweep failed");
            }
            next_sweep = tokio::time::Instant::now() + NOTICE_SWEEP;
        }
        drop(strong);
        if !more {
            tokio::time::sleep(EXPIRY_POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{holder_connection, presence_token};

    #[test]
    fn a_presence_value_names_its_instance_and_connection() {
        let token = presence_token("4f2a9c", 17);
        assert_eq!(holder_connection(&format!("{token}|up")), Some(("4f2a9c", 17)));
        assert_eq!(holder_connection(&format!("{token}|pending")), Some(("4f2a9c", 17)));
        assert_eq!(holder_connection(&token), Some(("4f2a9c", 17)));
        assert_eq!(holder_connection("4f2a9c"), None);
        assert_eq!(holder_connection("4f2a9c|x|up"), None);
    }
}
