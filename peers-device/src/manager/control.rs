//! The manager's own RPCs on every connection, and the tasks that use them.
//!
//! | method               | arguments          | purpose                                   |
//! |----------------------|--------------------|-------------------------------------------|
//! | `peers:ping`         | `()`               | health; answered with `()`                |
//! | `peers:groupReady`   | `[groupId]`        | "I registered these groups' RPCs here"     |
//! | `peers:groupLeft`    | `[groupId]`        | "I removed them"                          |
//! | `peers:takeover`     | `()`               | leader: "use this connection from now on" |
//! | `peers:retire`       | `()`               | "no calls of mine are left on this one"   |
//! | `peers:deviceMessage`| `DeviceMessage`    | multi-hop signed device messages          |

use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use peers_sdk::rpc::{RemoteError, RemoteErrorCode};
use peers_sdk::{CloseCode, CloseReason, Connection, ConnectionConfig, DeviceId};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::api::{Inner, lock, now_ms};
use super::health::{Liveness, LivenessStep, Verdict};
use crate::device_message::{DeviceMessage, Route};
use crate::group::GroupId;

pub(super) const PING: &str = "peers:ping";
pub(super) const GROUP_READY: &str = "peers:groupReady";
pub(super) const GROUP_LEFT: &str = "peers:groupLeft";
pub(super) const TAKEOVER: &str = "peers:takeover";
pub(super) const RETIRE: &str = "peers:retire";
pub(super) const DEVICE_MESSAGE: &str = "peers:deviceMessage";

/// What [`Inner::connection_config`]'s set-up step leaves for
/// [`adopt`](Inner::adopt): the link id the control handlers were registered
/// with, how many application set-ups ran, and the gate those handlers wait on
/// until the link is in the state.
pub(super) struct Adoption {
    pub(super) prepared: Arc<OnceLock<Prepared>>,
    pub(super) admitted: watch::Sender<bool>,
}

/// What the set-up step did on a connection.
#[derive(Clone, Copy, Debug)]
pub(super) struct Prepared {
    pub(super) link: u64,
    pub(super) setups_run: usize,
}

impl Inner {
    /// The connection config for one handshake: the manager's, plus a set-up
    /// step that, once the peer is verified and before it is told the
    /// connection is ready, runs the application's set-ups and registers the
    /// control methods. So the peer's first call (the manager's `groupReady`
    /// or an application RPC) finds its handler.
    pub(super) fn connection_config(self: &Arc<Self>) -> (ConnectionConfig, Adoption) {
        let prepared = Arc::new(OnceLock::new());
        let (admitted, gate) = watch::channel(false);
        let (weak, slot) = (Arc::downgrade(self), prepared.clone());
        let config = self.config.connection.clone().with_setup(move |connection| {
            let Some(inner) = weak.upgrade() else { return };
            let device = connection.remote().device_id;
            let link = {
                let mut state = lock(&inner.state);
                state.next_link += 1;
                state.next_link
            };
            let setups = lock(&inner.setups).clone();
            for setup in &setups {
                setup(connection, device);
            }
            register(&inner, connection, device, link, gate.clone());
            let _ = slot.set(Prepared { link, setups_run: setups.len() });
        });
        (config, Adoption { prepared, admitted })
    }
}

/// What a link's control handlers hold: the manager, and the gate that opens once
/// the link is adopted (a moment after the handshake).
#[derive(Clone)]
struct LinkGate {
    inner: Weak<Inner>,
    gate: watch::Receiver<bool>,
}

impl LinkGate {
    /// The manager, once the link is adopted; otherwise why not (the link never
    /// will be, and its connection is then closed, or the manager is gone).
    async fn adopted(mut self) -> Result<Arc<Inner>, &'static str> {
        self.gate.wait_for(|admitted| *admitted).await.map_err(|_| "connection not adopted")?;
        self.inner.upgrade().ok_or("shutting down")
    }
}

/// Registers the control methods on a new connection. Those about the link
/// wait until it is adopted before acting.
fn register(inner: &Arc<Inner>, connection: &Connection, device: DeviceId, link: u64, gate: watch::Receiver<bool>) {
    connection.expose_rpc(PING, |(): ()| async { Ok::<_, RemoteError>(()) });
    let handle = LinkGate { inner: Arc::downgrade(inner), gate };
    let h = handle.clone();
    connection.expose_rpc(GROUP_READY, move |groups: Vec<GroupId>| {
        let h = h.clone();
        async move {
            if let Ok(inner) = h.adopted().await {
                inner.on_groups_ready(&device, link, groups).await;
            }
            Ok::<_, RemoteError>(())
        }
    });
    let h = handle.clone();
    connection.expose_rpc(GROUP_LEFT, move |groups: Vec<GroupId>| {
        let h = h.clone();
        async move {
            if let Ok(inner) = h.adopted().await {
                inner.on_groups_left(&device, link, groups).await;
            }
            Ok::<_, RemoteError>(())
        }
    });
    let h = handle.clone();
    connection.expose_rpc(TAKEOVER, move |(): ()| {
        let h = h.clone();
        async move {
            // Only the leader may move traffic; a takeover from the other side is ignored.
            if let Ok(inner) = h.adopted().await
                && !inner.leads(&device)
            {
                inner.on_takeover(&device, link).await;
            }
            Ok::<_, RemoteError>(())
        }
    });
    let h = handle.clone();
    connection.expose_rpc(RETIRE, move |(): ()| {
        let h = h.clone();
        async move {
            if let Ok(inner) = h.adopted().await {
                inner.on_peer_retired(&device, link).await;
            }
            Ok::<_, RemoteError>(())
        }
    });
    connection.expose_rpc(DEVICE_MESSAGE, move |message: DeviceMessage| {
        let h = handle.clone();
        async move {
            match h.adopted().await {
                Ok(inner) => inner.on_device_message(device, message).await,
                Err(why) => Err(RemoteError::new(RemoteErrorCode::Busy, why)),
            }
        }
    });
}

