//! [`ConnectionManager`]: the public face, and the shared state its tasks use.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use peers_sdk::{BoxSocket, CloseCode, CloseReason, Connection, DeviceId};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::AbortHandle;

use super::class::ConnectionClass;
use super::config::ManagerConfig;
use super::dial::{Dialer, keep_connected};
use super::health::{Health, Verdict};
use super::link_table::{LinkPhase, LinkTable};
use super::status::PathNotes;
use super::status::{
    ConnectionStatus, GroupStatus, HistoryEntry, ManagerEvent, ManagerStatus, MemberStatus, PathStatus, SignalingStatus,
};
use crate::device_message::{DeviceMessage, MessageRouter, Refusal, Route};
use crate::error::{Error, Result};
use crate::group::GroupId;
use crate::sync::{SyncGroup, expose_group, hide_group};

/// Keeps one connection per remote device, routes it to every group both
/// devices share, prefers the best class of connection and moves traffic to a
/// better one when it appears.
///
/// Cheap to clone; every clone is the same manager. See `docs/ARCHITECTURE.md`
/// ("peers-device") for the handover protocol and the limits.
#[derive(Clone)]
pub struct ConnectionManager {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for ConnectionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionManager").field("device", &self.inner.me).finish_non_exhaustive()
    }
}

pub(super) struct Inner {
    pub(super) config: ManagerConfig,
    pub(super) me: DeviceId,
    pub(super) state: Mutex<State>,
    pub(super) events: broadcast::Sender<ManagerEvent>,
    /// Receivers of device messages, by kind.
    pub(super) inboxes: Mutex<HashMap<String, mpsc::Sender<DeviceMessage>>>,
    pub(super) router: Mutex<MessageRouter>,
    pub(super) dialers: RwLock<Vec<Arc<dyn Dialer>>>,
    /// Bumped on every change of connections or dialers; dial loops watch it.
    pub(super) changed: watch::Sender<u64>,
    /// Bumped whenever the trust set may have changed (connections, kept
    /// devices, groups, members); the signaling link watches it.
    pub(super) trust_changed: watch::Sender<u64>,
    /// Bumped by [`ConnectionManager::network_changed`]: dial loops seeing a new
    /// value forget their backoff.
    pub(super) network_epoch: std::sync::atomic::AtomicU64,
    /// Application set-up run on every new connection (its own RPCs). Taken
    /// before `state` when both are held.
    pub(super) setups: Mutex<Vec<ConnectionSetup>>,
    /// The signaling registrations reporting here (for status); dropped links
    /// are forgotten.
    pub(super) signaling: Mutex<Vec<std::sync::Weak<Mutex<SignalingStatus>>>>,
    /// Incoming handshakes running now, over every listener and `accept` call
    /// ([`ManagerConfig::max_handshakes`]).
    pub(super) handshakes: Arc<tokio::sync::Semaphore>,
    /// Signals and relay requests dropped because their sender is outside the
    /// trust set ([`ConnectionManager::admits`]).
    pub(super) strangers_refused: std::sync::atomic::AtomicU64,
    /// A device's turn is held while working out which link each group's
    /// engine syncs over and telling the engines, so they hear in the order
    /// it was decided ([`super::handoff`]).
    pub(super) group_handoffs: super::handoff::Handoffs,
}

/// Application set-up run on every new connection.
pub(super) type ConnectionSetup = Arc<dyn Fn(&Connection, DeviceId) + Send + Sync>;

#[derive(Default)]
pub(super) struct State {
    pub(super) groups: HashMap<GroupId, GroupEntry>,
    pub(super) devices: HashMap<DeviceId, DeviceLinks>,
    pub(super) history: VecDeque<HistoryEntry>,
    pub(super) next_link: u64,
    pub(super) wanted: HashMap<DeviceId, AbortHandle>,
    /// Why each device is not on a better path: the last failure of each way
    /// there (a dialer's attempt, a link that went silent). Kept for devices
    /// kept connected or connected.
    pub(super) path_notes: HashMap<DeviceId, PathNotes>,
    pub(super) shut_down: bool,
}

impl State {
    /// Notes why `device` is not on a `class` path (`way` is the dialer or
    /// transport). Only for devices kept connected or connected: bounded.
    pub(super) fn note_path(&mut self, device: DeviceId, way: &str, class: ConnectionClass, reason: String) {
        if self.wanted.contains_key(&device) || self.devices.contains_key(&device) {
            self.path_notes.entry(device).or_default().record(way, class, reason);
        }
    }
}

