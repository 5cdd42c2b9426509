//! What a connection has in flight, and when it last heard from the peer: the
//! inputs of a liveness check (any frame received proves the path works, so a
//! busy connection needs no extra ping) and of a drain (retiring a connection
//! once nothing of this side is left on it, without polling).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Connection, ConnectionState, Inner};

/// Per-connection activity, updated by the reader and by finished calls.
pub(super) struct Activity {
    started: Instant,
    /// Nanoseconds after `started` when the last frame arrived (a u64 lasts 584 years).
    last_heard_ns: AtomicU64,
    /// Woken whenever a call or an outgoing stream of this side ends, and at close.
    settled: Notify,
}

impl Activity {
    pub(super) fn new() -> Self {
        Activity { started: Instant::now(), last_heard_ns: AtomicU64::new(0), settled: Notify::new() }
    }

    /// A frame arrived.
    pub(super) fn heard(&self) {
        let ns = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_heard_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// A call or an outgoing stream ended, or the connection closed.
    pub(super) fn settled(&self) {
        self.settled.notify_waiters();
    }

    fn last_heard(&self) -> Instant {
        self.started + Duration::from_nanos(self.last_heard_ns.load(Ordering::Relaxed))
    }
}

impl Inner {
    fn in_flight(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len() + self.outgoing_streams()
    }
}

impl Connection {
    /// When the last frame from the peer arrived (a reply, a call, stream data,
    /// anything): the path worked then. The handshake's end counts as the first.
    pub fn last_received(&self) -> Instant {
        self.inner.activity.last_heard()
    }

    /// Calls of this side waiting for replies, plus streams this side opened
    /// and has not finished.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }

    /// Completes once nothing of this side is in flight ([`in_flight`](Self::in_flight)
    /// is 0) or the connection is closed. Calls and streams started meanwhile
    /// are waited for too.
    pub async fn idle(&self) {
        let inner = &self.inner;
        loop {
            let settled = inner.activity.settled.notified();
            tokio::pin!(settled);
            // Registered before the check, so an end between the check and the
            // wait is not missed.
            settled.as_mut().enable();
            if inner.in_flight() == 0 || matches!(*inner.state.borrow(), ConnectionState::Closed(_)) {
                return;
            }
            settled.await;
        }
    }
}
