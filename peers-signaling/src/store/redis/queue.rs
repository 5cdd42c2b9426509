//! The offline queue in Redis, in steps of one hash slot each.
//!
//! A message waits in its recipient's queue (`P:{d:<to>}`, `queue.lua`) and
//! is counted against its sender (`P:{qs:<from>}`), its sender's address
//! group (`P:{qa:<addr>}`) and the total (`P:{qt}`, also the expiry index)
//! (`quota.lua`). Those are four slots, so queueing is four steps, each
//! atomic:
//!
//! ```text
//!  peek (recipient)  ─▶ deliver (up) / expired (ttl 0) / full (its bounds) / room: a seq
//!  reserve (sender) ─▶ reserve (address) ─▶ reserve (total): each full ─▶ give back the others, refuse
//!  put (recipient)   ─▶ queued; or, up or full since the peek ─▶ give back the reservations
//! ```
//!
//! So every bound holds across instances: a message is counted against
//! every quota before it waits anywhere. Taking or expiring a message
//! removes it from its queue first, then uncounts it. An instance that
//! dies between two steps leaves a count without a message; it lapses at
//! that message's expiry (each count is scored by it), so a quota is never
//! lost for longer than a message's time to live.

use std::collections::BTreeMap;

use tracing::warn;

use super::{RedisState, SendOutcome, StoredMessage, bad_reply, checked_keys, parse_messages, redis_error};
use crate::error::Result;
use crate::queue::{QueueBound, QueueUsage, QueuedMessage};

/// How long an instance has to expire a due message it took from the expiry
/// index before another instance may take it.
const EXPIRY_LEASE_MS: u64 = 10_000;

/// Most queued messages one step takes or expires.
const BATCH: usize = 128;

/// One quota a queued message counts against: its base key, its limits and
/// the bound each names.
struct Owner {
    base: String,
    max_messages: usize,
    max_bytes: usize,
    /// Drop counts whose message's expiry passed (not for the total: its
    /// counts are the expiry index, which the expiry loop empties).
    prune: bool,
    /// Which usage fields it fills.
    usage: fn(&mut QueueUsage, usize, usize),
}

/// Where [`RedisState::peek`] found a message goes.
#[derive(Debug)]
pub(crate) enum Peeked {
    /// Decided: delivered, expired or refused.
    Done(SendOutcome),
    /// The recipient's queue has room: the seq it takes there, whether it
    /// goes to the shadow queue, and the queue's usage.
    Room { seq: u64, shadowed: bool, usage: QueueUsage },
}

/// The quota member of message `seq` of `to`'s queue.
fn member(to: &str, seq: u64) -> String {
    format!("{to}|{seq}")
}

fn numbers(operation: &'static str, reply: &[String], from: usize) -> Result<(usize, usize)> {
    let number = |i: usize| {
        reply.get(i).and_then(|v| v.parse::<usize>().ok()).ok_or_else(|| bad_reply(operation, format!("{reply:?}")))
    };
    Ok((number(from)?, number(from + 1)?))
}

impl RedisState {
    /// The quotas `message` counts against, in the order of
    /// `QueueLimits::full_bound`.
    fn owners(&self, message: &QueuedMessage) -> Vec<Owner> {
        let limits = &self.queue;
        let mut owners = vec![Owner {
            base: self.keys.sender(&message.from.to_string()),
            max_messages: limits.per_sender_messages,
            max_bytes: limits.per_sender_bytes,
            prune: true,
            usage: |u, n, b| (u.sender_messages, u.sender_bytes) = (n, b),
        }];
        if let Some(origin) = message.origin {
            owners.push(Owner {
                base: self.keys.address(&origin.to_string()),
                max_messages: limits.per_address_messages,
                max_bytes: limits.per_address_bytes,
                prune: true,
                usage: |u, n, b| (u.address_messages, u.address_bytes) = (n, b),
            });
        }
        owners.push(Owner {
            base: self.keys.total(),
            max_messages: limits.total_messages,
            max_bytes: limits.total_bytes,
            prune: false,
            usage: |u, n, b| (u.total_messages, u.total_bytes) = (n, b),
        });
        owners
    }

