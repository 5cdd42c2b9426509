//! The devices this instance holds in Redis mode (their presence names one
//! of its connections), with what it keeps for each while it holds it:
//! the connection, how far its registration got, and its request budget.
//!
//! ```text
//!  claim ─▶ Draining ──(the queue's take found it empty: presence "up")──▶ Up
//!             ▲                                                            │
//!             └────────── a newer registration of the device here ◀───────┘
//!  either ──(its connection closed)──▶ released: the budget goes to Redis
//! ```
//!
//! A signal to a device held here and `Up` is handed to its connection
//! directly ([`HeldDevices::direct`]): no call to Redis, as with one
//! instance. Until the drain is done (`Draining`) signals take the Redis
//! path, which queues them behind what is waiting (presence "pending"), so a
//! direct delivery never overtakes a queued message. A registration of the
//! device on this instance turns the old record back to `Draining` before
//! it claims the presence. The table has one entry per device held, so it
//! is bounded by the connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use peers_sdk::DeviceId;

use super::cluster_budgets::{Gcra, Rate};
use super::connection::{Connection, lock};
use super::hub::Peer;

/// How far a held device's registration got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Its queue is being handed over: signals go through Redis.
    Draining,
    /// Its queue was empty and its presence is "up": signals from this
    /// instance are delivered directly.
    Up,
}

#[derive(Debug)]
struct Held {
    /// The connection (its id) holding the device's presence.
    connection: u64,
    conn: Weak<Connection>,
    phase: Phase,
    /// The device's request budget while this instance holds it.
    budget: Gcra,
}

/// This instance's held devices (device → its record).
#[derive(Debug, Default)]
pub(crate) struct HeldDevices {
    devices: Mutex<HashMap<DeviceId, Held>>,
}

impl HeldDevices {
    /// A registration of `device` on this instance is about to claim its
    /// presence: no direct delivery to an older connection of it from now on.
    /// Returns the device's budget if this instance held it (it moves to the
    /// new connection as it is).
    pub(crate) fn registering(&self, device: &DeviceId) -> Option<Gcra> {
        let mut devices = lock(&self.devices);
        let held = devices.get_mut(device)?;
        held.phase = Phase::Draining;
        Some(held.budget)
    }

    /// `conn` holds `device` now (its claim succeeded), with `budget`; its
    /// queue is yet to be drained.
    pub(crate) fn hold(&self, device: DeviceId, conn: &Arc<Connection>, budget: Gcra) {
        let held = Held { connection: conn.peer.id, conn: Arc::downgrade(conn), phase: Phase::Draining, budget };
        lock(&self.devices).insert(device, held);
    }

    /// `device`'s queue was handed over to `connection` and its presence is
    /// "up": signals from this instance go to it directly.
    pub(crate) fn up(&self, device: &DeviceId, connection: u64) {
        if let Some(held) = lock(&self.devices).get_mut(device).filter(|held| held.connection == connection) {
            held.phase = Phase::Up;
        }
    }

    /// `connection` closed: forgets `device` if it held it; returns its budget
    /// (for Redis, where the next registration finds it).
    pub(crate) fn release(&self, device: &DeviceId, connection: u64) -> Option<Gcra> {
        let mut devices = lock(&self.devices);
        devices.get(device).filter(|held| held.connection == connection)?;
        devices.remove(device).map(|held| held.budget)
    }

    /// Whether `connection` holds `device`.
    pub(crate) fn holds(&self, device: &DeviceId, connection: u64) -> bool {
        lock(&self.devices).get(device).is_some_and(|held| held.connection == connection)
    }

    /// Every held device and its connection (for the presence heartbeat).
    pub(crate) fn connections(&self) -> Vec<(DeviceId, u64)> {
        lock(&self.devices).iter().map(|(device, held)| (*device, held.connection)).collect()
    }

    /// Counts a request of `device` at `now` against its budget; whether it
    /// had room (`None`: not held here).
    pub(crate) fn charge(&self, device: &DeviceId, now: u64, rate: Rate) -> Option<bool> {
        lock(&self.devices).get_mut(device).map(|held| held.budget.take(now, rate))
    }

    /// `to`'s connection, if a signal from `from` may be handed to it
    /// directly: `to` is held here, `Up`, its connection open, and its allow
    /// list (none, or one naming `from`) lets `from` reach it. Otherwise the
    /// signal takes the Redis path (queued behind a drain, shadowed, or
    /// delivered through another instance).
    pub(crate) fn direct(&self, to: &DeviceId, from: &DeviceId) -> Option<Arc<Peer>> {
        let conn = {
            let devices = lock(&self.devices);
            let held = devices.get(to).filter(|held| held.phase == Phase::Up)?;
            held.conn.upgrade()?
        };
        let allowed = lock(&conn.allow).as_ref().is_none_or(|list| list.contains(from));
        (allowed && conn.peer.connected()).then(|| conn.peer.clone())
    }
}
