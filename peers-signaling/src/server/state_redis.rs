//! [`RedisBackend`]: the [`SignalingState`] of several instances sharing
//! Redis. Each operation is carried out by the Redis-mode modules:
//! `cluster.rs` (registration, signals, allow lists, the shared rate
//! budgets), `cluster_presence.rs`, `cluster_sessions.rs` and
//! `cluster_relay.rs`, which reuse the sans-IO rules of one instance
//! (`queue.rs`'s limits, `sessions.rs`, `relay.rs`'s `RelayLeg`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use peers_sdk::DeviceId;
use tokio::task::JoinHandle;

use super::cluster::{self, Cluster};
use super::connection::{Connection, Replier, lock};
use super::hub::CheckedSignal;
use super::state::{Charge, RelayOpening, Reply, SignalOutcome, SignalingState, StateFuture};
use super::{Shared, cluster_budgets, cluster_presence, cluster_relay, cluster_sessions};
use crate::protocol::{AllowList, Rejection, RelayEvent, SessionRequest};
use crate::ratelimit::Limited;

/// Redis mode's state: this instance's part ([`Cluster`]) of what Redis holds.
#[derive(Debug)]
pub(crate) struct RedisBackend(pub(crate) Arc<Cluster>);

impl SignalingState for RedisBackend {
    fn waits(&self) -> bool {
        true
    }

    fn check_rate(&self, shared: &Shared, ip: Option<IpAddr>, device: Option<&DeviceId>) -> Result<(), Limited> {
        // The address's budget is shared (`charge_request`, leased); it is
        // kept here too, so a flood at one instance is refused first. The
        // device's lives on the instance that holds the device
        // (`cluster_budgets.rs`).
        shared.limiters.check(ip, None)?;
        let Some(device) = device else { return Ok(()) };
        match self.0.charge_device(device) {
            Some(true) => Ok(()),
            Some(false) => Err(Limited::Device),
            // Not held here (its connection is going): this instance's own.
            None => shared.limiters.check(None, Some(device)),
        }
    }

    fn charge_request<'a>(&'a self, conn: &'a Connection) -> Charge<'a> {
        self.0.charge_address(conn.ip())
    }

    fn register<'a>(
        &'a self,
        conn: &'a Arc<Connection>,
        device: DeviceId,
        allow: Option<AllowList>,
        replier: Replier,
    ) -> StateFuture<'a, ()> {
        Box::pin(cluster::register(&self.0, conn, device, allow, replier))
    }

    fn signal<'a>(
        &'a self,
        conn: &'a Connection,
        signal: CheckedSignal,
        charge: Charge<'a>,
    ) -> StateFuture<'a, Result<SignalOutcome, Rejection>> {
        Box::pin(cluster::signal(&self.0, &conn.shared, signal, charge))
    }

    fn subscribe<'a>(
        &'a self,
        conn: &'a Connection,
        _watcher: DeviceId,
        devices: Vec<DeviceId>,
    ) -> StateFuture<'a, Result<Vec<DeviceId>, Rejection>> {
        Box::pin(cluster_presence::subscribe(&self.0, conn, devices, true))
    }

    fn unsubscribe<'a>(
        &'a self,
        conn: &'a Connection,
        devices: Vec<DeviceId>,
    ) -> StateFuture<'a, Result<(), Rejection>> {
        Box::pin(async move { cluster_presence::subscribe(&self.0, conn, devices, false).await.map(drop) })
    }

    fn set_allow<'a>(
        &'a self,
        conn: &'a Connection,
        device: DeviceId,
        allow: Option<AllowList>,
    ) -> StateFuture<'a, Result<(), Rejection>> {
        Box::pin(cluster::set_allow(&self.0, conn, device, allow))
    }

    fn session<'a>(
        &'a self,
        conn: &'a Connection,
        device: DeviceId,
        request: SessionRequest,
    ) -> StateFuture<'a, Reply> {
        Box::pin(cluster_sessions::request(&self.0, conn, device, request))
    }

    fn relay_open<'a>(
        &'a self,
        conn: &'a Connection,
        device: DeviceId,
        peer: DeviceId,
    ) -> StateFuture<'a, Result<RelayOpening, Rejection>> {
        Box::pin(cluster_relay::open(&self.0, conn, device, peer))
    }

    fn relay_event(&self, shared: &Shared, device: DeviceId, event: RelayEvent) {
        match event {
            RelayEvent::Frame(frame) => cluster_relay::frame(shared, &self.0, device, frame),
            RelayEvent::Credit(credit) => cluster_relay::credit(shared, &self.0, device, credit),
            RelayEvent::Close(close) => cluster_relay::close(shared, &self.0, device, close),
        }
    }

    fn disconnected(&self, conn: &Connection) {
        let shared = &conn.shared;
        if let Some(device) = conn.device() {
            // The instance's own record of its connections (relay legs find
            // their devices there).
            shared.hub().unregister(&device, conn.peer.id);
        }
        // Redis mode keeps the subscriptions in the connection (its rooms).
        shared.address_subscriptions.release(conn.ip(), lock(&conn.watching).len());
        if let Some(device) = conn.device() {
            cluster::disconnected(shared, &self.0, device, conn.peer.id, lock(&conn.allow).clone());
        }
    }

    fn expire(&self, _shared: &Shared, _now: u64) -> Option<u64> {
        // Deadlines live in Redis: `spawn_tasks` runs the expiry loop.
        None
    }

    fn spawn_tasks(&self, shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![
            tokio::spawn(cluster::run_heartbeat(Arc::downgrade(&self.0), Arc::downgrade(shared))),
            tokio::spawn(cluster::run_expiry(Arc::downgrade(&self.0))),
            tokio::spawn(cluster_budgets::run_lease_returns(Arc::downgrade(&self.0))),
        ];
        tasks.extend(cluster_relay::spawn_tasks(shared, &self.0));
        tasks
    }

    fn flush<'a>(&'a self, _shared: &'a Shared, wait: Duration) -> StateFuture<'a, ()> {
        Box::pin(cluster_relay::flush(&self.0, wait))
    }
}