    /// A call of `queue.lua` on `device`'s queue.
    fn queue_call(&self, device: &str, op: &str) -> redis::ScriptInvocation<'_> {
        let [base] = checked_keys([self.keys.device(device)]);
        let mut call = self.scripts.queue.prepare_invoke();
        call.key(base).arg(op);
        call
    }

    /// A call of `quota.lua` on the quota at `base`.
    pub(super) fn quota_call(&self, base: &str, op: &str) -> redis::ScriptInvocation<'_> {
        let [base] = checked_keys([base.to_owned()]);
        let mut call = self.scripts.quota.prepare_invoke();
        call.key(base).arg(op);
        call
    }

    /// Uncounts `members` from the quota at `base`.
    pub(super) async fn uncount_members(&self, base: &str, members: &[String]) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut call = self.quota_call(base, "release");
        for member in members {
            call.arg(member);
        }
        call.invoke_async::<u64>(&mut self.connection.clone()).await.map(drop).map_err(redis_error("uncount queued"))
    }

    /// Delivers, expires, refuses or queues one signal (the steps above).
    pub(crate) async fn send(&self, message: &QueuedMessage, ttl_ms: u64) -> Result<SendOutcome> {
        let peeked = self.peek(message, ttl_ms).await?;
        self.send_peeked(message, peeked).await
    }

    /// The first step of [`send`](Self::send), on the recipient's slot
    /// alone: where the message goes. Changes nothing a caller could see
    /// (a seq taken and not used leaves a gap), so it may run before the
    /// request is known to be within its budgets.
    pub(crate) async fn peek(&self, message: &QueuedMessage, ttl_ms: u64) -> Result<Peeked> {
        let limits = &self.queue;
        let to = message.to.to_string();
        let mut peek = self.queue_call(&to, "peek");
        peek.arg(&to).arg(message.from.to_string()).arg(ttl_ms).arg(message.size());
        peek.arg(limits.per_device_messages).arg(limits.per_device_bytes);
        let reply: Vec<String> = peek.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("send"))?;
        let mut usage = QueueUsage::default();
        match reply.first().map(String::as_str) {
            Some("deliver") => {
                Ok(Peeked::Done(SendOutcome::Deliver { holder: reply.get(1).cloned().unwrap_or_default() }))
            }
            Some("expired") => Ok(Peeked::Done(SendOutcome::Expired)),
            Some("full") => {
                (usage.device_messages, usage.device_bytes) = numbers("send", &reply, 1)?;
                Ok(Peeked::Done(self.full(&usage, message.size(), QueueBound::DeviceBytes)))
            }
            Some("room") => {
                let seq =
                    reply.get(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad_reply("send", format!("{reply:?}")))?;
                let shadowed = reply.get(2).map(String::as_str) == Some("1");
                (usage.device_messages, usage.device_bytes) = numbers("send", &reply, 3)?;
                Ok(Peeked::Room { seq, shadowed, usage })
            }
            _ => Err(bad_reply("send", format!("{reply:?}"))),
        }
    }

    /// The rest of [`send`](Self::send) after `peeked`: for a message with
    /// room, its reservations and its place in the queue.
    pub(crate) async fn send_peeked(&self, message: &QueuedMessage, peeked: Peeked) -> Result<SendOutcome> {
        let (seq, shadowed, mut usage) = match peeked {
            Peeked::Done(outcome) => return Ok(outcome),
            Peeked::Room { seq, shadowed, usage } => (seq, if shadowed { "1" } else { "0" }, usage),
        };
        let stored = StoredMessage::of(message);
        let json = serde_json::to_string(&stored).map_err(|e| bad_reply("send", e.to_string()))?;
        let limits = &self.queue;
        let size = stored.size;
        let member = member(&stored.to, seq);
        let owners = self.owners(message);
        let mut reserved: Vec<&Owner> = Vec::with_capacity(owners.len());
        for owner in &owners {
            let mut call = self.quota_call(&owner.base, "reserve");
            call.arg(message.sent_at).arg(&member).arg(message.expires_at).arg(size);
            call.arg(owner.max_messages).arg(owner.max_bytes).arg(if owner.prune { "1" } else { "0" });
            let reply: Vec<String> =
                call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("send"))?;
            let (n, b) = numbers("send", &reply, 1)?;
            (owner.usage)(&mut usage, n, b);
            match reply.first().map(String::as_str) {
                Some("ok") => reserved.push(owner),
                Some("full") => {
                    self.give_back(&reserved, &member).await?;
                    return Ok(self.full(&usage, size, QueueBound::TotalBytes));
                }
                _ => return Err(bad_reply("send", format!("{reply:?}"))),
            }
        }
        let mut put = self.queue_call(&stored.to, "put");
        put.arg(&stored.to).arg(seq).arg(shadowed).arg(size);
        put.arg(limits.per_device_messages).arg(limits.per_device_bytes).arg(json);
        let reply: Vec<String> = put.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("send"))?;
        match reply.first().map(String::as_str) {
            Some("queued") => Ok(SendOutcome::Queued { seq }),
            Some("deliver") => {
                self.give_back(&reserved, &member).await?;
                Ok(SendOutcome::Deliver { holder: reply.get(1).cloned().unwrap_or_default() })
            }
            Some("full") => {
                self.give_back(&reserved, &member).await?;
                (usage.device_messages, usage.device_bytes) = numbers("send", &reply, 1)?;
                Ok(self.full(&usage, size, QueueBound::DeviceBytes))
            }
            _ => Err(bad_reply("send", format!("{reply:?}"))),
        }
    }

    /// The refusal for `usage`: the first bound it is at, as one instance
    /// names it (`fallback` when the counts moved in between).
    fn full(&self, usage: &QueueUsage, size: usize, fallback: QueueBound) -> SendOutcome {
        SendOutcome::Full(self.queue.full_bound(usage, size).unwrap_or(fallback), *usage)
    }

    /// Uncounts `member` from the quotas of `owners`.
    async fn give_back(&self, owners: &[&Owner], member: &str) -> Result<()> {
        for owner in owners {
            self.uncount_members(&owner.base, &[member.to_owned()]).await?;
        }
        Ok(())
    }

    /// Uncounts `messages`, just removed from their queue, from their
    /// quotas. They are the caller's now, whatever happens here: a count
    /// Redis did not take back lapses at the message's expiry (logged).
    async fn uncount_taken(&self, messages: &[QueuedMessage]) {
        if let Err(err) = self.uncount(messages).await {
            warn!(%err, messages = messages.len(), "could not uncount messages; their counts lapse at their expiry");
        }
    }

    /// Uncounts `messages` from their quotas.
    async fn uncount(&self, messages: &[QueuedMessage]) -> Result<()> {
        let mut by_owner: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for message in messages {
            let member = member(&message.to.to_string(), message.seq);
            for owner in self.owners(message) {
                by_owner.entry(owner.base).or_default().push(member.clone());
            }
        }
        for (base, members) in &by_owner {
            self.uncount_members(base, members).await?;
        }
        Ok(())
    }

    /// The next batch of messages waiting for `device`, oldest first; an empty
    /// batch also turns the registration `token` "up" (see `queue.lua`).
    pub(crate) async fn take(&self, device: &peers_sdk::DeviceId, token: &str) -> Result<Vec<QueuedMessage>> {
        let device = device.to_string();
        let mut call = self.queue_call(&device, "take");
        call.arg(&device).arg(token).arg(BATCH);
        let reply: Vec<String> =
            call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("take queue"))?;
        let messages = parse_messages("take queue", &reply)?;
        self.uncount_taken(&messages).await;
        Ok(messages)
    }

    /// Puts back messages [`take`](Self::take) returned but could not hand
    /// over, counted again without a check (they were counted before).
    pub(crate) async fn requeue(&self, messages: &[QueuedMessage]) -> Result<()> {
        let mut by_device: BTreeMap<String, Vec<&QueuedMessage>> = BTreeMap::new();
        for message in messages {
            by_device.entry(message.to.to_string()).or_default().push(message);
        }
        for (device, messages) in by_device {
            let mut call = self.queue_call(&device, "requeue");
            for message in &messages {
                let stored = StoredMessage::of(message);
                let json = serde_json::to_string(&stored).map_err(|e| bad_reply("requeue", e.to_string()))?;
                call.arg(message.seq).arg(stored.size).arg(json);
            }
            let _: u64 = call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("requeue"))?;
            for message in messages {
                let member = member(&device, message.seq);
                for owner in self.owners(message) {
                    let mut call = self.quota_call(&owner.base, "force");
                    call.arg(&member).arg(message.expires_at).arg(message.size());
                    let _: u64 =
                        call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("requeue"))?;
                }
            }
        }
        Ok(())
    }

    /// Removes up to a batch of messages due at `now`: takes them from the
    /// expiry index with a lease, removes each from its queue (only one
    /// instance gets each), then uncounts them.
    pub(crate) async fn expire(&self, now: u64) -> Result<Vec<QueuedMessage>> {
        let total = self.keys.total();
        let lease = now.saturating_add(EXPIRY_LEASE_MS);
        let mut due = self.quota_call(&total, "due");
        due.arg(now).arg(EXPIRY_LEASE_MS).arg(BATCH);
        let members: Vec<String> =
            due.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("expire queue"))?;
        let mut by_device: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for member in &members {
            let Some((device, seq)) = member.rsplit_once('|') else { continue };
            by_device.entry(device).or_default().push(seq);
        }
        let mut expired = Vec::new();
        let mut gone = Vec::new();
        for (device, seqs) in by_device {
            let mut call = self.queue_call(device, "expire");
            call.arg(now);
            for seq in &seqs {
                call.arg(*seq);
            }
            // What one queue gave up is the caller's whatever the others do;
            // a queue that failed is looked at again when the lease runs out.
            let reply: std::result::Result<Vec<String>, _> = call.invoke_async(&mut self.connection.clone()).await;
            let removed =
                match reply.map_err(redis_error("expire queue")).and_then(|r| parse_messages("expire queue", &r)) {
                    Ok(removed) => removed,
                    Err(err) => {
                        warn!(%err, device, "could not expire a queue's due messages; retried after the lease");
                        continue;
                    }
                };
            for seq in seqs {
                if !removed.iter().any(|m| m.seq.to_string() == seq) {
                    gone.push(format!("{device}|{seq}"));
                }
            }
            expired.extend(removed);
        }
        self.uncount_taken(&expired).await;
        if !gone.is_empty() {
            // Taken before they were due, or put back since: only the index
            // entries still under this lease go.
            let mut call = self.quota_call(&total, "unlease");
            for member in &gone {
                call.arg(member).arg(lease);
            }
            if let Err(err) = call.invoke_async::<u64>(&mut self.connection.clone()).await {
                warn!(%err, "could not drop expiry index entries; looked at again after the lease");
            }
        }
        Ok(expired)
    }
}
