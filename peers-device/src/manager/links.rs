//! The driver of the [`LinkTable`](super::link_table::LinkTable)s: adopting a
//! verified connection, carrying out the table's decisions (takeovers, drains,
//! retires, closes, probes), and handing each group's engine the active link.
//!
//! Handover protocol (both sides run it; the side with the smaller device id, the
//! *leader*, makes the choices, so the two sides never disagree):
//!
//! ```text
//! leader                                   follower
//! the peer's first groupReady on new (it has adopted new and run its set-up):
//!   should_switch(active, new)?
//!   active = best
//!   peers:takeover ──(on best)──────────▶  active = the link it arrived on
//!   drain every other link                 drain every other link
//! drain(link): wait until Connection::idle() (no call or stream of this side
//!   in flight; bounded by drain_timeout), send peers:retire on it; close it
//!   once both sides retired (or after a second drain_timeout).
//! ```
//!
//! Failover: each link's liveness check (`control::keep_alive`) reports a link
//! silent for `liveness_timeout`; the table closes it and moves traffic to the
//! best remaining link at once, and the dial loops dial the next class.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use peers_sdk::socket::TransportKind;
use peers_sdk::{CloseCode, CloseReason, Connection, DeviceId};
use tracing::{debug, info, warn};

use super::api::{DeviceLinks, Inner, Link, State, lock};
use super::class::ConnectionClass;
use super::control::{self, Adoption};
use super::health::Health;
use super::link_table::{CloseWhy, LinkAction, LinkTable};
use super::preference::{Candidate, Occupant, pick_eviction};
use super::status::ManagerEvent;
use crate::error::{Error, Result};
use crate::group::GroupId;
use crate::sync::{ConnectionPeer, SyncGroup, expose_group};

/// A name for a transport, for status tables.
pub(super) fn transport_name(kind: &TransportKind) -> String {
    match kind {
        TransportKind::Memory => "memory".into(),
        TransportKind::SocketIo => "socket.io".into(),
        TransportKind::WebRtc => "webrtc".into(),
        TransportKind::Relay => "relay".into(),
        TransportKind::Tcp => "tcp".into(),
        TransportKind::Other(name) => name.to_string(),
        _ => "other".into(),
    }
}

fn candidate(link: &Link) -> Candidate {
    Candidate { class: link.class, latency: link.health.latency() }
}

/// Groups a peer may announce on one link.
const MAX_ANNOUNCED_GROUPS: usize = 1024;

enum Admission {
    ShutDown,
    Refused,
    Admitted {
        link_id: u64,
        evicted: Vec<Connection>,
        groups: Vec<(GroupId, Arc<dyn SyncGroup>)>,
        actions: Vec<Resolved>,
    },
}

/// A [`LinkAction`] with the connection it is about, ready to carry out.
enum Resolved {
    Switched,
    SendTakeover(Connection),
    Drain(u64, Connection),
    SendRetire(Connection),
    Close(Connection, CloseWhy),
    Probe(Connection),
}

/// Sends `peers:retire` (bounded by `timeout`), then closes with `close` if given.
fn send_retire(connection: Connection, timeout: std::time::Duration, close: Option<CloseReason>) {
    tokio::spawn(async move {
        if let Err(err) = connection.emit_with_timeout::<_, ()>(control::RETIRE, &(), timeout).await {
            debug!(%err, "retire not delivered");
        }
        if let Some(reason) = close {
            connection.close(reason).await;
        }
    });
}

enum GroupAction {
    Ready(Arc<dyn SyncGroup>, Connection),
    Gone(Arc<dyn SyncGroup>),
}

