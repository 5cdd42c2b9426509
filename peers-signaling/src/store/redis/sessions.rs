//! Sessions by code in Redis, each under keys of its own (`sessions.lua`):
//! no request takes a lock over all sessions or loads them all. A code's
//! slot is claimed atomically with the live-session counts of the device,
//! its address and the servers together; a request about one session holds
//! that session's lock (`P:s:<id>:lock`) while the in-process rules
//! ([`SessionTable`](crate::sessions::SessionTable)) change it.

use std::net::IpAddr;
use std::time::Duration;

use peers_sdk::DeviceId;

use super::{RedisState, bad_reply, millis, redis_error};
use crate::error::Result;
use crate::sessions::{CodeSession, LiveSessions, SessionDraft, SessionLimits};

/// How long a session's lock holds without being given back (a crashed holder).
const SESSION_LOCK_TTL: Duration = Duration::from_secs(5);

/// Counts older than this past their deadline belong to sessions the expiry
/// loop never saw (their instance died between the claim and the write).
const STALE_COUNT: Duration = Duration::from_secs(60);

/// Most due sessions one expiry pass takes.
const DUE_BATCH: usize = 128;

/// What became of a claim for a new session's code.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SlotClaim {
    /// The slot is the session's; `evicted` is the finished session that held it.
    Claimed { slot: u16, evicted: Option<String> },
    /// The device, its address or the servers are at a limit: the counts.
    Full(LiveSessions),
    /// Every candidate slot is held by a live session.
    NoSlot,
}

fn address(origin: Option<IpAddr>) -> String {
    origin.map(|ip| ip.to_string()).unwrap_or_default()
}

impl RedisState {
    fn session_key(&self, transfer_id: &str) -> String {
        format!("{}:s:{transfer_id}", self.prefix)
    }

    /// Claims the first free (or finished) slot of `candidates` for `draft`,
    /// if `sender`, its address and the servers are within `limits`.
    pub(crate) async fn claim_slot(
        &self,
        now: u64,
        draft: &SessionDraft,
        sender: &DeviceId,
        origin: Option<IpAddr>,
        limits: &SessionLimits,
        candidates: &[u16],
    ) -> Result<SlotClaim> {
        let mut call = self.scripts.sessions.prepare_invoke();
        call.arg(&self.prefix)
            .arg("claim")
            .arg(&draft.transfer_id)
            .arg(sender.to_string())
            .arg(address(origin))
            .arg(draft.expires_at)
            .arg(limits.per_device)
            .arg(limits.per_address)
            .arg(limits.max_sessions)
            .arg(now.saturating_sub(millis(STALE_COUNT)));
        for slot in candidates {
            call.arg(*slot);
        }
        let reply: Vec<String> =
            call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("claim a session code"))?;
        let number = |s: &String| s.parse::<usize>().map_err(|_| bad_reply("claim a session code", s.clone()));
        match reply.as_slice() {
            [ok, slot, evicted] if ok == "ok" => Ok(SlotClaim::Claimed {
                slot: slot.parse().map_err(|_| bad_reply("claim a session code", slot.clone()))?,
                evicted: Some(evicted.clone()).filter(|e| !e.is_empty()),
            }),
            [full, device, address, total] if full == "full" => Ok(SlotClaim::Full(LiveSessions {
                device: number(device)?,
                address: number(address)?,
                total: number(total)?,
            })),
            [none] if none == "none" => Ok(SlotClaim::NoSlot),
            other => Err(bad_reply("claim a session code", format!("{other:?}"))),
        }
    }

    /// The transfer id holding code slot `slot`, if any.
    pub(crate) async fn session_at(&self, slot: u16) -> Result<Option<String>> {
        redis::cmd("GET")
            .arg(format!("{}:slot:{slot}", self.prefix))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("find a session by code"))
    }

    /// Session `transfer_id`, if it exists (hold its lock to change it).
    pub(crate) async fn load_session(&self, transfer_id: &str) -> Result<Option<CodeSession>> {
        let json: Option<String> = redis::cmd("GET")
            .arg(self.session_key(transfer_id))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("load a session"))?;
        json.map(|json| serde_json::from_str(&json).map_err(|e| bad_reply("load a session", e.to_string()))).transpose()
    }

    /// Takes (`take`) or gives back (`give`) session `transfer_id`'s lock for
    /// `token`; whether it did.
    pub(crate) async fn session_lock(&self, transfer_id: &str, op: &str, token: &str) -> Result<bool> {
        let done: u64 = self
            .scripts
            .lock
            .prepare_invoke()
            .arg(format!("{}:lock", self.session_key(transfer_id)))
            .arg(op)
            .arg(token)
            .arg(millis(SESSION_LOCK_TTL))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("session lock"))?;
        Ok(done == 1)
    }

    /// Writes `session` and keeps its counts (a live one is counted until
    /// its deadline, a finished one waits in `P:sdone` for its grace time).
    pub(crate) async fn save_session(&self, session: &CodeSession, grace_ms: u64) -> Result<()> {
        let json = serde_json::to_string(session).map_err(|e| bad_reply("save a session", e.to_string()))?;
        let live = session.is_live();
        let score = if live { session.expires_at } else { session.expires_at.saturating_add(grace_ms) };
        self.scripts
            .sessions
            .prepare_invoke()
            .arg(&self.prefix)
            .arg("save")
            .arg(&session.transfer_id)
            .arg(session.sender.to_string())
            .arg(address(session.origin))
            .arg(if live { "1" } else { "0" })
            .arg(score)
            .arg(json)
            .invoke_async::<u64>(&mut self.connection.clone())
            .await
            .map(drop)
            .map_err(redis_error("save a session"))
    }

    /// Forgets session `transfer_id` (finished, past its grace time) and
    /// frees `slot` if it still holds it.
    pub(crate) async fn forget_session(&self, transfer_id: &str, slot: u16) -> Result<()> {
        self.scripts
            .sessions
            .prepare_invoke()
            .arg(&self.prefix)
            .arg("forget")
            .arg(transfer_id)
            .arg(slot)
            .invoke_async::<u64>(&mut self.connection.clone())
            .await
            .map(drop)
            .map_err(redis_error("forget a session"))
    }

    /// Sessions with work at `now`: live ones at their deadline, finished
    /// ones past their grace time (at most a batch of each).
    pub(crate) async fn due_sessions(&self, now: u64) -> Result<Vec<String>> {
        let mut due = Vec::new();
        for set in ["slive", "sdone"] {
            let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                .arg(format!("{}:{set}", self.prefix))
                .arg("-inf")
                .arg(now)
                .arg("LIMIT")
                .arg(0)
                .arg(DUE_BATCH)
                .query_async(&mut self.connection.clone())
                .await
                .map_err(redis_error("due sessions"))?;
            due.extend(ids);
        }
        Ok(due)
    }

    /// Drops the live count of a session that was never written (its
    /// instance died between the claim and the write).
    pub(crate) async fn drop_session_count(&self, transfer_id: &str) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.zrem(format!("{}:slive", self.prefix), transfer_id).ignore();
        pipe.zrem(format!("{}:sdone", self.prefix), transfer_id).ignore();
        pipe.query_async::<()>(&mut self.connection.clone()).await.map_err(redis_error("drop a session count"))
    }

    /// Live sessions on all instances.
    pub(crate) async fn live_sessions(&self) -> Result<usize> {
        redis::cmd("ZCARD")
            .arg(format!("{}:slive", self.prefix))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("count sessions"))
    }
}
