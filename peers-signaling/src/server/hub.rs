//! The server's shared state: who is registered, who watches whom, the offline
//! queue and the notices, and the store they are written through to.
//!
//! One `std::sync::Mutex` guards it. Every operation is short and never awaits:
//! socketioxide's `emit` only queues a packet, and the store's writes are small
//! SQLite statements. Holding the lock across "register, reply, drain the
//! queue" is what keeps a device's messages in order: no direct relay can slip
//! between its queued messages.
//!
//! Nothing here disconnects a socket while the lock is held (socketioxide runs
//! the disconnect handler, which takes the lock, synchronously): disconnects
//! are returned to the caller as [`AfterUnlock`] work.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use peers_sdk::DeviceId;
use serde::Serialize;
use serde_json::{Map, Value};
use socketioxide::adapter::Adapter;
use socketioxide::extract::AckSender;
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;
use tracing::{debug, info, warn};

use super::metrics as m;
use super::outgoing::{OutgoingBudget, packet_len};
use super::session_requests::SessionHost;
use crate::notices::{NoticeBoxes, StoredNotice};
use crate::privacy::AllowLists;
use crate::protocol::{
    AllowList, DeliveredSignalWire, ErrorCode, OutcomeKind, OutcomeNotice, PresenceNotice, Rejection, SessionNotice,
    SignalKind, events,
};
use crate::queue::{NewMessage, OfflineQueue, QueuedMessage};
use crate::relay::RelayTable;
use crate::sessions::{CodeSession, SessionTable};
use crate::store::Store;

/// What the server needs of a socket.io socket, whatever its adapter (the
/// in-process one, or Redis when several instances share the state).
pub(crate) trait PeerSocket: Send + Sync + 'static {
    /// Queues `event` with one JSON argument for this socket.
    fn emit_json(&self, event: &'static str, data: &Value) -> Result<(), String>;
    /// Whether the socket is still connected.
    fn is_connected(&self) -> bool;
    /// Disconnects it (the disconnect handler runs synchronously).
    fn close(self: Arc<Self>);
    /// Answers the socket.io ack `ack_id` with `data`.
    fn ack(self: Arc<Self>, ack_id: Option<i64>, data: &Value);
    /// Adds the socket to a room (adapter-wide in Redis mode).
    #[cfg(feature = "redis")]
    fn join_room(&self, room: String);
    /// Removes the socket from a room.
    #[cfg(feature = "redis")]
    fn leave_room(&self, room: String);
}

impl<A: Adapter> PeerSocket for Socket<A> {
    fn emit_json(&self, event: &'static str, data: &Value) -> Result<(), String> {
        self.emit(event, data).map_err(|err| err.to_string())
    }

    fn is_connected(&self) -> bool {
        self.connected()
    }

    fn close(self: Arc<Self>) {
        let _ = self.disconnect();
    }

    fn ack(self: Arc<Self>, ack_id: Option<i64>, data: &Value) {
        let mut nothing = socketioxide::handler::Value::Str("".into(), None);
        let Ok(ack) = AckSender::<A>::from_message_parts(&self, &mut nothing, &ack_id);
        let _ = ack.send(data);
    }

    #[cfg(feature = "redis")]
    fn join_room(&self, room: String) {
        self.join(room);
    }

    #[cfg(feature = "redis")]
    fn leave_room(&self, room: String) {
        self.leave(room);
    }
}

/// One socket.io connection, as the hub sees it. It holds the socket weakly:
/// socketioxide keeps a socket's handlers (which hold the connection state)
/// until the socket is dropped, so a strong reference here would be a cycle.
pub(crate) struct Peer {
    /// Unique per server run.
    pub(crate) id: u64,
    pub(crate) socket: Weak<dyn PeerSocket>,
    /// The connection's outgoing byte budget (absent when the server is
    /// attached to a router that does not meter its connections).
    pub(crate) outgoing: Option<Outgoing>,
}