impl Inner {
    /// Adds a verified connection.
    pub(super) async fn adopt(
        self: &Arc<Self>,
        connection: Connection,
        dialed: bool,
        adoption: Adoption,
    ) -> Result<()> {
        let device = connection.remote().device_id;
        if device == self.me {
            connection.close(CloseReason::new(CloseCode::Refused, "connection to this device itself")).await;
            return Err(Error::SelfConnection);
        }
        let Some(prepared) = adoption.prepared.get().copied() else {
            // The set-up step did not run: the manager was going away.
            connection.close(CloseReason::new(CloseCode::GoingAway, "device shutting down")).await;
            return Err(Error::ShutDown);
        };
        let class = ConnectionClass::of(connection.socket_info(), connection.path().as_ref());
        // Under the set-up list's lock, so an `on_connection` running meanwhile
        // either finds this link in the state or is among the set-ups run below.
        let (admission, late_setups) = {
            let setups = lock(&self.setups);
            let mut state = lock(&self.state);
            let admission = if state.shut_down {
                Admission::ShutDown
            } else {
                self.admit(&mut state, &connection, device, class, dialed, prepared.link)
            };
            (admission, setups.get(prepared.setups_run..).unwrap_or_default().to_vec())
        };
        let (link_id, evicted, groups, actions) = match admission {
            Admission::ShutDown => {
                connection.close(CloseReason::new(CloseCode::GoingAway, "device shutting down")).await;
                return Err(Error::ShutDown);
            }
            Admission::Refused => {
                let reason = "connection limit reached; every connection held is better";
                connection.close(CloseReason::new(CloseCode::LimitExceeded, reason)).await;
                return Err(Error::ConnectionLimit { limit: self.config.max_connections });
            }
            Admission::Admitted { link_id, evicted, groups, actions } => (link_id, evicted, groups, actions),
        };
        info!(peer = %device, %class, link = link_id, "connection verified");
        for victim in evicted {
            victim.close(CloseReason::new(CloseCode::LimitExceeded, "evicted for a better connection")).await;
        }
        for setup in late_setups {
            setup(&connection, device);
        }
        // The control handlers that need the link in the state wait for this.
        adoption.admitted.send_replace(true);
        for (_, engine) in &groups {
            expose_group(&connection, engine.clone());
        }
        self.announce_groups(connection.clone(), groups.into_iter().map(|(id, _)| id).collect());
        self.spawn_watchers(&connection, device, link_id);
        self.carry_out(device, actions);
        self.refresh_groups(&device).await;
        Ok(())
    }

    /// Admits a connection into the state (evicting at the limit), or refuses it.
    fn admit(
        &self,
        state: &mut State,
        connection: &Connection,
        device: DeviceId,
        class: ConnectionClass,
        dialed: bool,
        id: u64,
    ) -> Admission {
        let transport = transport_name(&connection.socket_info().transport);
        let mut evicted = Vec::new();
        let known = state.devices.get(&device).is_some_and(|d| !d.links.is_empty());
        let connected = state.devices.values().filter(|d| !d.links.is_empty()).count();
        if !known && connected >= self.config.max_connections {
            let occupants: Vec<Occupant> = state
                .devices
                .iter()
                .filter_map(|(id, d)| {
                    d.active_link().map(|l| Occupant { device: *id, candidate: candidate(l), pinned: false })
                })
                .collect();
            match pick_eviction(&occupants, Candidate { class, latency: None }) {
                None => {
                    self.record(state, ManagerEvent::Evicted { device, class });
                    return Admission::Refused;
                }
                Some(victim) => {
                    if let Some(links) = state.devices.get(&victim) {
                        let victim_class = links.active_link().map_or(class, |l| l.class);
                        evicted.extend(links.links.iter().map(|l| l.connection.clone()));
                        self.record(state, ManagerEvent::Evicted { device: victim, class: victim_class });
                    }
                }
            }
        }
        let groups: Vec<(GroupId, Arc<dyn SyncGroup>)> = state
            .groups
            .iter()
            .filter(|(_, g)| g.members.contains(&device))
            .map(|(id, g)| (id.clone(), g.engine.clone()))
            .collect();
        let now = Instant::now();
        let leader = self.leads(&device);
        let links = state.devices.entry(device).or_insert_with(|| DeviceLinks {
            links: Vec::new(),
            table: LinkTable::new(leader, self.config.preference.clone(), self.config.drain_timeout, now),
            ready_on: Default::default(),
            timer: None,
        });
        links.links.push(Link {
            id,
            connection: connection.clone(),
            class,
            transport: transport.clone(),
            dialed,
            since: SystemTime::now(),
            health: Health::new(self.config.health.clone(), now),
            remote_ready: Default::default(),
            local_groups: groups.iter().map(|(id, _)| id.clone()).collect(),
        });
        let decided = links.table.adopted(id, class, dialed, now);
        let actions = self.resolve(state, device, decided);
        if let Some(notes) = state.path_notes.get_mut(&device) {
            notes.connected(class);
        }
        self.record(state, ManagerEvent::Connected { device, class, transport });
        Admission::Admitted { link_id: id, evicted, groups, actions }
    }