pub(super) struct GroupEntry {
    pub(super) engine: Arc<dyn SyncGroup>,
    pub(super) members: HashSet<DeviceId>,
}

pub(super) struct DeviceLinks {
    /// The connections and what the driver keeps per link.
    pub(super) links: Vec<Link>,
    /// The decisions: which link is active, each link's phase.
    pub(super) table: LinkTable,
    /// The link each group's engine was last given for this device.
    pub(super) ready_on: HashMap<GroupId, u64>,
    /// When the table's deadline timer fires, if one is set.
    pub(super) timer: Option<Instant>,
}

pub(super) struct Link {
    pub(super) id: u64,
    pub(super) connection: Connection,
    pub(super) class: ConnectionClass,
    pub(super) transport: String,
    pub(super) dialed: bool,
    pub(super) since: SystemTime,
    pub(super) health: Health,
    /// Groups the peer said it registered on this link.
    pub(super) remote_ready: HashSet<GroupId>,
    /// Groups whose RPCs this side registered on this link.
    pub(super) local_groups: HashSet<GroupId>,
}

impl DeviceLinks {
    pub(super) fn link(&self, id: u64) -> Option<&Link> {
        self.links.iter().find(|l| l.id == id)
    }

    pub(super) fn link_mut(&mut self, id: u64) -> Option<&mut Link> {
        self.links.iter_mut().find(|l| l.id == id)
    }

    pub(super) fn active_link(&self) -> Option<&Link> {
        self.table.active().and_then(|id| self.link(id))
    }

    /// Records a health ping's outcome (`rtt`, or `None` if it failed) on
    /// `link`, and its latency for the link choice.
    pub(super) fn record_ping(&mut self, link: u64, rtt: Option<std::time::Duration>, now: Instant) -> Option<Verdict> {
        let entry = self.links.iter_mut().find(|l| l.id == link)?;
        let verdict = match rtt {
            Some(rtt) => entry.health.on_pong(rtt, now),
            None => entry.health.on_failure(now),
        };
        if let Some(latency) = entry.health.latency() {
            self.table.latency(link, latency);
        }
        Some(verdict)
    }

    /// Superseded: draining or retired.
    pub(super) fn retiring(&self, id: u64) -> bool {
        self.table.phase(id).is_some_and(LinkPhase::is_retiring)
    }
}

impl Inner {
    pub(super) fn record(&self, state: &mut State, event: ManagerEvent) {
        if state.history.len() >= self.config.history.max(1) {
            state.history.pop_front();
        }
        state.history.push_back(HistoryEntry { at: SystemTime::now(), event: event.clone() });
        let _ = self.events.send(event);
        self.changed.send_modify(|generation| *generation = generation.wrapping_add(1));
        self.trust_changed();
    }

    /// Tells the watchers of the trust set it may have changed.
    pub(super) fn trust_changed(&self) {
        self.trust_changed.send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// The best class among the links to `device` that are not retiring (one may
    /// be verified but not active yet, while the leader's takeover is on its way).
    pub(super) fn best_class(&self, device: &DeviceId) -> Option<ConnectionClass> {
        lock(&self.state).devices.get(device)?.table.best_class()
    }

    /// The class a dial must beat to be worth trying: the best among links
    /// that are not retiring and not suspect (`LinkTable::dial_floor`).
    pub(super) fn dial_floor(&self, device: &DeviceId) -> Option<ConnectionClass> {
        lock(&self.state).devices.get(device)?.table.dial_floor()
    }

    /// Whether this side decides which connection to a device is kept (the side
    /// with the smaller device id; both sides compute the same answer).
    pub(super) fn leads(&self, device: &DeviceId) -> bool {
        self.me < *device
    }
}

impl Inner {
    fn signaling_status(&self) -> Vec<SignalingStatus> {
        let mut links = lock(&self.signaling);
        links.retain(|l| l.strong_count() > 0);
        links.iter().filter_map(std::sync::Weak::upgrade).map(|s| lock(&s).clone()).collect()
    }
}

impl ConnectionManager {
    /// Shows a signaling registration in [`status`](Self::status) for as long
    /// as `status` is alive (the `SignalingServerLink` keeps it up to date).
    pub(crate) fn report_signaling(&self, status: &Arc<Mutex<SignalingStatus>>) {
        let mut links = lock(&self.inner.signaling);
        links.retain(|l| l.strong_count() > 0);
        links.push(Arc::downgrade(status));
    }

