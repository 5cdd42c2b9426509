//! Redis mode: sessions by code, shared by every instance, each under keys
//! of its own (`store/redis/sessions.rs`).
//!
//! The rules are the in-process ones ([`SessionTable`] through
//! [`session_requests`](super::session_requests)); only where a session
//! lives changes. A join, close or reopen finds its one session (a join by
//! its code's slot), takes that session's lock, runs the request on a table
//! holding just it, writes back what changed and gives the lock back; then
//! the other party is told through its room, on whatever instance it is. A
//! creation claims a free code slot together with the live-session counts
//! of the device, its address and all instances (one script: codes are
//! unique and the limits hold across instances) and then writes the new
//! session. Each instance's expiry loop takes the sessions due (by deadline
//! or end of grace time) once a second, one at a time under their locks.
//! No request locks or loads every session.

use std::time::Duration;

use peers_sdk::DeviceId;
use rand_core::OsRng;
use serde_json::Value as Json;
use tracing::warn;

use super::cluster::{Cluster, random_hex, unavailable};
use super::connection::Connection;
use super::hub::session_notice;
use super::session_requests::{self, SessionHost};
use super::{metrics as m, now_ms};
use crate::protocol::{ErrorCode, Rejection, SessionCreateRequest, SessionNotice, SessionRequest, events};
use crate::sessions::{CodeSession, ParsedCode, SessionDraft, SessionLimits, SessionTable, no_free_code, parse_code};
use crate::store::redis::SlotClaim;

/// How long a request waits for a session's lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(2);
/// Random slots offered to a new session (each is free or finished with
/// odds of at least one half: at most half the slots are live).
const CANDIDATE_SLOTS: usize = 64;

type Reply = Result<serde_json::Map<String, Json>, Rejection>;

/// One session as loaded from Redis (or none), and what a request changed.
struct LoadedSession {
    table: SessionTable,
    /// Whether the session was found.
    found: bool,
    /// Its slot, for forgetting it.
    slot: Option<u16>,
    saved: Vec<CodeSession>,
    deleted: Vec<String>,
    told: Vec<(DeviceId, SessionNotice)>,
}