    fn spawn_watchers(self: &Arc<Self>, connection: &Connection, device: DeviceId, link_id: u64) {
        let (weak, watched) = (Arc::downgrade(self), connection.clone());
        tokio::spawn(async move {
            let reason = watched.closed().await;
            if let Some(inner) = weak.upgrade() {
                inner.link_closed(&device, link_id, reason.to_string()).await;
            }
        });
        tokio::spawn(control::keep_pinging(Arc::downgrade(self), connection.clone(), device, link_id));
        tokio::spawn(control::keep_alive(Arc::downgrade(self), connection.clone(), device, link_id));
    }

    /// Tells the peer which groups this side registered on `connection`.
    pub(super) fn announce_groups(self: &Arc<Self>, connection: Connection, groups: Vec<GroupId>) {
        tokio::spawn(async move {
            if let Err(err) = connection.emit::<_, ()>(control::GROUP_READY, &groups).await {
                debug!(%err, "groupReady not delivered");
            }
        });
    }

    /// Feeds one input to `device`'s table and carries out what it decides;
    /// refreshes the groups when traffic moved.
    async fn update(
        self: &Arc<Self>,
        device: &DeviceId,
        input: impl FnOnce(&mut LinkTable, Instant) -> Vec<LinkAction>,
    ) {
        let actions = {
            let mut state = lock(&self.state);
            let Some(links) = state.devices.get_mut(device) else { return };
            let decided = input(&mut links.table, Instant::now());
            self.resolve(&mut state, *device, decided)
        };
        let moved = actions.iter().any(|a| matches!(a, Resolved::Switched));
        self.carry_out(*device, actions);
        if moved {
            self.refresh_groups(device).await;
        }
    }

    /// Under the state lock: records events and finds the connections the
    /// table's actions are about.
    fn resolve(&self, state: &mut State, device: DeviceId, decided: Vec<LinkAction>) -> Vec<Resolved> {
        let mut resolved = Vec::new();
        for action in decided {
            let connection = |state: &State, link: u64| {
                state.devices.get(&device).and_then(|d| d.link(link)).map(|l| l.connection.clone())
            };
            match action {
                LinkAction::Switched { from, class, .. } => {
                    if let Some(from) = from {
                        info!(peer = %device, %from, to = %class, "traffic moved to another connection");
                        self.record(state, ManagerEvent::Switched { device, from, to: class });
                    }
                    resolved.push(Resolved::Switched);
                }
                LinkAction::SendTakeover(link) => {
                    resolved.extend(connection(state, link).map(Resolved::SendTakeover));
                }
                LinkAction::Drain(link) => resolved.extend(connection(state, link).map(|c| Resolved::Drain(link, c))),
                LinkAction::SendRetire(link) => resolved.extend(connection(state, link).map(Resolved::SendRetire)),
                LinkAction::Close(link, why) => {
                    if why == CloseWhy::Silent {
                        let silent = self.config.health.liveness_timeout;
                        let reason = format!("went silent (nothing received for {silent:?})");
                        if let Some(l) = state.devices.get(&device).and_then(|d| d.link(link)) {
                            let (way, class) = (l.transport.clone(), l.class);
                            warn!(peer = %device, %class, link, "connection went silent; failing over");
                            state.note_path(device, &way, class, reason);
                        }
                    }
                    resolved.extend(connection(state, link).map(|c| Resolved::Close(c, why)));
                }
                LinkAction::Probe(link) => resolved.extend(connection(state, link).map(Resolved::Probe)),
            }
        }
        resolved
    }