    /// A manager with no connections and no groups.
    pub fn new(config: ManagerConfig) -> Self {
        let me = config.keys().device_id();
        let (events, _) = broadcast::channel(256);
        let (changed, _) = watch::channel(0);
        let (trust_changed, _) = watch::channel(0);
        let max_handshakes = config.max_handshakes.max(1);
        ConnectionManager {
            inner: Arc::new(Inner {
                router: Mutex::new(MessageRouter::new(me, 4096)),
                config,
                me,
                state: Mutex::new(State::default()),
                events,
                inboxes: Mutex::new(HashMap::new()),
                dialers: RwLock::new(Vec::new()),
                changed,
                trust_changed,
                network_epoch: std::sync::atomic::AtomicU64::new(0),
                setups: Mutex::new(Vec::new()),
                signaling: Mutex::new(Vec::new()),
                handshakes: Arc::new(tokio::sync::Semaphore::new(max_handshakes)),
                strangers_refused: std::sync::atomic::AtomicU64::new(0),
                group_handoffs: Default::default(),
            }),
        }
    }

    /// This device.
    pub fn device_id(&self) -> DeviceId {
        self.inner.me
    }

    /// Adds a group with the devices that are its other members, and registers
    /// it on the connections to those members that are up.
    pub async fn add_group(&self, engine: Arc<dyn SyncGroup>, members: impl IntoIterator<Item = DeviceId>) {
        let group = engine.group_id().clone();
        let members: HashSet<DeviceId> = members.into_iter().filter(|d| *d != self.inner.me).collect();
        let connected: Vec<DeviceId> = {
            let mut state = lock(&self.inner.state);
            state.groups.insert(group.clone(), GroupEntry { engine, members: members.clone() });
            members.iter().filter(|d| state.devices.contains_key(d)).copied().collect()
        };
        self.inner.trust_changed();
        for device in connected {
            self.inner.share_group(&device, &group).await;
        }
    }

    /// Removes a group: its RPCs go from every connection and its engine is told
    /// every member is gone.
    pub async fn remove_group(&self, group: &GroupId) -> Result<()> {
        let entry = lock(&self.inner.state).groups.remove(group).ok_or(Error::UnknownGroup(group.to_string()))?;
        self.inner.trust_changed();
        for device in entry.members {
            self.inner.unshare_group(&device, group, &entry.engine).await;
        }
        Ok(())
    }

    /// Adds `device` to `group`'s members (and shares the group on its
    /// connections, if it is connected).
    pub async fn add_member(&self, group: &GroupId, device: DeviceId) -> Result<()> {
        {
            let mut state = lock(&self.inner.state);
            let entry = state.groups.get_mut(group).ok_or(Error::UnknownGroup(group.to_string()))?;
            if device == self.inner.me || !entry.members.insert(device) {
                return Ok(());
            }
        }
        self.inner.trust_changed();
        self.inner.share_group(&device, group).await;
        Ok(())
    }

    /// Removes `device` from `group`'s members: it can no longer call the group's
    /// RPCs, and the engine stops syncing with it.
    pub async fn remove_member(&self, group: &GroupId, device: &DeviceId) -> Result<()> {
        let engine = {
            let mut state = lock(&self.inner.state);
            let entry = state.groups.get_mut(group).ok_or(Error::UnknownGroup(group.to_string()))?;
            entry.members.remove(device);
            entry.engine.clone()
        };
        self.inner.trust_changed();
        self.inner.unshare_group(device, group, &engine).await;
        Ok(())
    }

    /// Runs the handshake as the accepting side over `socket` and adds the
    /// connection. Returns the authenticated peer. Waits while
    /// [`ManagerConfig::max_handshakes`] incoming handshakes run already (see
    /// [`serve`](Self::serve) for a listener's sockets).
    pub async fn accept(&self, socket: BoxSocket) -> Result<DeviceId> {
        // The semaphore is never closed.
        let _permit = self.inner.handshakes.acquire().await.ok();
        self.accept_now(socket).await
    }

    /// [`accept`](Self::accept) once a handshake slot is held.
    pub(super) async fn accept_now(&self, socket: BoxSocket) -> Result<DeviceId> {
        let (config, adoption) = self.inner.connection_config();
        let connection = Connection::accept(socket, config).await?;
        let device = connection.remote().device_id;
        self.inner.adopt(connection, false, adoption).await?;
        Ok(device)
    }