/// A connection's budget, and the namespace its packets name.
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    pub(crate) budget: Arc<OutgoingBudget>,
    pub(crate) namespace: Arc<str>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Peer {
    /// Queues `event` for the connection. A connection whose outgoing buffer
    /// would go over its byte limit gets nothing more: it is disconnected
    /// (it does not read), and `false` is returned.
    pub(crate) fn emit<T: Serialize + ?Sized>(&self, event: &'static str, data: &T) -> bool {
        self.emit_within(event, data, true)
    }

    /// Like [`emit`](Self::emit), but counted without a limit: the queued
    /// messages a registration takes (at most `queue.per_device_bytes`, bytes
    /// the server held for the device anyway).
    pub(crate) fn emit_forced<T: Serialize + ?Sized>(&self, event: &'static str, data: &T) -> bool {
        self.emit_within(event, data, false)
    }

    fn emit_within<T: Serialize + ?Sized>(&self, event: &'static str, data: &T, limited: bool) -> bool {
        let Some(socket) = self.socket.upgrade() else { return false };
        let sent = serde_json::to_value(data).map_err(|err| err.to_string()).and_then(|v| {
            if !self.admit(Some(event), None, &v, limited) {
                return Err("the connection's outgoing buffer is full".into());
            }
            socket.emit_json(event, &v)
        });
        match sent {
            Ok(()) => true,
            Err(err) => {
                debug!(peer = self.id, event, %err, "emit failed");
                false
            }
        }
    }

    /// Counts a packet against the connection's budget. Over the limit, the
    /// connection is disconnected (in a task of its own: the caller may hold
    /// the hub's lock) and `false` is returned.
    pub(crate) fn admit(&self, event: Option<&str>, ack: Option<i64>, data: &Value, limited: bool) -> bool {
        let Some(outgoing) = &self.outgoing else { return true };
        let len = packet_len(&outgoing.namespace, event, ack, data);
        if !limited {
            outgoing.budget.admit_always(len);
            return true;
        }
        if outgoing.budget.admit(len) {
            return true;
        }
        if outgoing.budget.close_once() {
            info!(
                peer = self.id,
                outstanding = outgoing.budget.outstanding(),
                "closing a connection that does not read"
            );
            m::slow_client("buffer_full");
            if let Some(socket) = self.socket.upgrade() {
                tokio::spawn(async move { socket.close() });
            }
        }
        false
    }

    pub(crate) fn connected(&self) -> bool {
        self.socket.upgrade().is_some_and(|s| s.is_connected())
    }

    /// Disconnects the socket; never call it with the hub locked.
    pub(crate) fn disconnect(&self) {
        if let Some(socket) = self.socket.upgrade() {
            socket.close();
        }
    }
}

/// Work to do once the lock is released.
#[derive(Debug, Default)]
#[must_use]
pub(crate) struct AfterUnlock {
    pub(crate) disconnect: Vec<Arc<Peer>>,
}

impl AfterUnlock {
    pub(crate) fn run(self) {
        for peer in self.disconnect {
            peer.disconnect();
        }
    }
}

/// A signal ready to forward: validated, sender authenticated.
#[derive(Debug)]
pub(crate) struct CheckedSignal {
    pub(crate) from: DeviceId,
    pub(crate) to: DeviceId,
    pub(crate) id: String,
    pub(crate) kind: SignalKind,
    pub(crate) body: Value,
    pub(crate) ttl_ms: u64,
    /// The sender's address group, for the per-address queue quota.
    pub(crate) origin: Option<std::net::IpAddr>,
}

#[derive(Debug)]
pub(crate) struct Hub {
    queue: OfflineQueue,
    notices: NoticeBoxes,
    sessions: SessionTable,
    relays: RelayTable,
    store: Box<dyn Store>,
    devices: HashMap<DeviceId, Arc<Peer>>,
    /// The allow lists of the registered devices that gave one.
    allow: AllowLists,
    /// device → the connections watching it, with their devices.
    watchers: HashMap<DeviceId, HashMap<u64, (Arc<Peer>, DeviceId)>>,
    /// connection → the devices it watches.
    watching: HashMap<u64, HashSet<DeviceId>>,
}

