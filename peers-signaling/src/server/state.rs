//! [`SignalingState`]: the request-level operations of the server, behind one
//! trait with two implementations.
//!
//! - [`LocalState`](super::state_local::LocalState): one process. The
//!   sans-IO tables (`queue.rs`, `notices.rs`, `sessions.rs`, `relay.rs`)
//!   behind the hub's mutex, written through to the memory or SQLite store.
//!   Every operation finishes without waiting, so its futures are ready when
//!   they are returned.
//! - `RedisBackend` (`state_redis.rs`, feature `redis`): several instances
//!   sharing Redis; the same rules, with the shared counters and records in
//!   Redis (Lua scripts) and deliveries through socket.io rooms.
//!
//! `connection.rs` parses and checks each request once (`Request::parse`, the
//! registration signature, the `"allow"` signature) and then always calls
//! this trait; it never asks which backend it has. The one thing it takes
//! from the backend is *where* requests run ([`SignalingState::waits`]): a
//! backend that waits on I/O gets a task per connection that runs the
//! connection's requests one at a time, in arrival order; the local one runs
//! them in the connection's read loop, so an offer and its candidates keep
//! their order without a task.
//!
//! Replies are typed where a backend decides them ([`SignalOutcome`],
//! [`RelayOpening`], the online devices of a subscription); the session
//! requests answer with the fields the shared session rules
//! (`session_requests.rs`) build for both backends.

use std::fmt::Debug;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use peers_sdk::DeviceId;
use serde_json::{Map, Value as Json};
use tokio::task::JoinHandle;

use super::Shared;
use super::connection::{Connection, Replier};
use super::hub::CheckedSignal;
use crate::protocol::{AllowList, OutcomeKind, Rejection, RelayEvent, SessionRequest};
use crate::ratelimit::Limited;

/// A backend operation in progress (ready at once for the local backend).
pub(crate) type StateFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A request's charge against the shared budgets: which one had no room.
pub(crate) type Charge<'a> = StateFuture<'a, Result<Option<Limited>, Rejection>>;

/// The reply fields of a request, or its refusal.
pub(crate) type Reply = Result<Map<String, Json>, Rejection>;

/// What became of a signal at first: its outcome and, when queued, its expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SignalOutcome {
    pub(crate) outcome: OutcomeKind,
    /// Unix ms; only for [`OutcomeKind::Queued`].
    pub(crate) expires_at: Option<u64>,
}

/// The answer to a `"relay-open"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RelayOpening {
    /// Waiting for the other device's request.
    Waiting,
    /// Both asked: relay `relay` is open (both parties got `"relay-open"`).
    Open { relay: u64 },
}

/// The request-level state of the server: registrations and presence,
/// signals and the offline queue with its notices, sessions by code, frame
/// relays, and the quotas of each. Every bound and every answer of
/// `docs/signaling.md` is the same whichever backend serves it; the
/// conformance suite (`tests/signaling_state_conformance.rs`) plays each
/// against both.
pub(crate) trait SignalingState: Send + Sync + Debug + 'static {
    /// Whether operations wait on I/O; then each connection runs its requests
    /// in a task of its own, one at a time in arrival order.
    fn waits(&self) -> bool;

    /// The in-memory rate check of a request as it arrives (`ip`, and
    /// `device` once registered), before it is queued. A backend that keeps
    /// the device's budget elsewhere checks only what it keeps here.
    fn check_rate(&self, shared: &Shared, ip: Option<IpAddr>, device: Option<&DeviceId>) -> Result<(), Limited>;

    /// Counts a request against the budgets the backend shares between
    /// instances (none for one process); which one had no room.
    fn charge_request<'a>(&'a self, conn: &'a Connection) -> Charge<'a>;

    /// Binds `device` (its signature already checked) to `conn` with its
    /// allow list: replaces an older connection of the device (told
    /// `replaced`, disconnected), announces it to the watchers its list
    /// allows, answers `replier` with how many queued messages follow, then
    /// delivers them (oldest first; those of senders the list does not name
    /// move to the device's shadow queue) and the outcome notices kept for it.
    fn register<'a>(
        &'a self,
        conn: &'a Arc<Connection>,
        device: DeviceId,
        allow: Option<AllowList>,
        replier: Replier,
    ) -> StateFuture<'a, ()>;

    /// Delivers a checked signal, or queues it within the queue's bounds
    /// (per recipient, per sending device and address, overall), or reports
    /// it expired (`ttl_ms` 0). A sender the recipient's list does not name
    /// gets exactly what a signal to a made-up id gets.
    ///
    /// `charge` is the request's [`charge_request`](Self::charge_request):
    /// nothing takes effect before it is known to be within its budgets, but
    /// the backend may look the recipient up meanwhile (both wait on Redis).
    fn signal<'a>(
        &'a self,
        conn: &'a Connection,
        signal: CheckedSignal,
        charge: Charge<'a>,
    ) -> StateFuture<'a, Result<SignalOutcome, Rejection>>;

    /// Watches `devices` for `conn`'s device `watcher` (within the
    /// per-connection and per-address quotas); returns those online that
    /// allow the watcher.
    fn subscribe<'a>(
        &'a self,
        conn: &'a Connection,
        watcher: DeviceId,
        devices: Vec<DeviceId>,
    ) -> StateFuture<'a, Result<Vec<DeviceId>, Rejection>>;

    /// Stops watching `devices`; the quotas get them back.
    fn unsubscribe<'a>(
        &'a self,
        conn: &'a Connection,
        devices: Vec<DeviceId>,
    ) -> StateFuture<'a, Result<(), Rejection>>;

    /// Replaces the allow list of `device` (the request's signature already
    /// checked); watchers that gain or lose sight of it are told.
    fn set_allow<'a>(
        &'a self,
        conn: &'a Connection,
        device: DeviceId,
        allow: Option<AllowList>,
    ) -> StateFuture<'a, Result<(), Rejection>>;

    /// A session request (create, join, close, reopen) with its rate limits
    /// and the session table's rules.
    fn session<'a>(&'a self, conn: &'a Connection, device: DeviceId, request: SessionRequest)
    -> StateFuture<'a, Reply>;

    /// A `"relay-open"` from `device` for `peer`, within the relay quotas.
    fn relay_open<'a>(
        &'a self,
        conn: &'a Connection,
        device: DeviceId,
        peer: DeviceId,
    ) -> StateFuture<'a, Result<RelayOpening, Rejection>>;

    /// A relay frame, credit or close from `device`, forwarded within the
    /// relay's credit and caps (no reply: refusals close the relay). Never
    /// waits: relay events do not queue behind requests.
    fn relay_event(&self, shared: &Shared, device: DeviceId, event: RelayEvent);

    /// `conn` closed: its device goes offline (unless a newer connection
    /// holds it), its relays end and its subscriptions are given back.
    fn disconnected(&self, conn: &Connection);

    /// Expires what is due at `now` in this process (queued messages,
    /// sessions, relays), telling those concerned; returns the next deadline
    /// it keeps. A backend whose deadlines live elsewhere runs its own loops
    /// ([`spawn_tasks`](Self::spawn_tasks)) and returns `None`.
    fn expire(&self, shared: &Shared, now: u64) -> Option<u64>;

    /// Starts the backend's own background tasks (they end with the server).
    fn spawn_tasks(&self, shared: &Arc<Shared>) -> Vec<JoinHandle<()>>;

    /// Waits (at most `wait`) until what the backend still has to hand to
    /// other instances is sent (a shutting-down server's relay closes).
    fn flush<'a>(&'a self, shared: &'a Shared, wait: Duration) -> StateFuture<'a, ()>;
}