    /// Runs the handshake as the dialing side over `socket`, expecting `expected`
    /// if given, and adds the connection.
    pub async fn dial(&self, socket: BoxSocket, expected: Option<DeviceId>) -> Result<DeviceId> {
        if expected == Some(self.inner.me) {
            return Err(Error::SelfConnection);
        }
        let (config, adoption) = self.inner.connection_config();
        let connection = Connection::connect(socket, config, expected).await?;
        let device = connection.remote().device_id;
        self.inner.adopt(connection, true, adoption).await?;
        Ok(device)
    }

    /// Runs `setup` once on every connection the manager holds: now on those
    /// already adopted, and on each new one as soon as the handshake verified
    /// the peer, before the peer is told the connection is ready. It is the
    /// place to register the application's own RPCs and streams: they are
    /// there whichever connection to a device is active, and they answer the
    /// peer's very first call on a new connection (no retry needed).
    ///
    /// A connection being adopted while `on_connection` runs gets `setup`
    /// exactly once too. `setup` runs synchronously and should only register
    /// handlers; it must not call `on_connection` itself.
    pub fn on_connection(&self, setup: impl Fn(&Connection, DeviceId) + Send + Sync + 'static) {
        let setup: ConnectionSetup = Arc::new(setup);
        let held: Vec<(Connection, DeviceId)> = {
            let mut setups = lock(&self.inner.setups);
            setups.push(setup.clone());
            let state = lock(&self.inner.state);
            state
                .devices
                .iter()
                .flat_map(|(device, links)| links.links.iter().map(|l| (l.connection.clone(), *device)))
                .collect()
        };
        for (connection, device) in held {
            setup(&connection, device);
        }
    }

