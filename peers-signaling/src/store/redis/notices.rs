//! Outcome notices in Redis (`notices.lua`): each sender's box lives in
//! its device's slot (`P:{d:<dev>}:n`, beside its presence, so "emit or
//! keep" is one step), and the counts per box, the total and the sweep
//! index in their own (`P:{nt}`), changed after each box step. So the
//! total bound is read before a box step and may be passed by the notices
//! other instances keep at the same moment; it is exact again after them.

use peers_sdk::DeviceId;

use super::{NotifyOutcome, RedisState, StoredNotice, bad_reply, checked_keys, millis, redis_error};
use crate::error::Result;
use crate::protocol::OutcomeNotice;

/// How long an instance has to sweep a box it took from the index.
const SWEEP_LEASE_MS: u64 = 10_000;

/// Most boxes one sweep takes.
const SWEEP_BATCH: usize = 256;

impl RedisState {
    /// The notice index's base.
    fn notice_index(&self) -> String {
        format!("{}:{{nt}}", self.prefix)
    }

    /// A call of `notices.lua` on the keys at `base`.
    fn notice_call(&self, base: String, op: &str) -> redis::ScriptInvocation<'_> {
        let [base] = checked_keys([base]);
        let mut call = self.scripts.notices.prepare_invoke();
        call.key(base).arg(op);
        call
    }

    /// Counts a change of `device`'s box in the index.
    async fn notices_kept(&self, device: &str, change: i64, expiry: Option<u64>) -> Result<()> {
        if change == 0 && expiry.is_none() {
            return Ok(());
        }
        let mut call = self.notice_call(self.notice_index(), "kept");
        call.arg(device).arg(change).arg(expiry.map(|e| e.to_string()).unwrap_or_default());
        call.invoke_async::<u64>(&mut self.connection.clone()).await.map(drop).map_err(redis_error("count notices"))
    }

    /// Hands an outcome notice to its sender's box unless the sender is up.
    pub(crate) async fn notify(&self, now: u64, sender: &DeviceId, notice: &OutcomeNotice) -> Result<NotifyOutcome> {
        let ttl = millis(self.notices.ttl);
        let expires_at = now.saturating_add(ttl);
        let stored = StoredNotice { notice: notice.clone(), expires_at };
        let json = serde_json::to_string(&stored).map_err(|e| bad_reply("notify", e.to_string()))?;
        let total: u64 = self
            .notice_call(self.notice_index(), "total")
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("notify"))?;
        let device = sender.to_string();
        let mut push = self.notice_call(self.keys.device(&device), "push");
        push.arg(json).arg(self.notices.per_device.max(1)).arg(total).arg(self.notices.total.max(1));
        let reply: Vec<String> =
            push.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("notify"))?;
        let dropped: usize = reply.get(1).and_then(|d| d.parse().ok()).unwrap_or(0);
        let change = |kept: i64| kept - i64::try_from(dropped).unwrap_or(i64::MAX);
        match reply.first().map(String::as_str) {
            Some("online") => Ok(NotifyOutcome::Online { holder: reply.get(1).cloned().unwrap_or_default() }),
            Some("stored") => {
                self.notices_kept(&device, change(1), Some(expires_at)).await?;
                Ok(NotifyOutcome::Stored { dropped })
            }
            Some("refused") => {
                self.notices_kept(&device, change(0), None).await?;
                Ok(NotifyOutcome::Refused)
            }
            _ => Err(bad_reply("notify", format!("{reply:?}"))),
        }
    }

    /// Removes `device`'s notices; returns those still current at `now`, oldest
    /// first, and how many had run out.
    pub(crate) async fn take_notices(&self, now: u64, device: &DeviceId) -> Result<(Vec<OutcomeNotice>, usize)> {
        let device = device.to_string();
        let items: Vec<String> = self
            .notice_call(self.keys.device(&device), "take")
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("take notices"))?;
        self.notices_kept(&device, -i64::try_from(items.len()).unwrap_or(i64::MAX), None).await?;
        let mut current = Vec::with_capacity(items.len());
        let mut stale = 0;
        for item in items {
            let stored: StoredNotice =
                serde_json::from_str(&item).map_err(|e| bad_reply("take notices", e.to_string()))?;
            if stored.expires_at > now {
                current.push(stored.notice);
            } else {
                stale += 1;
            }
        }
        Ok((current, stale))
    }

    /// Removes notice boxes whose newest notice ran out; returns how many notices.
    pub(crate) async fn sweep_notices(&self, now: u64) -> Result<u64> {
        let mut due = self.notice_call(self.notice_index(), "due");
        due.arg(now).arg(SWEEP_LEASE_MS).arg(SWEEP_BATCH);
        let devices: Vec<String> =
            due.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("sweep notices"))?;
        let mut gone = 0;
        for device in devices {
            let mut sweep = self.notice_call(self.keys.device(&device), "sweep");
            sweep.arg(now);
            let n: u64 =
                sweep.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("sweep notices"))?;
            // A box with a newer notice keeps its place in the index (its
            // push set a later expiry; the lease only delays the next look).
            self.notices_kept(&device, -i64::try_from(n).unwrap_or(i64::MAX), None).await?;
            gone += n;
        }
        Ok(gone)
    }
}