/// Pings a link on the health schedule; closes it after too many failures.
pub(super) async fn keep_pinging(inner: Weak<Inner>, connection: Connection, device: DeviceId, link: u64) {
    loop {
        let Some(next) = inner.upgrade().and_then(|inner| {
            let state = lock(&inner.state);
            state
                .devices
                .get(&device)
                .and_then(|d| d.link(link))
                .map(|l| (l.health.next_ping(), l.health.ping_timeout()))
        }) else {
            return;
        };
        let (at, timeout) = next;
        tokio::time::sleep_until(at.into()).await;
        let started = Instant::now();
        let outcome = connection.emit_with_timeout::<_, ()>(PING, &(), timeout).await;
        let Some(inner) = inner.upgrade() else { return };
        if let Err(err) = &outcome {
            debug!(peer = %device, %err, "ping failed");
        }
        let rtt = outcome.is_ok().then(|| started.elapsed());
        let verdict = {
            let mut state = lock(&inner.state);
            let Some(verdict) = state.devices.get_mut(&device).and_then(|d| d.record_ping(link, rtt, Instant::now()))
            else {
                return;
            };
            verdict
        };
        if verdict == Verdict::Dead {
            warn!(peer = %device, "closing a connection whose pings keep failing");
            let failures = inner.config.health.max_failures;
            let reason = format!("{failures} pings in a row failed");
            connection.close(CloseReason::new(CloseCode::Timeout, reason)).await;
            return;
        }
    }
}

/// The liveness check of one link: pings it whenever nothing has arrived on
/// it for [`HealthOptions::liveness_idle`](super::health::HealthOptions::liveness_idle),
/// reports it suspect past
/// [`liveness_suspect`](super::health::HealthOptions::liveness_suspect) (and
/// healthy again when it is heard), and silent once nothing at all arrived for
/// [`liveness_timeout`](super::health::HealthOptions::liveness_timeout). Ends
/// when the connection closes.
pub(super) async fn keep_alive(inner: Weak<Inner>, connection: Connection, device: DeviceId, link: u64) {
    let Some(options) = inner.upgrade().map(|inner| inner.config.health.clone()) else { return };
    let liveness = Liveness::new(&options);
    let closed = connection.closed();
    tokio::pin!(closed);
    let mut last_ping: Option<Instant> = None;
    let mut suspect = false;
    loop {
        let now = Instant::now();
        let step = liveness.step(connection.last_received(), last_ping, now);
        let (ping, is_suspect, next) = match step {
            LivenessStep::Wait(at) => (false, false, at),
            LivenessStep::Probe(at) => (true, false, at),
            LivenessStep::Suspect { ping, next } => (ping, true, next),
            LivenessStep::Dead => {
                if let Some(inner) = inner.upgrade() {
                    inner.on_silent(&device, link).await;
                }
                return;
            }
        };
        if ping {
            // The answer (any frame) is what counts, not this call's result;
            // at most timeout / idle pings are out at once.
            last_ping = Some(now);
            let (probe, timeout) = (connection.clone(), options.liveness_timeout);
            tokio::spawn(async move {
                let _ = probe.emit_with_timeout::<_, ()>(PING, &(), timeout).await;
            });
        }
        if is_suspect != suspect {
            suspect = is_suspect;
            let Some(inner) = inner.upgrade() else { return };
            inner.on_suspect(&device, link, suspect).await;
        }
        tokio::select! {
            _ = &mut closed => return,
            () = tokio::time::sleep_until(next.into()) => {}
        }
    }
}

impl Inner {
    /// A device message arrived from the neighbour `from`.
    async fn on_device_message(self: &Arc<Self>, from: DeviceId, message: DeviceMessage) -> Result<(), RemoteError> {
        let neighbours = self.neighbours();
        let route = lock(&self.router).route(message, Some(from), &neighbours, now_ms());
        match route {
            Ok(Route::Deliver(message)) => {
                self.deliver(message).map_err(|reason| RemoteError::new(RemoteErrorCode::Busy, reason))
            }
            Ok(Route::Forward(message, next)) => {
                self.forward(message, next).await;
                Ok(())
            }
            Err(refusal) => {
                debug!(peer = %from, %refusal, "device message refused");
                Err(RemoteError::handler(refusal))
            }
        }
    }

    /// Sends a device message on to neighbours (each on its own task).
    pub(super) async fn forward(self: &Arc<Self>, message: DeviceMessage, next: Vec<DeviceId>) {
        let message = Arc::new(message);
        for device in next {
            let connection =
                lock(&self.state).devices.get(&device).and_then(|d| d.active_link()).map(|l| l.connection.clone());
            let Some(connection) = connection else { continue };
            let message = message.clone();
            tokio::spawn(async move {
                if let Err(err) = connection.emit::<_, ()>(DEVICE_MESSAGE, message.as_ref()).await {
                    debug!(peer = %device, %err, "device message not forwarded");
                }
            });
        }
    }
}
