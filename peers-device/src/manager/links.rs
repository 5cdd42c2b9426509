//! Connections to one device: adopting a verified connection, choosing the
//! active one, handing traffic over without losing calls in flight, and closing.
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
//!   retire every other link                retire every other link
//! retire(link): wait until no call of this side is in flight on it (bounded by
//!   drain_timeout), send peers:retire on it; close it once both sides retired
//!   (or after a second drain_timeout).
//! ```
//!
//! The follower never closes a link on preference; it follows the leader's
//! `takeover`, or, should that never arrive, the leader's `retire` of the link
//! in use (it then moves to its best other link). A group becomes ready on a link when this side registered its
//! RPCs there and the peer's `peers:groupReady` for it arrived; the engine is
//! handed the active link of each ready group.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use peers_sdk::socket::TransportKind;
use peers_sdk::{CloseCode, CloseReason, Connection, DeviceId};
use tracing::{debug, info};

use super::api::{DeviceLinks, Inner, Link, State, lock};
use super::class::ConnectionClass;
use super::control::{self, register};
use super::health::Health;
use super::preference::{Candidate, Occupant, pick_eviction, should_switch};
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
    Admitted { link_id: u64, evicted: Vec<Connection>, groups: Vec<(GroupId, Arc<dyn SyncGroup>)> },
}

enum GroupAction {
    Ready(Arc<dyn SyncGroup>, Connection),
    Gone(Arc<dyn SyncGroup>),
}

impl Inner {
    /// Adds a verified connection.
    pub(super) async fn adopt(self: &Arc<Self>, connection: Connection, dialed: bool) -> Result<()> {
        let device = connection.remote().device_id;
        if device == self.me {
            connection.close(CloseReason::new(CloseCode::Refused, "connection to this device itself")).await;
            return Err(Error::SelfConnection);
        }
        let class = ConnectionClass::of(connection.socket_info(), connection.path().as_ref());
        let transport = transport_name(&connection.socket_info().transport);
        let admission = {
            let mut state = lock(&self.state);
            if state.shut_down {
                Admission::ShutDown
            } else {
                self.admit(&mut state, &connection, device, class, dialed, transport)
            }
        };
        let (link_id, evicted, groups) = match admission {
            Admission::ShutDown => {
                connection.close(CloseReason::new(CloseCode::GoingAway, "device shutting down")).await;
                return Err(Error::ShutDown);
            }
            Admission::Refused => {
                let reason = "connection limit reached; every connection held is better";
                connection.close(CloseReason::new(CloseCode::LimitExceeded, reason)).await;
                return Err(Error::ConnectionLimit { limit: self.config.max_connections });
            }
            Admission::Admitted { link_id, evicted, groups } => (link_id, evicted, groups),
        };
        info!(peer = %device, %class, link = link_id, "connection verified");
        for victim in evicted {
            victim.close(CloseReason::new(CloseCode::LimitExceeded, "evicted for a better connection")).await;
        }
        let setups = self.setups.read().unwrap_or_else(|e| e.into_inner()).clone();
        for setup in setups {
            setup(&connection, device);
        }
        register(self, &connection, device, link_id);
        for (_, engine) in &groups {
            expose_group(&connection, engine.clone());
        }
        self.announce_groups(connection.clone(), groups.into_iter().map(|(id, _)| id).collect());
        self.spawn_watchers(&connection, device, link_id);
        if !dialed {
            self.probe_kept_link(device, link_id, class);
        }
        if self.leads(&device) {
            self.decide(&device);
        }
        self.refresh_groups(&device).await;
        Ok(())
    }

    /// A peer that dials again while this side holds an active link that the
    /// new one cannot beat has most likely lost that link (its network changed,
    /// or the link died on its side first). Pings the active link at once and
    /// closes it if it does not answer, so the peer's next dial is kept rather
    /// than replaced until the regular pings give up.
    fn probe_kept_link(&self, device: DeviceId, new_link: u64, class: ConnectionClass) {
        let kept = {
            let state = lock(&self.state);
            let active = state.devices.get(&device).and_then(|d| d.active_link());
            active.filter(|l| l.id != new_link && !l.retiring && l.class <= class).map(|l| l.connection.clone())
        };
        if let Some(kept) = kept {
            spawn_probe(
                kept,
                device,
                self.config.health.network_probe_timeout,
                "no answer while the peer dialed again",
            );
        }
    }

