//! [`LocalState`]: the [`SignalingState`] of a single instance. The tables
//! live in the hub (`hub.rs`) behind one mutex and are written through to the
//! memory or SQLite store; nothing waits, so every future it returns is
//! ready, and requests run in their connection's read loop.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use peers_sdk::DeviceId;
use tokio::task::JoinHandle;
use tracing::info;

use super::connection::{Connection, Replier, charged, registered_reply};
use super::hub::{AfterUnlock, CheckedSignal};
use super::state::{Charge, RelayOpening, Reply, SignalOutcome, SignalingState, StateFuture};
use super::{Shared, metrics as m, now_ms, relay_requests, session_requests};
use crate::protocol::{AllowList, Rejection, RelayEvent, SessionRequest};
use crate::ratelimit::Limited;

/// One process's state: the hub's tables and the store behind them.
#[derive(Debug, Default)]
pub(crate) struct LocalState;

fn ready<'a, T: Send + 'a>(value: T) -> StateFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl SignalingState for LocalState {
    fn waits(&self) -> bool {
        false
    }

    fn check_rate(&self, shared: &Shared, ip: Option<IpAddr>, device: Option<&DeviceId>) -> Result<(), Limited> {
        shared.limiters.check(ip, device)
    }

    fn charge_request<'a>(&'a self, _conn: &'a Connection) -> Charge<'a> {
        // `check_rate` counted it already: one process has no other budget.
        ready(Ok(None))
    }

    fn register<'a>(
        &'a self,
        conn: &'a Arc<Connection>,
        device: DeviceId,
        allow: Option<AllowList>,
        replier: Replier,
    ) -> StateFuture<'a, ()> {
        let shared = &conn.shared;
        let mut after = AfterUnlock::default();
        {
            // One lock over "bind, reply, drain": no direct signal can slip
            // between the device's queued messages.
            let mut hub = shared.hub();
            conn.bind(device);
            let reply = |queued: usize| replier.send(Ok(registered_reply(&device, queued)));
            let delivered = hub.register(now_ms(), device, conn.peer.clone(), allow, reply, &mut after);
            m::devices_online(hub.online_count());
            info!(%device, peer = conn.peer.id, delivered, "device registered");
        }
        after.run();
        shared.wake_expiry();
        ready(())
    }

    fn signal<'a>(
        &'a self,
        conn: &'a Connection,
        signal: CheckedSignal,
        charge: Charge<'a>,
    ) -> StateFuture<'a, Result<SignalOutcome, Rejection>> {
        // The charge is ready here (no shared budget), so this completes
        // at its first poll, in the read loop.
        Box::pin(async move {
            charged(charge.await)?;
            let shared = &conn.shared;
            let sent = shared.hub().forward_signal(now_ms(), signal);
            if let Ok((_, Some(_))) = &sent {
                shared.wake_expiry();
            }
            sent.map(|(outcome, expires_at)| SignalOutcome { outcome, expires_at })
        })
    }

    fn subscribe<'a>(
        &'a self,
        conn: &'a Connection,
        watcher: DeviceId,
        devices: Vec<DeviceId>,
    ) -> StateFuture<'a, Result<Vec<DeviceId>, Rejection>> {
        let shared = &conn.shared;
        let admit = |new| shared.address_subscriptions.reserve(conn.ip(), new);
        let max = shared.config.max_subscriptions;
        ready(shared.hub().subscribe(&conn.peer, watcher, &devices, max, admit))
    }

    fn unsubscribe<'a>(
        &'a self,
        conn: &'a Connection,
        devices: Vec<DeviceId>,
    ) -> StateFuture<'a, Result<(), Rejection>> {
        let removed = conn.shared.hub().unsubscribe(conn.peer.id, &devices);
        conn.shared.address_subscriptions.release(conn.ip(), removed);
        ready(Ok(()))
    }

    fn set_allow<'a>(
        &'a self,
        conn: &'a Connection,
        device: DeviceId,
        allow: Option<AllowList>,
    ) -> StateFuture<'a, Result<(), Rejection>> {
        conn.shared.hub().set_allow(device, allow);
        ready(Ok(()))
    }

    fn session<'a>(
        &'a self,
        conn: &'a Connection,
        device: DeviceId,
        request: SessionRequest,
    ) -> StateFuture<'a, Reply> {
        let shared = &conn.shared;
        let reply = {
            let mut hub = shared.hub();
            session_requests::handle(&mut *hub, &shared.limiters, conn.ip(), device, request)
        };
        shared.wake_expiry();
        ready(reply)
    }

    fn relay_open<'a>(
        &'a self,
        conn: &'a Connection,
        device: DeviceId,
        peer: DeviceId,
    ) -> StateFuture<'a, Result<RelayOpening, Rejection>> {
        ready(relay_requests::open(&conn.shared, device, conn.ip(), peer))
    }

    fn relay_event(&self, shared: &Shared, device: DeviceId, event: RelayEvent) {
        relay_requests::handle(shared, device, event);
    }

    fn disconnected(&self, conn: &Connection) {
        let shared = &conn.shared;
        let mut hub = shared.hub();
        if let Some(device) = conn.device()
            && hub.unregister(&device, conn.peer.id)
        {
            info!(%device, "device offline");
        }
        let watched = hub.forget_watcher(conn.peer.id);
        shared.address_subscriptions.release(conn.ip(), watched);
    }

    fn expire(&self, shared: &Shared, now: u64) -> Option<u64> {
        let mut hub = shared.hub();
        hub.expire(now);
        hub.next_expiry()
    }

    fn spawn_tasks(&self, _shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
        Vec::new()
    }

    fn flush<'a>(&'a self, _shared: &'a Shared, _wait: Duration) -> StateFuture<'a, ()> {
        ready(())
    }
}