    /// Carries out resolved actions (outside the state lock).
    fn carry_out(self: &Arc<Self>, device: DeviceId, actions: Vec<Resolved>) {
        let drain = self.config.drain_timeout;
        let mut deadlines = false;
        let mut retiring: Option<Connection> = None;
        for action in actions {
            match action {
                Resolved::Switched => {}
                Resolved::SendTakeover(connection) => {
                    tokio::spawn(async move {
                        if let Err(err) = connection.emit::<_, ()>(control::TAKEOVER, &()).await {
                            debug!(%err, "takeover not delivered");
                        }
                    });
                }
                Resolved::Drain(link, connection) => {
                    deadlines = true;
                    let weak = Arc::downgrade(self);
                    tokio::spawn(async move {
                        connection.idle().await;
                        if let Some(inner) = weak.upgrade() {
                            inner.update(&device, |table, now| table.drained(link, now)).await;
                        }
                    });
                }
                Resolved::SendRetire(connection) => {
                    deadlines = true;
                    // A close for the same link may follow: it waits for the retire.
                    if let Some(previous) = retiring.replace(connection.clone()) {
                        send_retire(previous, drain, None);
                    }
                }
                Resolved::Close(connection, why) => {
                    let reason = match why {
                        CloseWhy::Superseded => {
                            CloseReason::new(CloseCode::Replaced, "superseded by a better connection")
                        }
                        CloseWhy::Silent => {
                            CloseReason::new(CloseCode::TransportFailure, "nothing received in time (liveness)")
                        }
                    };
                    match retiring.take() {
                        Some(retire) if retire.session_id() == connection.session_id() => {
                            send_retire(retire, drain, Some(reason));
                        }
                        other => {
                            if let Some(retire) = other {
                                send_retire(retire, drain, None);
                            }
                            tokio::spawn(async move { connection.close(reason).await });
                        }
                    }
                }
                Resolved::Probe(connection) => spawn_probe(
                    connection,
                    device,
                    self.config.health.network_probe_timeout,
                    "no answer while the peer dialed again",
                ),
            }
        }
        if let Some(retire) = retiring {
            send_retire(retire, drain, None);
        }
        if deadlines {
            self.schedule_tick(device);
        }
    }