impl Hub {
    pub(crate) fn new(
        queue: OfflineQueue,
        notices: NoticeBoxes,
        sessions: SessionTable,
        relays: RelayTable,
        store: Box<dyn Store>,
    ) -> Self {
        Hub {
            queue,
            notices,
            sessions,
            relays,
            store,
            devices: HashMap::new(),
            allow: AllowLists::default(),
            watchers: HashMap::new(),
            watching: HashMap::new(),
        }
    }

    pub(crate) fn relays(&mut self) -> &mut RelayTable {
        &mut self.relays
    }

    pub(crate) fn relays_ref(&self) -> &RelayTable {
        &self.relays
    }

    /// Emits to `device`'s connection, if it is online.
    pub(crate) fn emit_to<T: Serialize + ?Sized>(&self, device: &DeviceId, event: &'static str, data: &T) -> bool {
        self.devices.get(device).is_some_and(|peer| peer.emit(event, data))
    }

    /// `device`'s connection on this instance, if it is registered here.
    #[cfg(feature = "redis")]
    pub(crate) fn peer(&self, device: &DeviceId) -> Option<Arc<Peer>> {
        self.devices.get(device).cloned()
    }

    /// Ends `device`'s relays (it went offline or was replaced) and tells the
    /// other parties.
    fn end_relays(&mut self, device: &DeviceId) {
        for ended in self.relays.device_gone(device) {
            super::relay_requests::tell_ended(self, &ended);
        }
        m::relays(self.relays.len());
    }

    pub(crate) fn queue_mut(&mut self) -> &mut OfflineQueue {
        &mut self.queue
    }