impl SessionHost for LoadedSession {
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
    /// Runs `change` on session `transfer_id` (a table holding it, or an
    /// empty one if there is no such session) under the session's lock,
    /// stores what it changed and then tells the parties. Also returns
    /// whether the session was found.
    async fn with_session<T>(
        &self,
        transfer_id: Option<&str>,
        limits: &SessionLimits,
        change: impl FnOnce(&mut LoadedSession) -> T,
    ) -> Result<(T, bool), Rejection> {
        let mut loaded = LoadedSession {
            table: SessionTable::new(limits.clone()),
            found: false,
            slot: None,
            saved: Vec::new(),
            deleted: Vec::new(),
            told: Vec::new(),
        };
        let Some(transfer_id) = transfer_id else { return Ok((change(&mut loaded), false)) };
        let token = random_hex::<16>();
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        while !self.state.session_lock(transfer_id, "take", &token).await.map_err(unavailable)? {
            if tokio::time::Instant::now() >= deadline {
                return Err(Rejection::new(ErrorCode::Internal, "the session is busy; the request had no effect"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let changed = async {
            if let Some(session) = self.state.load_session(transfer_id).await? {
                loaded.found = true;
                loaded.slot = Some(session.slot);
                loaded.table.restore(vec![session]);
            }
            let result = change(&mut loaded);
            for session in &loaded.saved {
                self.state.save_session(session, limits.grace_ms()).await?;
            }
            for id in &loaded.deleted {
                if let Some(slot) = loaded.slot {
                    self.state.forget_session(id, slot).await?;
                }
            }
            Ok((result, loaded.found))
        }
        .await;
        if let Err(err) = self.state.session_lock(transfer_id, "give", &token).await {
            warn!(%err, transfer = transfer_id, "could not give a session's lock back; it runs out by itself");
        }
        let result = changed.map_err(unavailable)?;
        for (device, notice) in std::mem::take(&mut loaded.told) {
            self.tell(&device, events::SESSION, &notice).await;
        }
        Ok(result)
    }
}

/// A `"session-create"`, `"session-join"`, `"session-close"` or `"session-reopen"` request.
pub(super) async fn request(cluster: &Cluster, conn: &Connection, device: DeviceId, request: SessionRequest) -> Reply {
    let shared = &conn.shared;
    let limits = &shared.config.sessions;
    // Code guesses count in Redis too, so spreading them over the instances
    // gains nothing (the per-code lock lives in the shared session).
    if matches!(request, SessionRequest::Join(_))
        && let Some(limited) = cluster.allow_join(limits, &device, conn.ip()).await?
    {
        return Err(session_requests::too_many_joins(limited));
    }
    let transfer_id = match &request {
        SessionRequest::Create(create) => {
            if let Some(limited) = cluster.allow_create(limits, &device, conn.ip()).await? {
                return Err(session_requests::too_many_creates(limited));
            }
            return create_session(cluster, conn, device, create).await;
        }
        SessionRequest::Join(join) => match parse_code(&join.code) {
            Ok(ParsedCode::Secret(slot, _) | ParsedCode::Slot(slot)) => {
                cluster.state.session_at(slot).await.map_err(unavailable)?
            }
            // Refused by the table's rules, as on one instance.
            Err(_) => None,
        },
        SessionRequest::Close(close) => Some(close.transfer_id.clone()),
        SessionRequest::Reopen(reopen) => Some(reopen.transfer_id.clone()),
    };
    let handle =
        |host: &mut LoadedSession| session_requests::handle(host, &shared.limiters, conn.ip(), device, request);
    cluster.with_session(transfer_id.as_deref(), limits, handle).await?.0
}

/// A new session: its code's slot and the live-session limits are claimed
/// in Redis, then it is written.
async fn create_session(
    cluster: &Cluster,
    conn: &Connection,
    device: DeviceId,
    request: &SessionCreateRequest,
) -> Reply {
    let shared = &conn.shared;
    let limits = &shared.config.sessions;
    if let Err(limited) = shared.limiters.check_create(conn.ip(), &device) {
        return Err(session_requests::too_many_creates(limited));
    }
    let now = now_ms();
    let draft = SessionDraft::new(now, &mut OsRng, limits, request.ttl_ms);
    let candidates = SessionTable::candidate_slots(&mut OsRng, CANDIDATE_SLOTS);
    let claim = cluster.state.claim_slot(now, &draft, &device, conn.ip(), limits, &candidates).await;
    let slot = match claim.map_err(unavailable)? {
        SlotClaim::Claimed { slot, evicted: _ } => slot,
        SlotClaim::Full(live) => return Err(limits.admit_create(live).err().unwrap_or_else(no_free_code)),
        SlotClaim::NoSlot => return Err(no_free_code()),
    };
    let kind = request.kind.unwrap_or_default();
    let (session, sender_token) = draft.into_session(&mut OsRng, slot, device, conn.ip(), kind);
    cluster.state.save_session(&session, limits.grace_ms()).await.map_err(unavailable)?;
    Ok(session_requests::created_reply(device, &session, sender_token))
}

/// Expires the shared sessions due now (their parties are told) and forgets
/// those past their grace time.
pub(super) async fn expire(cluster: &Cluster, limits: &SessionLimits) {
    let now = now_ms();
    let due = match cluster.state.due_sessions(now).await {
        Ok(due) => due,
        Err(err) => return warn!(%err, "session expiry skipped"),
    };
    for transfer_id in due {
        let expired =
            cluster.with_session(Some(&transfer_id), limits, |host| session_requests::expire(host, now)).await;
        match expired {
            Ok((_, true)) => {}
            // Claimed but never written (its instance died in between).
            Ok((_, false)) => {
                if let Err(err) = cluster.state.drop_session_count(&transfer_id).await {
                    warn!(%err, transfer = %transfer_id, "could not drop a session's count");
                }
            }
            Err(rejection) => warn!(%rejection, transfer = %transfer_id, "session expiry skipped"),
        }
    }
    if let Ok(live) = cluster.state.live_sessions().await {
        m::sessions(live);
    }
}

/// Tells `device`, registering on `conn`, of each joined session it created, as the
/// `joined` it may have missed while it was not registered (docs/signaling.md §6).
pub(super) async fn tell_joined(cluster: &Cluster, conn: &Connection, device: &DeviceId) {
    let limits = &conn.shared.config.sessions;
    let ids = match cluster.state.sessions_created_by(device, limits.per_device).await {
        Ok(ids) => ids,
        Err(err) => return warn!(%device, %err, "could not list the sessions of a registering device"),
    };
    let mut sessions = Vec::with_capacity(ids.len());
    for id in ids {
        match cluster.state.load_session(&id).await {
            Ok(Some(session)) => sessions.push(session),
            Ok(None) => {}
            Err(err) => warn!(%device, %err, transfer = %id, "could not load a session of a registering device"),
        }
    }
    let mut table = SessionTable::new(limits.clone());
    table.restore(sessions);
    for session in table.joined_by(device, now_ms()) {
        conn.peer.emit_forced(events::SESSION, &session_notice(&session, session.receiver.as_ref()));
    }
}
