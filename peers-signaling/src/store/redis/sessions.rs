//! Sessions by code in Redis, each under keys of its own (`sessions.lua`):
//! no request takes a lock over all sessions or loads them all. A new
//! session is counted against its device and its address (each in its own
//! hash slot, given back if a later step refuses), then its code's slot is
//! claimed atomically with the count of all live sessions; a request about
//! one session holds that session's lock (`P:{s:<id>}:lock`) while the
//! in-process rules ([`SessionTable`](crate::sessions::SessionTable)) change
//! it.

use std::net::IpAddr;
use std::time::Duration;

use peers_sdk::DeviceId;

use super::{RedisState, bad_reply, checked_keys, millis, redis_error};
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

impl RedisState {
    /// A call of `sessions.lua`.
    fn sessions_call(&self, op: &str) -> redis::ScriptInvocation<'_> {
        let [base] = checked_keys([self.keys.sessions()]);
        let mut call = self.scripts.sessions.prepare_invoke();
        call.key(base).arg(op);
        call
    }

    /// The bases of the counts of live sessions a session of `sender` from
    /// `origin` is in: its device's, then its address's.
    fn session_counts(&self, sender: &DeviceId, origin: Option<IpAddr>) -> Vec<String> {
        let mut counts = vec![self.keys.sessions_of_device(&sender.to_string())];
        counts.extend(origin.map(|ip| self.keys.sessions_of_address(&ip.to_string())));
        counts
    }

    /// Claims the first free (or finished) slot of `candidates` for `draft`,
    /// if `sender`, its address and the servers are within `limits`: the
    /// device's and the address's counts first, each in its own slot (given
    /// back if a later step refuses), then the slot and the overall count.
    pub(crate) async fn claim_slot(
        &self,
        now: u64,
        draft: &SessionDraft,
        sender: &DeviceId,
        origin: Option<IpAddr>,
        limits: &SessionLimits,
        candidates: &[u16],
    ) -> Result<SlotClaim> {
        let stale_before = now.saturating_sub(millis(STALE_COUNT));
        let id = &draft.transfer_id;
        let mut live = LiveSessions::default();
        let mut counted: Vec<String> = Vec::new();
        let bases = self.session_counts(sender, origin);
        for (i, (base, limit)) in bases.into_iter().zip([limits.per_device, limits.per_address]).enumerate() {
            let mut call = self.quota_call(&base, "reserve");
            call.arg(stale_before).arg(id).arg(draft.expires_at).arg(0).arg(limit).arg(u64::MAX).arg("1");
            let reply: Vec<String> =
                call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("claim a session code"))?;
            let n = reply.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
            if i == 0 {
                live.device = n;
            } else {
                live.address = n;
            }
            if reply.first().map(String::as_str) != Some("ok") {
                self.give_back_counts(&counted, id).await?;
                return Ok(SlotClaim::Full(live));
            }
            counted.push(base);
        }
        let mut call = self.sessions_call("claim");
        call.arg(id).arg(draft.expires_at).arg(limits.max_sessions).arg(stale_before);
        for slot in candidates {
            call.arg(*slot);
        }
        let reply: Vec<String> =
            call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("claim a session code"))?;
        match reply.as_slice() {
            [ok, slot, evicted] if ok == "ok" => {
                if !evicted.is_empty() {
                    self.delete_session(evicted).await?;
                }
                Ok(SlotClaim::Claimed {
                    slot: slot.parse().map_err(|_| bad_reply("claim a session code", slot.clone()))?,
                    evicted: Some(evicted.clone()).filter(|e| !e.is_empty()),
                })
            }
            [full, total] if full == "full" => {
                self.give_back_counts(&counted, id).await?;
                live.total = total.parse().map_err(|_| bad_reply("claim a session code", total.clone()))?;
                Ok(SlotClaim::Full(live))
            }
            [none] if none == "none" => {
                self.give_back_counts(&counted, id).await?;
                Ok(SlotClaim::NoSlot)
            }
            other => Err(bad_reply("claim a session code", format!("{other:?}"))),
        }
    }

    /// Uncounts session `id` from the counts at `bases`.
    async fn give_back_counts(&self, bases: &[String], id: &str) -> Result<()> {
        for base in bases {
            self.uncount_members(base, &[id.to_owned()]).await?;
        }
        Ok(())
    }

    /// Deletes session `transfer_id`'s record.
    async fn delete_session(&self, transfer_id: &str) -> Result<()> {
        redis::cmd("DEL")
            .arg(self.keys.session(transfer_id))
            .query_async::<u64>(&mut self.connection.clone())
            .await
            .map(drop)
            .map_err(redis_error("forget a session"))
    }

    /// The transfer id holding code slot `slot`, if any.
    pub(crate) async fn session_at(&self, slot: u16) -> Result<Option<String>> {
        redis::cmd("GET")
            .arg(format!("{}:slot:{slot}", self.keys.sessions()))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("find a session by code"))
    }

    /// Session `transfer_id`, if it exists (hold its lock to change it).
    pub(crate) async fn load_session(&self, transfer_id: &str) -> Result<Option<CodeSession>> {
        let json: Option<String> = redis::cmd("GET")
            .arg(self.keys.session(transfer_id))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("load a session"))?;
        json.map(|json| serde_json::from_str(&json).map_err(|e| bad_reply("load a session", e.to_string()))).transpose()
    }

    /// The transfer ids of the live sessions `device` created (at most `max`, the
    /// earliest deadlines first; a lapsed count may name a finished one).
    pub(crate) async fn sessions_created_by(&self, device: &DeviceId, max: usize) -> Result<Vec<String>> {
        let [counted] = checked_keys([format!("{}:z", self.keys.sessions_of_device(&device.to_string()))]);
        redis::cmd("ZRANGE")
            .arg(counted)
            .arg(0)
            .arg(max.saturating_sub(1))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("list a device's sessions"))
    }

    /// Takes (`take`) or gives back (`give`) session `transfer_id`'s lock for
    /// `token`; whether it did.
    pub(crate) async fn session_lock(&self, transfer_id: &str, op: &str, token: &str) -> Result<bool> {
        let [key] = checked_keys([format!("{}:lock", self.keys.session(transfer_id))]);
        let done: u64 = self
            .scripts
            .lock
            .prepare_invoke()
            .key(key)
            .arg(op)
            .arg(token)
            .arg(millis(SESSION_LOCK_TTL))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("session lock"))?;
        Ok(done == 1)
    }

    /// Writes `session` and keeps its counts (a live one is counted until
    /// its deadline, a finished one waits in the finished set for its grace
    /// time): the record, then the overall sets, then the device's and the
    /// address's counts.
    pub(crate) async fn save_session(&self, session: &CodeSession, grace_ms: u64) -> Result<()> {
        let json = serde_json::to_string(session).map_err(|e| bad_reply("save a session", e.to_string()))?;
        let live = session.is_live();
        let score = if live { session.expires_at } else { session.expires_at.saturating_add(grace_ms) };
        let id = &session.transfer_id;
        redis::cmd("SET")
            .arg(self.keys.session(id))
            .arg(json)
            .query_async::<()>(&mut self.connection.clone())
            .await
            .map_err(redis_error("save a session"))?;
        let mut call = self.sessions_call("save");
        call.arg(id).arg(if live { "1" } else { "0" }).arg(score);
        call.invoke_async::<u64>(&mut self.connection.clone()).await.map_err(redis_error("save a session"))?;
        for base in self.session_counts(&session.sender, session.origin) {
            if live {
                let mut call = self.quota_call(&base, "force");
                call.arg(id).arg(score).arg(0);
                call.invoke_async::<u64>(&mut self.connection.clone()).await.map_err(redis_error("save a session"))?;
            } else {
                self.uncount_members(&base, std::slice::from_ref(id)).await?;
            }
        }
        Ok(())
    }

    /// Forgets session `transfer_id` (finished, past its grace time) and
    /// frees `slot` if it still holds it.
    pub(crate) async fn forget_session(&self, transfer_id: &str, slot: u16) -> Result<()> {
        self.delete_session(transfer_id).await?;
        let mut call = self.sessions_call("forget");
        call.arg(transfer_id).arg(slot);
        call.invoke_async::<u64>(&mut self.connection.clone()).await.map(drop).map_err(redis_error("forget a session"))
    }

    /// Sessions with work at `now`: live ones at their deadline, finished
    /// ones past their grace time (at most a batch of each).
    pub(crate) async fn due_sessions(&self, now: u64) -> Result<Vec<String>> {
        let mut due = Vec::new();
        for set in ["live", "done"] {
            let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                .arg(format!("{}:{set}", self.keys.sessions()))
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
        let base = self.keys.sessions();
        // One slot, so a cluster runs the pipeline on one node.
        let [live, done] = checked_keys([format!("{base}:live"), format!("{base}:done")]);
        let mut pipe = redis::pipe();
        pipe.zrem(live, transfer_id).ignore();
        pipe.zrem(done, transfer_id).ignore();
        pipe.query_async::<()>(&mut self.connection.clone()).await.map_err(redis_error("drop a session count"))
    }

    /// Live sessions on all instances.
    pub(crate) async fn live_sessions(&self) -> Result<usize> {
        redis::cmd("ZCARD")
            .arg(format!("{}:live", self.keys.sessions()))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("count sessions"))
    }
}