    /// Adds a way of reaching devices; devices kept connected try it from now on.
    pub fn add_dialer(&self, dialer: Arc<dyn Dialer>) {
        self.inner.dialers.write().unwrap_or_else(|e| e.into_inner()).push(dialer);
        self.inner.changed.send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// Keeps a connection to `device` up: dials it with every dialer that could
    /// give a better class than the connection held, with backoff, for as long
    /// as the manager runs (or until [`forget`](Self::forget)).
    pub fn keep_connected(&self, device: DeviceId) {
        if device == self.inner.me {
            return;
        }
        let mut state = lock(&self.inner.state);
        if state.shut_down || state.wanted.contains_key(&device) {
            return;
        }
        let task = tokio::spawn(keep_connected(Arc::downgrade(&self.inner), device, self.inner.changed.subscribe()));
        state.wanted.insert(device, task.abort_handle());
        drop(state);
        self.inner.trust_changed();
    }

    /// Stops keeping `device` connected (connections that are up stay up).
    pub fn forget(&self, device: &DeviceId) {
        let mut state = lock(&self.inner.state);
        if let Some(task) = state.wanted.remove(device) {
            task.abort();
        }
        if !state.devices.contains_key(device) {
            state.path_notes.remove(device);
        }
        drop(state);
        self.inner.trust_changed();
    }

    /// Pings `device` over its active connection now and returns the round trip;
    /// the result counts in the connection's health like a scheduled ping.
    pub async fn ping(&self, device: &DeviceId) -> Result<std::time::Duration> {
        let (connection, link) = {
            let state = lock(&self.inner.state);
            let links = state.devices.get(device).ok_or(Error::NotConnected(*device))?;
            let link = links.active_link().ok_or(Error::NotConnected(*device))?;
            (link.connection.clone(), link.id)
        };
        let timeout = self.inner.config.health.ping_timeout;
        let started = Instant::now();
        let outcome = connection.emit_with_timeout::<_, ()>(super::control::PING, &(), timeout).await;
        let rtt = started.elapsed();
        let mut state = lock(&self.inner.state);
        if let Some(links) = state.devices.get_mut(device) {
            links.record_ping(link, outcome.as_ref().ok().map(|()| rtt), Instant::now());
        }
        outcome.map(|()| rtt).map_err(Error::Connection)
    }

    /// Tells the manager that this device's network changed (an address came
    /// or went, the default route moved). Every active connection is pinged at
    /// once and closed if it does not answer within
    /// [`HealthOptions::network_probe_timeout`](super::health::HealthOptions::network_probe_timeout),
    /// and devices kept connected are dialed again without waiting out their
    /// backoff. Without this a connection whose path vanished is noticed only
    /// by the regular pings (three failures, 15 s apart by default).
    ///
    /// [`NetworkMonitor`](crate::netmon::NetworkMonitor) notices address
    /// changes by itself; call this directly when the platform tells you first
    /// (a mobile OS's connectivity callback, say).
    pub fn network_changed(&self) {
        self.inner.network_epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let connections: Vec<(DeviceId, Connection)> = {
            let mut state = lock(&self.inner.state);
            let connections = state
                .devices
                .iter()
                .filter_map(|(device, links)| links.active_link().map(|l| (*device, l.connection.clone())))
                .collect();
            self.inner.record(&mut state, ManagerEvent::NetworkChanged);
            connections
        };
        let timeout = self.inner.config.health.network_probe_timeout;
        for (device, connection) in connections {
            super::links::spawn_probe(connection, device, timeout, "no answer after a network change");
        }
    }

    /// The connection calls to `device` use now.
    pub fn connection(&self, device: &DeviceId) -> Option<Connection> {
        lock(&self.inner.state).devices.get(device).and_then(|d| d.active_link()).map(|l| l.connection.clone())
    }

    /// Waits until the connection calls to `device` use is another than `current`
    /// (another session): `Some` with it, or `None` when none is left (only when
    /// `current` is `Some`; with `None` it waits for the first). A transfer uses it to
    /// move to a better path at a boundary of its own, instead of being drained off the
    /// old one. Returns at once when that is already so; never when the manager shut down.
    pub async fn active_change(&self, device: &DeviceId, current: Option<&Connection>) -> Option<Connection> {
        // Subscribed before looking, so that no switch falls between the look and the wait.
        let mut events = self.events();
        loop {
            match self.connection(device) {
                Some(active) if current.is_none_or(|c| c.session_id() != active.session_id()) => return Some(active),
                None if current.is_some() => return None,
                _ => {}
            }
            match events.recv().await {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }

    /// Sends a signed device message to `to`, over several hops if needed.
    pub async fn send_device_message(&self, to: DeviceId, kind: &str, payload: Vec<u8>) -> Result<()> {
        let config = &self.inner.config;
        let message = DeviceMessage::new(
            config.keys(),
            to,
            kind,
            payload,
            now_ms(),
            config.device_message_lifetime.as_millis() as u64,
            config.device_message_hops,
        )?;
        let neighbours = self.inner.neighbours();
        let route = lock(&self.inner.router).route(message, None, &neighbours, now_ms())?;
        match route {
            Route::Forward(message, next) => {
                self.inner.forward(message, next).await;
                Ok(())
            }
            Route::Deliver(message) => self.inner.deliver(message).map_err(|_| Refusal::NoRoute.into()),
        }
    }

    /// The device messages of `kind` addressed to this device, from now on. A
    /// second call for the same kind replaces the first receiver. Messages of a kind
    /// nobody receives, or arriving while the receiver is full
    /// ([`ManagerConfig::device_message_inbox`]), are refused back to their
    /// sender's hop, never dropped silently.
    pub fn device_messages(&self, kind: &str) -> mpsc::Receiver<DeviceMessage> {
        let (sender, receiver) = mpsc::channel(self.inner.config.device_message_inbox.max(1));
        lock(&self.inner.inboxes).insert(kind.to_owned(), sender);
        receiver
    }

    /// Events from now on (a receiver more than 256 behind sees `Lagged`).
    pub fn events(&self) -> broadcast::Receiver<ManagerEvent> {
        self.inner.events.subscribe()
    }

    /// A snapshot of connections, groups and recent history.
    pub fn status(&self) -> ManagerStatus {
        let state = lock(&self.inner.state);
        let mut connections: Vec<ConnectionStatus> = state
            .devices
            .iter()
            .flat_map(|(device, links)| {
                links.links.iter().map(move |link| ConnectionStatus {
                    device: *device,
                    class: link.class,
                    transport: link.transport.clone(),
                    path: link.connection.path(),
                    peer_addr: link.connection.socket_info().peer_addr.clone(),
                    active: links.table.active() == Some(link.id),
                    retiring: links.retiring(link.id),
                    dialed: link.dialed,
                    encrypted: link.connection.is_encrypted(),
                    latency: link.health.latency(),
                    error_rate: link.health.error_rate(),
                    since: link.since,
                })
            })
            .collect();
        connections.sort_by_key(|c| (!c.active, c.class, c.device));
        let mut groups: Vec<GroupStatus> = state
            .groups
            .iter()
            .map(|(group, entry)| {
                let mut members: Vec<MemberStatus> = entry
                    .members
                    .iter()
                    .map(|device| {
                        let links = state.devices.get(device);
                        MemberStatus {
                            device: *device,
                            connected: links.is_some_and(|l| !l.links.is_empty()),
                            ready: links.is_some_and(|l| l.ready_on.contains_key(group)),
                        }
                    })
                    .collect();
                members.sort_by_key(|m| m.device);
                GroupStatus { group: group.clone(), members, sync: entry.engine.sync_status() }
            })
            .collect();
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        let mut peers: Vec<DeviceId> = state.devices.keys().chain(state.wanted.keys()).copied().collect();
        peers.sort();
        peers.dedup();
        let paths = peers
            .into_iter()
            .map(|device| {
                let class = state.devices.get(&device).and_then(|d| d.active_link()).map(|l| l.class);
                let notes = state.path_notes.get(&device);
                PathStatus {
                    device,
                    class,
                    why: notes.map_or_else(|| PathNotes::default().why(class), |n| n.why(class)),
                }
            })
            .collect();
        ManagerStatus {
            device: self.inner.me,
            connections,
            groups,
            paths,
            signaling: self.inner.signaling_status(),
            history: state.history.iter().cloned().collect(),
            strangers_refused: self.inner.strangers_refused.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Closes every connection and stops every task; later connections are refused.
    pub async fn shutdown(&self) {
        let connections: Vec<Connection> = {
            let mut state = lock(&self.inner.state);
            state.shut_down = true;
            for (_, task) in state.wanted.drain() {
                task.abort();
            }
            state.devices.values().flat_map(|d| d.links.iter().map(|l| l.connection.clone())).collect()
        };
        for connection in connections {
            connection.close(CloseReason::new(CloseCode::GoingAway, "device shutting down")).await;
        }
    }
}

impl Inner {
    /// Hands a device message to the receiver of its kind.
    pub(super) fn deliver(&self, message: DeviceMessage) -> Result<(), &'static str> {
        let inboxes = lock(&self.inboxes);
        let inbox = inboxes.get(&message.kind).ok_or("no receiver for this kind of device message")?;
        inbox.try_send(message).map_err(|_| "device message inbox full")
    }

    /// Devices with a usable connection.
    pub(super) fn neighbours(&self) -> Vec<DeviceId> {
        lock(&self.state).devices.iter().filter(|(_, d)| d.table.active().is_some()).map(|(id, _)| *id).collect()
    }

    /// Registers `group` on every live link to `device` and announces it.
    pub(super) async fn share_group(self: &Arc<Self>, device: &DeviceId, group: &GroupId) {
        let targets: Vec<(Connection, Arc<dyn SyncGroup>)> = {
            let mut state = lock(&self.state);
            let Some(engine) = state.groups.get(group).map(|g| g.engine.clone()) else { return };
            let Some(links) = state.devices.get_mut(device) else { return };
            let table = &links.table;
            links
                .links
                .iter_mut()
                .filter_map(|l| {
                    let retiring = table.phase(l.id).is_some_and(LinkPhase::is_retiring);
                    (!retiring && l.local_groups.insert(group.clone())).then(|| (l.connection.clone(), engine.clone()))
                })
                .collect()
        };
        for (connection, engine) in targets {
            expose_group(&connection, engine);
            self.announce_groups(connection, vec![group.clone()]);
        }
        self.refresh_groups(device).await;
    }

    /// Removes `group` from every link to `device` and tells the engine.
    pub(super) async fn unshare_group(
        self: &Arc<Self>,
        device: &DeviceId,
        group: &GroupId,
        engine: &Arc<dyn SyncGroup>,
    ) {
        let _in_order = self.group_handoffs.turn(device).await;
        let connections: Vec<Connection> = {
            let mut state = lock(&self.state);
            let Some(links) = state.devices.get_mut(device) else { return };
            links.ready_on.remove(group);
            links.links.iter_mut().filter_map(|l| l.local_groups.remove(group).then(|| l.connection.clone())).collect()
        };
        for connection in connections {
            hide_group(&connection, group);
            let groups = vec![group.clone()];
            tokio::spawn(async move {
                let _ = connection.emit::<_, ()>(super::control::GROUP_LEFT, &groups).await;
            });
        }
        engine.peer_gone(device).await;
    }
}

pub(super) use crate::util::{lock, now_ms};