    /// Admits a connection into the state (evicting at the limit), or refuses it.
    fn admit(
        &self,
        state: &mut State,
        connection: &Connection,
        device: DeviceId,
        class: ConnectionClass,
        dialed: bool,
        transport: String,
    ) -> Admission {
        {
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
            state.next_link += 1;
            let id = state.next_link;
            let links = state.devices.entry(device).or_insert_with(|| DeviceLinks {
                links: Vec::new(),
                active: None,
                switched_at: Instant::now(),
                ready_on: Default::default(),
            });
            links.links.push(Link {
                id,
                connection: connection.clone(),
                class,
                transport: transport.clone(),
                dialed,
                since: SystemTime::now(),
                health: Health::new(self.config.health.clone(), Instant::now()),
                remote_ready: Default::default(),
                local_groups: groups.iter().map(|(id, _)| id.clone()).collect(),
                retiring: false,
                peer_adopted: false,
                local_retired: false,
                peer_retired: false,
            });
            if links.active.is_none() {
                links.active = Some(id);
                links.switched_at = Instant::now();
            }
            self.record(state, ManagerEvent::Connected { device, class, transport });
            Admission::Admitted { link_id: id, evicted, groups }
        }
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
    }

    /// Tells the peer which groups this side registered on `connection`.
    pub(super) fn announce_groups(self: &Arc<Self>, connection: Connection, groups: Vec<GroupId>) {
        tokio::spawn(async move {
            if let Err(err) = control::call(&connection, control::GROUP_READY, &groups).await {
                debug!(%err, "groupReady not delivered");
            }
        });
    }

    /// Leader only: picks the active link and tells the follower.
    pub(super) fn decide(self: &Arc<Self>, device: &DeviceId) {
        let (takeover, retire) = {
            let mut state = lock(&self.state);
            let Some(links) = state.devices.get_mut(device) else { return };
            let now = Instant::now();
            // Only links the peer has adopted too may take traffic or be retired: a
            // call on one it has not would find none of its RPCs registered yet. A
            // newer link is decided on when its `groupReady` arrives.
            let active = links.active;
            let live: Vec<&Link> =
                links.links.iter().filter(|l| !l.retiring && (l.peer_adopted || active == Some(l.id))).collect();
            let Some(mut best) = links.active_link().filter(|l| !l.retiring).or_else(|| live.first().copied()) else {
                return;
            };
            for link in &live {
                if link.id != best.id
                    && should_switch(candidate(best), candidate(link), links.switched_at, now, &self.config.preference)
                {
                    best = link;
                }
            }
            let best_id = best.id;
            let takeover = (live.len() > 1 || links.active != Some(best_id)).then(|| best.connection.clone());
            let retire: Vec<u64> = live.iter().filter(|l| l.id != best_id).map(|l| l.id).collect();
            let from = links.active_link().map(|l| l.class);
            let to = best.class;
            if links.active != Some(best_id) {
                links.active = Some(best_id);
                links.switched_at = now;
                if let Some(from) = from {
                    self.record(&mut state, ManagerEvent::Switched { device: *device, from, to });
                }
            }
            (takeover, retire)
        };
        if let Some(connection) = takeover {
            tokio::spawn(async move {
                if let Err(err) = control::call(&connection, control::TAKEOVER, &()).await {
                    debug!(%err, "takeover not delivered");
                }
            });
        }
        for id in retire {
            self.retire(*device, id);
        }
    }

    /// Follower: the leader made `link_id` the active link.
    pub(super) async fn on_takeover(self: &Arc<Self>, device: &DeviceId, link_id: u64) {
        let retire: Vec<u64> = {
            let mut state = lock(&self.state);
            let Some(links) = state.devices.get_mut(device) else { return };
            let Some(to) = links.link(link_id).filter(|l| !l.retiring).map(|l| l.class) else { return };
            let from = links.active_link().map(|l| l.class);
            let changed = links.active != Some(link_id);
            links.active = Some(link_id);
            let retire = links.links.iter().filter(|l| l.id != link_id && !l.retiring).map(|l| l.id).collect();
            if changed {
                links.switched_at = Instant::now();
                if let Some(from) = from {
                    self.record(&mut state, ManagerEvent::Switched { device: *device, from, to });
                }
            }
            retire
        };
        for id in retire {
            self.retire(*device, id);
        }
        self.refresh_groups(device).await;
    }