    /// Runs the table's `tick` at its next drain or retire deadline (one
    /// timer per device, moved earlier when a nearer deadline comes).
    fn schedule_tick(self: &Arc<Self>, device: DeviceId) {
        {
            let mut state = lock(&self.state);
            let Some(links) = state.devices.get_mut(&device) else { return };
            let Some(at) = links.table.next_deadline() else { return };
            if links.timer.is_some_and(|set| set <= at) {
                return;
            }
            links.timer = Some(at);
            let weak = Arc::downgrade(self);
            tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                let Some(inner) = weak.upgrade() else { return };
                if let Some(links) = lock(&inner.state).devices.get_mut(&device)
                    && links.timer == Some(at)
                {
                    links.timer = None;
                }
                inner.update(&device, LinkTable::tick).await;
                inner.schedule_tick(device);
            });
        }
    }

    /// Follower: the leader made `link_id` the active link.
    pub(super) async fn on_takeover(self: &Arc<Self>, device: &DeviceId, link_id: u64) {
        self.update(device, |table, now| table.takeover(link_id, now)).await;
    }

    /// The peer retired `link_id`.
    pub(super) async fn on_peer_retired(self: &Arc<Self>, device: &DeviceId, link_id: u64) {
        self.update(device, |table, now| table.peer_retired(link_id, now)).await;
    }

    /// The liveness check finds `link_id` suspect (`true`: a ping went
    /// unanswered) or heard again (`false`). Dial loops see the change: a
    /// suspect link no longer keeps worse paths from being dialed.
    pub(super) async fn on_suspect(self: &Arc<Self>, device: &DeviceId, link_id: u64, suspect: bool) {
        debug!(peer = %device, link = link_id, suspect, "liveness");
        self.update(device, |table, now| table.suspect(link_id, suspect, now)).await;
        self.changed.send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// The liveness check gave up on `link_id`.
    pub(super) async fn on_silent(self: &Arc<Self>, device: &DeviceId, link_id: u64) {
        self.update(device, |table, now| table.probe_failed(link_id, now)).await;
    }

    /// A link closed: forget it, move to another link or mark the device gone.
    pub(super) async fn link_closed(self: &Arc<Self>, device: &DeviceId, link_id: u64, reason: String) {
        let actions = {
            let mut state = lock(&self.state);
            let Some(links) = state.devices.get_mut(device) else { return };
            let Some(position) = links.links.iter().position(|l| l.id == link_id) else { return };
            let link = links.links.remove(position);
            let decided = links.table.closed(link_id, Instant::now());
            if links.links.is_empty() {
                state.devices.remove(device);
                if !state.wanted.contains_key(device) {
                    state.path_notes.remove(device);
                }
            }
            self.record(&mut state, ManagerEvent::Closed { device: *device, class: link.class, reason });
            self.resolve(&mut state, *device, decided)
        };
        self.carry_out(*device, actions);
        self.refresh_groups(device).await;
    }

    /// The peer registered `groups` on `link_id`. Recorded whether or not they
    /// are shared yet (this side may join a group after the peer announced it);
    /// readiness also needs this side's registration.
    pub(super) async fn on_groups_ready(self: &Arc<Self>, device: &DeviceId, link_id: u64, groups: Vec<GroupId>) {
        {
            let mut state = lock(&self.state);
            let Some(link) = state.devices.get_mut(device).and_then(|d| d.link_mut(link_id)) else { return };
            for group in groups {
                if link.remote_ready.len() >= MAX_ANNOUNCED_GROUPS {
                    break;
                }
                link.remote_ready.insert(group);
            }
        }
        self.update(device, |table, now| table.group_ready(link_id, now)).await;
        self.refresh_groups(device).await;
    }

    /// The peer left `groups` (or dropped us from them) on `link_id`.
    pub(super) async fn on_groups_left(self: &Arc<Self>, device: &DeviceId, link_id: u64, groups: Vec<GroupId>) {
        {
            let mut state = lock(&self.state);
            let Some(link) = state.devices.get_mut(device).and_then(|d| d.link_mut(link_id)) else { return };
            for group in &groups {
                link.remote_ready.remove(group);
            }
        }
        self.refresh_groups(device).await;
    }

    /// Hands each group's engine the active link where the group is ready on both
    /// sides, or tells it the device is gone.
    pub(super) async fn refresh_groups(self: &Arc<Self>, device: &DeviceId) {
        let _in_order = self.group_handoffs.turn(device).await;
        let actions: Vec<(GroupId, GroupAction)> = {
            let mut state = lock(&self.state);
            let groups: Vec<(GroupId, Arc<dyn SyncGroup>)> =
                state.groups.iter().map(|(id, g)| (id.clone(), g.engine.clone())).collect();
            let mut actions = Vec::new();
            let mut ready_events = Vec::new();
            match state.devices.get_mut(device) {
                None => {
                    for (group, engine) in groups {
                        actions.push((group, GroupAction::Gone(engine)));
                    }
                }
                Some(links) => {
                    let active = links
                        .active_link()
                        .map(|l| (l.id, l.connection.clone(), l.local_groups.clone(), l.remote_ready.clone()));
                    for (group, engine) in groups {
                        let want = active
                            .as_ref()
                            .filter(|(_, _, local, remote)| local.contains(&group) && remote.contains(&group));
                        match (want, links.ready_on.get(&group).copied()) {
                            (Some((id, connection, _, _)), current) if current != Some(*id) => {
                                links.ready_on.insert(group.clone(), *id);
                                if current.is_none() {
                                    ready_events.push(group.clone());
                                }
                                actions.push((group, GroupAction::Ready(engine, connection.clone())));
                            }
                            // Not ready on the active link: keep the link the engine has
                            // while the group is still ready there (a switch in
                            // progress), else the member is gone for this group.
                            (None, Some(current))
                                if !links.link(current).is_some_and(|l| {
                                    l.local_groups.contains(&group) && l.remote_ready.contains(&group)
                                }) =>
                            {
                                links.ready_on.remove(&group);
                                actions.push((group, GroupAction::Gone(engine)));
                            }
                            _ => {}
                        }
                    }
                }
            }
            for group in ready_events {
                self.record(&mut state, ManagerEvent::GroupReady { group, device: *device });
            }
            actions
        };
        for (group, action) in actions {
            match action {
                GroupAction::Ready(engine, connection) => {
                    engine.peer_ready(Arc::new(ConnectionPeer::new(connection, group))).await;
                }
                GroupAction::Gone(engine) => engine.peer_gone(device).await,
            }
        }
    }
}

/// Pings `connection` and closes it with `why` if no answer comes within
/// `timeout`. Any answer counts, an error reply included: the peer is alive.
pub(super) fn spawn_probe(connection: Connection, device: DeviceId, timeout: std::time::Duration, why: &'static str) {
    tokio::spawn(async move {
        match connection.emit_with_timeout::<_, ()>(control::PING, &(), timeout).await {
            Ok(()) | Err(peers_sdk::Error::Remote(_)) => {}
            Err(err) => {
                debug!(peer = %device, %err, why, "closing an unresponsive connection");
                connection.close(CloseReason::new(CloseCode::TransportFailure, why)).await;
            }
        }
    });
}
