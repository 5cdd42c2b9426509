//! Redis mode: sessions by code, shared by every instance.
//!
//! The rules are the in-process ones ([`SessionTable`] through
//! [`session_requests`](super::session_requests)); only where the table lives
//! changes. A request takes the sessions lock in Redis, loads every session
//! (at most `sessions.max_sessions`), runs the request, writes back what
//! changed in one transaction, gives the lock back, and then tells the other
//! party through its room, on whatever instance it is. Each instance's expiry
//! loop does the same for deadlines (once a second).

use std::time::Duration;

use peers_sdk::DeviceId;
use serde_json::Value as Json;
use tracing::warn;

use super::cluster::{Cluster, random_hex, unavailable};
use super::connection::Connection;
use super::hub::session_notice;
use super::session_requests::{self, SessionHost};
use super::{metrics as m, now_ms};
use crate::protocol::{ErrorCode, Rejection, SessionNotice, SessionRequest, events};
use crate::sessions::{CodeSession, SessionLimits, SessionTable};

/// How long a request waits for the sessions lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// The sessions as loaded from Redis, and what a request changed.
struct LoadedSessions {
    table: SessionTable,
    saved: Vec<CodeSession>,
    deleted: Vec<String>,
    told: Vec<(DeviceId, SessionNotice)>,
}

impl SessionHost for LoadedSessions {
    fn sessions(&mut self) -> &mut SessionTable {
        &mut self.table
    }

    fn save_session(&mut self, session: &CodeSession) {
        self.saved.retain(|s| s.transfer_id != session.transfer_id);
        self.saved.push(session.clone());
    }

    fn delete_sessions(&mut self, transfer_ids: &[String]) {
        self.saved.retain(|s| !transfer_ids.contains(&s.transfer_id));
        self.deleted.extend_from_slice(transfer_ids);
    }

    fn tell_session(&mut self, device: &DeviceId, session: &CodeSession, peer: Option<&DeviceId>) {
        self.told.push((*device, session_notice(session, peer)));
    }
}

impl Cluster {
    /// Runs `change` on the shared sessions under the lock, stores what it
    /// changed and then tells the parties.
    async fn with_sessions<T>(
        &self,
        limits: &SessionLimits,
        change: impl FnOnce(&mut LoadedSessions) -> T,
    ) -> Result<T, Rejection> {
        let token = random_hex::<16>();
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        while !self.state.lock_sessions(&token).await.map_err(unavailable)? {
            if tokio::time::Instant::now() >= deadline {
                return Err(Rejection::new(ErrorCode::Internal, "the sessions are busy; the request had no effect"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let changed = async {
            let mut table = SessionTable::new(limits.clone());
            table.restore(self.state.load_sessions().await?);
            let mut loaded = LoadedSessions { table, saved: Vec::new(), deleted: Vec::new(), told: Vec::new() };
            let result = change(&mut loaded);
            self.state.store_sessions(&loaded.saved, &loaded.deleted).await?;
            m::sessions(loaded.table.len());
            Ok((result, loaded.told))
        }
        .await;
        if let Err(err) = self.state.unlock_sessions(&token).await {
            warn!(%err, "could not give the sessions lock back; it runs out by itself");
        }
        let (result, told) = changed.map_err(unavailable)?;
        for (device, notice) in told {
            self.tell(&device, events::SESSION, &notice).await;
        }
        Ok(result)
    }
}

/// A `"session-create"`, `"session-join"`, `"session-close"` or `"session-reopen"` request.
pub(super) async fn request(
    cluster: &Cluster,
    conn: &Connection,
    device: DeviceId,
    request: SessionRequest,
) -> Result<serde_json::Map<String, Json>, Rejection> {
    let shared = &conn.shared;
    // Code guesses count in Redis too, so spreading them over the instances
    // gains nothing (the per-code lock lives in the shared session table).
    if matches!(request, SessionRequest::Join(_))
        && let Some(limited) = cluster.allow_join(&shared.config.sessions, &device, conn.ip()).await?
    {
        return Err(session_requests::too_many_joins(limited));
    }
    if matches!(request, SessionRequest::Create(_))
        && let Some(limited) = cluster.allow_create(&shared.config.sessions, &device, conn.ip()).await?
    {
        return Err(session_requests::too_many_creates(limited));
    }
    let page = session_requests::offers_page(shared, &request);
    let reply = cluster
        .with_sessions(&shared.config.sessions, |sessions| {
            session_requests::handle(sessions, &shared.limiters, conn.ip(), device, request)
        })
        .await?;
    session_requests::with_page(page, reply)
}

/// Expires the shared sessions due now (their parties are told).
pub(super) async fn expire(cluster: &Cluster, limits: &SessionLimits) {
    let now = now_ms();
    if let Err(rejection) = cluster.with_sessions(limits, |sessions| session_requests::expire(sessions, now)).await {
        warn!(%rejection, "session expiry skipped");
    }
}