    /// Stops using a link: drains this side's calls on it, then says so.
    pub(super) fn retire(self: &Arc<Self>, device: DeviceId, link_id: u64) {
        let connection = {
            let mut state = lock(&self.state);
            let Some(link) = state.devices.get_mut(&device).and_then(|d| d.link_mut(link_id)) else { return };
            if link.retiring {
                return;
            }
            link.retiring = true;
            link.connection.clone()
        };
        let weak = Arc::downgrade(self);
        let drain = self.config.drain_timeout;
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + drain;
            while connection.pending_calls() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            let _ = connection.emit_with_timeout::<_, ()>(control::RETIRE, &(), drain).await;
            let close_now = weak.upgrade().is_some_and(|inner| {
                let mut state = lock(&inner.state);
                state.devices.get_mut(&device).and_then(|d| d.link_mut(link_id)).is_some_and(|link| {
                    link.local_retired = true;
                    link.peer_retired
                })
            });
            if !close_now {
                // The peer has calls of its own to finish; it closes when done, or
                // this side does after a second drain period.
                tokio::time::sleep(drain).await;
            }
            connection.close(CloseReason::new(CloseCode::Replaced, "superseded by a better connection")).await;
        });
    }

    /// The peer retired `link_id`.
    pub(super) async fn on_peer_retired(self: &Arc<Self>, device: &DeviceId, link_id: u64) {
        let (close, retire_too, follow) = {
            let mut state = lock(&self.state);
            let Some(links) = state.devices.get_mut(device) else { return };
            let active = links.active;
            // The follower's fallback: the leader retired the link in use here, so it
            // keeps another one, whose takeover has not arrived (or never will).
            let follow = (active == Some(link_id) && !self.leads(device))
                .then(|| {
                    let others = links.links.iter().filter(|l| l.id != link_id && !l.retiring);
                    others.min_by_key(|l| (l.class, l.health.latency())).map(|l| l.id)
                })
                .flatten();
            let Some(link) = links.link_mut(link_id) else { return };
            link.peer_retired = true;
            (link.local_retired.then(|| link.connection.clone()), !link.retiring && active != Some(link_id), follow)
        };
        if let Some(connection) = close {
            connection.close(CloseReason::new(CloseCode::Replaced, "superseded by a better connection")).await;
        } else if let Some(next) = follow {
            // As if the takeover had arrived on `next`: it becomes active and every
            // other link, this one included, is retired.
            self.on_takeover(device, next).await;
        } else if retire_too {
            self.retire(*device, link_id);
        }
    }

    /// A link closed: forget it, move to another link or mark the device gone.
    pub(super) async fn link_closed(self: &Arc<Self>, device: &DeviceId, link_id: u64, reason: String) {
        let leader_decides = {
            let mut state = lock(&self.state);
            let Some(links) = state.devices.get_mut(device) else { return };
            let Some(position) = links.links.iter().position(|l| l.id == link_id) else { return };
            let link = links.links.remove(position);
            let mut switched = None;
            if links.active == Some(link_id) {
                let next = links
                    .links
                    .iter()
                    .filter(|l| !l.retiring)
                    .min_by_key(|l| (l.class, l.health.latency()))
                    .map(|l| (l.id, l.class));
                links.active = next.map(|(id, _)| id);
                links.switched_at = Instant::now();
                switched = next.map(|(_, class)| class);
            }
            let empty = links.links.is_empty();
            if empty {
                state.devices.remove(device);
            }
            self.record(&mut state, ManagerEvent::Closed { device: *device, class: link.class, reason });
            if let Some(to) = switched {
                self.record(&mut state, ManagerEvent::Switched { device: *device, from: link.class, to });
            }
            !empty && self.leads(device)
        };
        if leader_decides {
            self.decide(device);
        }
        self.refresh_groups(device).await;
    }

    /// The peer registered `groups` on `link_id`. Recorded whether or not they
    /// are shared yet (this side may join a group after the peer announced it);
    /// readiness also needs this side's registration.
    pub(super) async fn on_groups_ready(self: &Arc<Self>, device: &DeviceId, link_id: u64, groups: Vec<GroupId>) {
        let newly_adopted = {
            let mut state = lock(&self.state);
            let Some(link) = state.devices.get_mut(device).and_then(|d| d.link_mut(link_id)) else { return };
            for group in groups {
                if link.remote_ready.len() >= MAX_ANNOUNCED_GROUPS {
                    break;
                }
                link.remote_ready.insert(group);
            }
            !std::mem::replace(&mut link.peer_adopted, true)
        };
        if newly_adopted && self.leads(device) {
            self.decide(device);
        }
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
/// `timeout`. Any answer counts, an error reply included: a link the peer is
/// still adopting answers `UnknownMethod` until its control RPCs are
/// registered, and it is alive.
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