    /// The earliest deadline of a queued message or a session.
    pub(crate) fn next_expiry(&self) -> Option<u64> {
        [self.queue.next_expiry(), self.sessions.next_deadline(), self.relays.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Binds `device` to `peer`, with `allow` as its allow list. A previous
    /// connection of the same device is told it was replaced and
    /// disconnected (after the unlock); watchers it allows hear "online" only
    /// if the device was offline. `reply` runs before the queued messages go
    /// out; those from senders `allow` does not name move to the device's
    /// shadow queue instead (they expire there); then the outcome notices kept
    /// for it, then a `"session"` `joined` for each joined session it created
    /// (docs/signaling.md §6). Returns how many queued messages were delivered.
    pub(crate) fn register(
        &mut self,
        now: u64,
        device: DeviceId,
        peer: Arc<Peer>,
        allow: Option<AllowList>,
        reply: impl FnOnce(usize),
        after: &mut AfterUnlock,
    ) -> usize {
        self.expire(now);
        // Replacing a connection of its own, the device stays online: the
        // watchers the new list changes things for are told as for an "allow".
        self.set_allow(device, allow);
        let previous = self.devices.insert(device, peer.clone());
        match &previous {
            Some(old) if old.id != peer.id => {
                info!(%device, old = old.id, new = peer.id, "device registered again; replacing its old connection");
                old.emit(
                    events::NOTICE,
                    &Rejection::new(ErrorCode::Replaced, "a newer connection registered this device"),
                );
                after.disconnect.push(old.clone());
                m::replaced();
                // The old connection's relays cannot move to the new one.
                self.end_relays(&device);
            }
            Some(_) => {}
            None => self.announce(&device, true),
        }
        m::registered();
        let (queued, strangers): (Vec<QueuedMessage>, Vec<QueuedMessage>) =
            self.queue.take(&device).into_iter().partition(|message| self.allow.reaches(&message.from, &device));
        for moved in self.queue.shadow(strangers) {
            self.persist(|store| store.put_message(&moved));
        }
        reply(queued.len());
        let mut delivered = Vec::with_capacity(queued.len());
        let mut rest = queued.into_iter();
        while let Some(message) = rest.next() {
            if peer.emit_forced(events::INCOMING, &incoming(&message, true)) {
                self.outcome(now, &message.from, &message.id, &message.to, OutcomeKind::Delivered);
                m::signal_outcome("delivered_from_queue");
                delivered.push(message.seq);
            } else {
                // The new connection is already gone (or its buffer is full):
                // what is left stays queued, in order, for the next registration.
                let back: Vec<QueuedMessage> = std::iter::once(message).chain(rest).collect();
                warn!(%device, left = back.len(), "could not deliver the whole queue; the rest stays queued");
                self.queue.restore(back);
                break;
            }
        }
        let count = delivered.len();
        self.persist(|store| store.delete_messages(&delivered));
        let (notices, stale) = self.notices.take(now, &device);
        for stored in &notices {
            peer.emit_forced(events::OUTCOME, &stored.notice);
        }
        let gone: Vec<u64> = notices.iter().chain(&stale).map(|n| n.seq).collect();
        self.persist(|store| store.delete_notices(&gone));
        // A join while the creator was not registered (a server restart) was told
        // to nobody: the creator hears it now, as it would have live.
        for session in self.sessions.joined_by(&device, now) {
            peer.emit_forced(events::SESSION, &session_notice(&session, session.receiver.as_ref()));
        }
        self.gauges();
        count
    }

    /// The connection `peer_id` of `device` went away. Returns whether it was the
    /// device's current connection (and so the device is now offline).
    pub(crate) fn unregister(&mut self, device: &DeviceId, peer_id: u64) -> bool {
        let current = self.devices.get(device).is_some_and(|p| p.id == peer_id);
        if current {
            self.end_relays(device);
            self.devices.remove(device);
            self.announce(device, false);
            self.allow.set(*device, None);
        }
        current
    }

    /// Drops a connection's presence subscriptions; returns how many it had.
    pub(crate) fn forget_watcher(&mut self, peer_id: u64) -> usize {
        let watching = self.watching.remove(&peer_id).unwrap_or_default();
        let count = watching.len();
        for device in watching {
            if let Some(watchers) = self.watchers.get_mut(&device) {
                watchers.remove(&peer_id);
                if watchers.is_empty() {
                    self.watchers.remove(&device);
                }
            }
        }
        count
    }

    /// Tells the watchers `device` allows that it came online or went offline.
    fn announce(&self, device: &DeviceId, online: bool) {
        if let Some(watchers) = self.watchers.get(device) {
            let notice = PresenceNotice { device: device.to_string(), online };
            for (watcher, watcher_device) in watchers.values() {
                if self.allow.reaches(watcher_device, device) {
                    watcher.emit(events::PRESENCE, &notice);
                }
            }
        }
    }

    /// Replaces the allow list of `device` (registered here). Watchers that
    /// gain or lose sight of it hear it come online or go offline, as if it
    /// had.
    pub(crate) fn set_allow(&mut self, device: DeviceId, allow: Option<AllowList>) {
        if !self.devices.contains_key(&device) {
            self.allow.set(device, allow);
            return;
        }
        let watchers: Vec<(Arc<Peer>, DeviceId)> =
            self.watchers.get(&device).map(|w| w.values().cloned().collect()).unwrap_or_default();
        let saw: Vec<bool> = watchers.iter().map(|(_, d)| self.allow.reaches(d, &device)).collect();
        self.allow.set(device, allow);
        for ((peer, watcher), saw) in watchers.iter().zip(saw) {
            let sees = self.allow.reaches(watcher, &device);
            if sees != saw {
                peer.emit(events::PRESENCE, &PresenceNotice { device: device.to_string(), online: sees });
            }
        }
    }

    /// Where a request of `from` for `to` goes: `to`, or, if `to` does not
    /// allow `from`, its shadow (never online).
    pub(crate) fn address(&self, from: &DeviceId, to: &DeviceId) -> DeviceId {
        self.allow.address(from, to)
    }

    /// Adds `devices` to what `peer` (of `watcher`) watches, if `max` per
    /// connection and `admit` (given how many are new) allow; returns which
    /// are online (of those that allow `watcher`).
    pub(crate) fn subscribe(
        &mut self,
        peer: &Arc<Peer>,
        watcher: DeviceId,
        devices: &[DeviceId],
        max: usize,
        admit: impl FnOnce(usize) -> Result<(), Rejection>,
    ) -> Result<Vec<DeviceId>, Rejection> {
        let held = self.watching.get(&peer.id).map_or(0, HashSet::len);
        let new = devices
            .iter()
            .filter(|d| !self.watching.get(&peer.id).is_some_and(|w| w.contains(*d)))
            .collect::<HashSet<_>>()
            .len();
        if held + new > max {
            return Err(too_many_subscriptions(max, held));
        }
        admit(new)?;
        let watching = self.watching.entry(peer.id).or_default();
        for device in devices {
            watching.insert(*device);
            self.watchers.entry(*device).or_default().insert(peer.id, (peer.clone(), watcher));
        }
        let visible = |d: &&DeviceId| self.devices.contains_key(*d) && self.allow.reaches(&watcher, d);
        Ok(devices.iter().filter(visible).copied().collect())
    }

    /// Removes `devices` from what `peer` watches; returns how many it did.
    pub(crate) fn unsubscribe(&mut self, peer_id: u64, devices: &[DeviceId]) -> usize {
        let mut removed = 0;
        if let Some(watching) = self.watching.get_mut(&peer_id) {
            for device in devices {
                removed += usize::from(watching.remove(device));
                if let Some(watchers) = self.watchers.get_mut(device) {
                    watchers.remove(&peer_id);
                    if watchers.is_empty() {
                        self.watchers.remove(device);
                    }
                }
            }
        }
        removed
    }

    /// Forwards or queues a signal; returns the first outcome.
    /// A sender `signal.to` does not allow gets what a signal to a device that
    /// does not exist gets: its message waits in the shadow queue.
    pub(crate) fn forward_signal(
        &mut self,
        now: u64,
        signal: CheckedSignal,
    ) -> Result<(OutcomeKind, Option<u64>), Rejection> {
        let shadowed = !self.allow.reaches(&signal.from, &signal.to);
        if let Some(peer) = self.devices.get(&signal.to).filter(|_| !shadowed) {
            let wire = DeliveredSignalWire {
                id: signal.id,
                from: signal.from.to_string(),
                kind: signal.kind,
                body: signal.body,
                sent_at: now,
                queued: false,
            };
            if peer.emit(events::INCOMING, &wire) {
                m::signal_outcome("delivered");
                return Ok((OutcomeKind::Delivered, None));
            }
            m::rejected(ErrorCode::RecipientBusy);
            return Err(Rejection::new(ErrorCode::RecipientBusy, "the recipient's connection is not taking messages"));
        }
        if signal.ttl_ms == 0 {
            m::signal_outcome("expired");
            return Ok((OutcomeKind::Expired, None));
        }
        let body = serde_json::to_string(&signal.body).unwrap_or_default();
        let message = NewMessage {
            to: signal.to,
            from: signal.from,
            origin: signal.origin,
            id: signal.id,
            kind: signal.kind,
            body,
            shadowed,
        };
        let queued = self.queue.push(now, message, signal.ttl_ms).inspect_err(|r| m::rejected(r.code))?;
        if let Err(err) = self.store.put_message(&queued) {
            warn!(%err, "store failed; refusing the message");
            let _ = self.queue.take_one(&queued.queue_key(), queued.seq);
            m::rejected(ErrorCode::Internal);
            return Err(Rejection::new(ErrorCode::Internal, "the server could not store the message"));
        }
        m::signal_outcome("queued");
        self.gauges();
        Ok((OutcomeKind::Queued, Some(queued.expires_at)))
    }

    /// Expires due messages (telling their senders) and sessions (telling
    /// their parties). Returns how many messages expired.
    pub(crate) fn expire(&mut self, now: u64) -> usize {
        for ended in self.relays.expire(now) {
            super::relay_requests::tell_ended(self, &ended);
        }
        super::session_requests::expire(self, now);
        let expired = self.queue.expire(now);
        if expired.is_empty() {
            return 0;
        }
        let seqs: Vec<u64> = expired.iter().map(|m| m.seq).collect();
        self.persist(|store| store.delete_messages(&seqs));
        for message in &expired {
            debug!(id = %message.id, from = %message.from, to = %message.to, "queued message expired");
            m::expired();
            self.outcome(now, &message.from, &message.id, &message.to, OutcomeKind::Expired);
        }
        let stale: Vec<u64> = self.notices.sweep(now).iter().map(|n| n.seq).collect();
        self.persist(|store| store.delete_notices(&stale));
        self.gauges();
        expired.len()
    }

    /// Tells `sender` what became of its message: at once if it is online,
    /// otherwise kept in its notice box.
    fn outcome(&mut self, now: u64, sender: &DeviceId, id: &str, to: &DeviceId, outcome: OutcomeKind) {
        let notice = OutcomeNotice { id: id.to_owned(), to: to.to_string(), outcome, at: now };
        if let Some(peer) = self.devices.get(sender)
            && peer.emit(events::OUTCOME, &notice)
        {
            return;
        }
        let (stored, dropped) = self.notices.push(now, *sender, notice);
        self.persist(|store| store.put_notice(&stored));
        if !dropped.is_empty() {
            warn!(device = %sender, dropped = dropped.len(), "notice box full; oldest notices dropped");
            m::notices_dropped(dropped.len());
            let seqs: Vec<u64> = dropped.iter().map(|n: &StoredNotice| n.seq).collect();
            self.persist(|store| store.delete_notices(&seqs));
        }
    }

    fn persist(&mut self, write: impl FnOnce(&mut dyn Store) -> crate::Result<()>) {
        if let Err(err) = write(self.store.as_mut()) {
            warn!(%err, "store write failed; the in-memory state goes on without it");
            m::store_errors();
        }
    }

    fn gauges(&self) {
        let (messages, bytes) = self.queue.depth();
        m::queue_depth(messages, bytes, self.notices.len());
    }

    pub(crate) fn online_count(&self) -> usize {
        self.devices.len()
    }

    /// Redis mode: records that `device` is registered on `peer` in this
    /// instance (for sessions and relays, which stay local); presence, the
    /// queue and "replaced" are handled through Redis. An older local
    /// connection's relays end.
    #[cfg(feature = "redis")]
    pub(crate) fn bind_local(&mut self, device: DeviceId, peer: Arc<Peer>) {
        if let Some(old) = self.devices.insert(device, peer.clone())
            && old.id != peer.id
        {
            self.end_relays(&device);
        }
    }
}

impl SessionHost for Hub {
    fn sessions(&mut self) -> &mut SessionTable {
        &mut self.sessions
    }

    fn save_session(&mut self, session: &CodeSession) {
        self.persist(|store| store.put_session(session));
        m::sessions(self.sessions.len());
    }

    fn delete_sessions(&mut self, transfer_ids: &[String]) {
        self.persist(|store| store.delete_sessions(transfer_ids));
        m::sessions(self.sessions.len());
    }

    fn tell_session(&mut self, device: &DeviceId, session: &CodeSession, peer: Option<&DeviceId>) {
        if let Some(connection) = self.devices.get(device) {
            connection.emit(events::SESSION, &session_notice(session, peer));
        }
    }
}

/// The `"session"` event telling a party that `session` changed.
pub(crate) fn session_notice(session: &CodeSession, peer: Option<&DeviceId>) -> SessionNotice {
    SessionNotice {
        transfer_id: session.transfer_id.clone(),
        state: session.state,
        peer: peer.map(ToString::to_string),
        reason: session.reason.clone(),
    }
}

/// The refusal of a subscription over the per-connection limit.
pub(crate) fn too_many_subscriptions(max: usize, already: usize) -> Rejection {
    Rejection::new(
        ErrorCode::TooManySubscriptions,
        format!("a connection may watch at most {max} devices ({already} already)"),
    )
}

/// The `"signal"` event for a queued message.
pub(crate) fn incoming(message: &QueuedMessage, queued: bool) -> DeliveredSignalWire {
    DeliveredSignalWire {
        id: message.id.clone(),
        from: message.from.to_string(),
        kind: message.kind,
        body: serde_json::from_str(&message.body).unwrap_or(Value::Object(Map::new())),
        sent_at: message.sent_at,
        queued,
    }
}
