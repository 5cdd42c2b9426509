//! [`RedisState`]: the shared state of several server instances, kept in one
//! Redis: the offline queue, the outcome notices, presence and per-device rate
//! limits. Every change that must hold across instances is one Lua script
//! (the `*.lua` files next to this one), so it is atomic in Redis: the queue
//! bounds, "deliver or queue", the hand-over from queued to direct delivery,
//! expiry (each message expires on exactly one instance), notice boxes.
//!
//! Keys, under a prefix `P` (see `common.lua` and `notices.lua` for each):
//!
//! ```text
//! P:seq         counter  next queue sequence number
//! P:m           hash     seq -> queued message (JSON)
//! P:q:<dev>     zset     seqs waiting for <dev>, in order
//! P:dl          zset     seq scored by its expiry (unix ms)
//! P:qn P:qb     hash     <dev> -> messages / bytes waiting
//! P:tot         hash     n, b -> messages / bytes waiting overall
//! P:on:<dev>    string   "<instance>|<connection>|pending|up", expires
//! P:al:<dev>    set      the devices allowed to reach <dev>, and "*"; lives with P:on:<dev>
//! P:n:<dev>     list     outcome notices for <dev>
//! P:nt          counter  notices kept overall
//! P:nb          zset     <dev> scored by when its newest notice runs out
//! P:rl:<what>   string   GCRA state of a rate budget (dev:<dev>, ip:<ip>,
//!                        join-dev:<dev>, join-ip:<ip>), expires
//! P:s:<id>      string   session <id> (JSON); P:s:<id>:lock its lock, expires
//! P:slot:<n>    string   the transfer id holding code slot <n>
//! P:slive       zset     live transfer ids by deadline; P:sdev:<dev>, P:sip:<addr> the same per device, address
//! P:sdone       zset     finished transfer ids by the end of their grace time
//! P:rq:<dev>    zset     <dev>'s waiting relay requests "<peer>|<instance>|<conn>", by lapse
//! P:rid         counter  last relay id given
//! P:relays      zset     open relay ids by deadline (the relay cap)
//! P:r:<id>      string   "<a>|<a token>|<b>|<b token>", expires at the deadline
//! P:relay:<instance>  pub/sub channel: relay events for that instance
//! ```
//!
//! Each session lives under keys of its own (`sessions.rs`): a request
//! about one session holds that session's lock while the in-process
//! [`SessionTable`](crate::sessions::SessionTable) rules change it, and a new
//! session's code and counts are claimed in one script.
//!
//! Scripts build key names from the prefix, so this needs one Redis (or a
//! primary with replicas), not Redis Cluster.

mod pubsub;
mod relay;
mod sessions;

use std::time::Duration;

use peers_sdk::DeviceId;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::notices::NoticeLimits;
use crate::protocol::{AllowList, OutcomeNotice, SignalKind};
pub(crate) use pubsub::PubSubDriver;
pub(crate) use relay::{RelayPairing, RelayQuota};
pub(crate) use sessions::SlotClaim;

use crate::queue::{QueueBound, QueueLimits, QueueUsage, QueuedMessage};

/// How long one Redis request (or connection attempt) may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Most queued messages one script call takes or expires.
const BATCH: usize = 128;

/// `url` with `protocol=resp3` added unless it names a protocol.
pub(crate) fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(include_str!("common.lua"), "\n", include_str!($file)))
    };
}

/// The Lua scripts, loaded once (then called by their SHA).
struct Scripts {
    send: Script,
    take: Script,
    requeue: Script,
    expire: Script,
    presence: Script,
    notices: Script,
    ratelimit: Script,
    lock: Script,
    relay: Script,
    reach: Script,
    sessions: Script,
}

/// A queued message as stored in `P:m`. `q` is always the first field: a
/// script that shadows a message prepends it to the JSON text.
#[derive(Debug, Serialize, Deserialize)]
struct StoredMessage {
    /// The queue it waits in when that is not `to`'s: `to`'s shadow (the
    /// sender may not reach `to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    q: Option<String>,
    to: String,
    from: String,
    /// The sender's address group; absent in messages written before the
    /// per-address quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
    id: String,
    kind: SignalKind,
    body: String,
    sent_at: u64,
    expires_at: u64,
    size: usize,
}

impl StoredMessage {
    fn of(message: &QueuedMessage) -> StoredMessage {
        StoredMessage {
            q: message.shadowed.then(|| message.queue_key().to_string()),
            to: message.to.to_string(),
            from: message.from.to_string(),
            origin: message.origin.map(|ip| ip.to_string()),
            id: message.id.clone(),
            kind: message.kind,
            body: message.body.clone(),
            sent_at: message.sent_at,
            expires_at: message.expires_at,
            size: message.size(),
        }
    }

    fn into_queued(self, seq: u64) -> Result<QueuedMessage> {
        let device = |text: &str| {
            text.parse::<DeviceId>().map_err(|_| bad_reply("queue", format!("bad device id {text:?} in message {seq}")))
        };
        Ok(QueuedMessage {
            seq,
            to: device(&self.to)?,
            from: device(&self.from)?,
            origin: self.origin.and_then(|ip| ip.parse().ok()),
            id: self.id,
            kind: self.kind,
            body: self.body,
            sent_at: self.sent_at,
            expires_at: self.expires_at,
            shadowed: self.q.is_some(),
        })
    }
}

/// A notice as stored in `P:n:<dev>`.
#[derive(Debug, Serialize, Deserialize)]
struct StoredNotice {
    notice: OutcomeNotice,
    expires_at: u64,
}

/// What became of a signal handed to [`RedisState::send`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendOutcome {
    /// The recipient is up on some instance: emit to its room.
    Deliver {
        /// Its presence value (`<instance>|<connection>|up`).
        holder: String,
    },
    /// The recipient is offline and the time to live was 0.
    Expired,
    /// A bound is full; nothing was queued.
    Full(QueueBound, QueueUsage),
    /// Queued in Redis.
    Queued {
        /// Its sequence number.
        seq: u64,
    },
}

/// What became of an outcome notice handed to [`RedisState::notify`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotifyOutcome {
    /// The sender is up: emit to its room.
    Online {
        /// Its presence value (`<instance>|<connection>|up`).
        holder: String,
    },
    /// Kept in the sender's box; `dropped` older notices gave way.
    Stored {
        /// How many.
        dropped: usize,
    },
    /// The total was full and the sender's box empty: the notice was not kept.
    Refused,
}

/// The connection to Redis and the scripts; cheap to clone.
#[derive(Clone)]
pub(crate) struct RedisState {
    connection: ConnectionManager,
    prefix: String,
    scripts: std::sync::Arc<Scripts>,
    queue: QueueLimits,
    notices: NoticeLimits,
    presence_ttl: Duration,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

fn redis_error(operation: &'static str) -> impl FnOnce(redis::RedisError) -> Error {
    move |err| Error::Redis { operation, detail: err.to_string() }
}

fn bad_reply(operation: &'static str, detail: String) -> Error {
    Error::Redis { operation, detail: format!("unexpected reply: {detail}") }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl RedisState {
    /// Connects to `url` (which must already carry `protocol=resp3`).
    pub(crate) async fn connect(
        client: &redis::Client,
        prefix: &str,
        queue: QueueLimits,
        notices: NoticeLimits,
        presence_ttl: Duration,
    ) -> Result<RedisState> {
        // Fail a request within a few seconds rather than hold the
        // connection's requests while Redis is away; the manager reconnects
        // in the background and later requests use the new connection.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection =
            ConnectionManager::new_with_config(client.clone(), config).await.map_err(redis_error("connect"))?;
        let scripts = Scripts {
            send: script!("send.lua"),
            take: script!("take.lua"),
            requeue: script!("requeue.lua"),
            expire: script!("expire.lua"),
            presence: script!("presence.lua"),
            notices: script!("notices.lua"),
            ratelimit: script!("ratelimit.lua"),
            lock: script!("lock.lua"),
            relay: script!("relay.lua"),
            reach: script!("reach.lua"),
            sessions: Script::new(include_str!("sessions.lua")),
        };
        Ok(RedisState {
            connection,
            prefix: prefix.to_owned(),
            scripts: std::sync::Arc::new(scripts),
            queue,
            notices,
            presence_ttl,
        })
    }

    /// The presence lifetime.
    pub(crate) fn presence_ttl(&self) -> Duration {
        self.presence_ttl
    }

    /// The queue limits.
    pub(crate) fn queue_limits(&self) -> &QueueLimits {
        &self.queue
    }

    /// Delivers, expires, refuses or queues one signal (see `send.lua`).
    pub(crate) async fn send(&self, message: &QueuedMessage, ttl_ms: u64) -> Result<SendOutcome> {
        let stored = StoredMessage::of(message);
        let json = serde_json::to_string(&stored).map_err(|e| bad_reply("send", e.to_string()))?;
        let limits = &self.queue;
        let reply: Vec<String> = self
            .scripts
            .send
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(stored.to.as_str())
            .arg(message.sent_at)
            .arg(ttl_ms)
            .arg(stored.size)
            .arg(limits.per_device_messages)
            .arg(limits.per_device_bytes)
            .arg(limits.total_messages)
            .arg(limits.total_bytes)
            .arg(json)
            .arg(stored.from.as_str())
            .arg(stored.origin.as_deref().unwrap_or(""))
            .arg(limits.per_sender_messages)
            .arg(limits.per_sender_bytes)
            .arg(limits.per_address_messages)
            .arg(limits.per_address_bytes)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("send"))?;
        let number = |i: usize| -> Result<u64> {
            reply.get(i).and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| bad_reply("send", format!("{reply:?}")))
        };
        let as_usize = |i: usize| number(i).map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        match reply.first().map(String::as_str) {
            Some("deliver") => Ok(SendOutcome::Deliver { holder: reply.get(1).cloned().unwrap_or_default() }),
            Some("expired") => Ok(SendOutcome::Expired),
            Some("queued") => Ok(SendOutcome::Queued { seq: number(1)? }),
            Some("full") => {
                let bound = match reply.get(1).map(String::as_str) {
                    Some("device_messages") => QueueBound::DeviceMessages,
                    Some("device_bytes") => QueueBound::DeviceBytes,
                    Some("sender_messages") => QueueBound::SenderMessages,
                    Some("sender_bytes") => QueueBound::SenderBytes,
                    Some("address_messages") => QueueBound::AddressMessages,
                    Some("address_bytes") => QueueBound::AddressBytes,
                    Some("total_messages") => QueueBound::TotalMessages,
                    _ => QueueBound::TotalBytes,
                };
                let usage = QueueUsage {
                    device_messages: as_usize(2)?,
                    device_bytes: as_usize(3)?,
                    total_messages: as_usize(4)?,
                    total_bytes: as_usize(5)?,
                    sender_messages: as_usize(6)?,
                    sender_bytes: as_usize(7)?,
                    address_messages: as_usize(8)?,
                    address_bytes: as_usize(9)?,
                };
                Ok(SendOutcome::Full(bound, usage))
            }
            _ => Err(bad_reply("send", format!("{reply:?}"))),
        }
    }

    /// Marks `device` as registering on connection `token`; returns the
    /// previous presence value (another connection's, or a crashed instance's
    /// not yet expired).
    /// `allow` becomes its allow list (`P:al:<dev>`) in the same step.
    pub(crate) async fn claim(
        &self,
        device: &DeviceId,
        token: &str,
        allow: Option<&AllowList>,
    ) -> Result<Option<String>> {
        let mut call = self.scripts.presence.prepare_invoke();
        call.arg(&self.prefix).arg("claim").arg(millis(self.presence_ttl)).arg(device.to_string()).arg(token);
        allow_args(&mut call, allow);
        call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("claim presence"))
    }

    /// Replaces `device`'s allow list, if `token` still holds its presence;
    /// returns whether it did.
    pub(crate) async fn set_allow(&self, device: &DeviceId, token: &str, allow: Option<&AllowList>) -> Result<bool> {
        let mut call = self.scripts.presence.prepare_invoke();
        call.arg(&self.prefix).arg("allow").arg(millis(self.presence_ttl)).arg(device.to_string()).arg(token);
        allow_args(&mut call, allow);
        let n: u64 = call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("set allow list"))?;
        Ok(n > 0)
    }

    /// `device`'s allow list as Redis holds it (`None`: no list).
    pub(crate) async fn allow_list(&self, device: &DeviceId) -> Result<Option<AllowList>> {
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}:al:{device}", self.prefix))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("read an allow list"))?;
        if members.is_empty() {
            return Ok(None);
        }
        let ids = members.iter().filter(|m| m.as_str() != "*").filter_map(|m| m.parse::<DeviceId>().ok());
        AllowList::new(ids).map(Some).map_err(|r| bad_reply("read an allow list", r.message))
    }

    /// Where `from`'s requests for each of `devices` go: the device, or its
    /// shadow when its allow list does not name `from` (see `reach.lua`).
    pub(crate) async fn addresses(&self, from: &DeviceId, devices: &[DeviceId]) -> Result<Vec<DeviceId>> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.scripts.reach.prepare_invoke();
        call.arg(&self.prefix).arg(from.to_string());
        for device in devices {
            call.arg(device.to_string());
        }
        let reply: Vec<String> =
            call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("read allow lists"))?;
        if reply.len() != devices.len() {
            return Err(bad_reply("read allow lists", format!("{} ids for {}", reply.len(), devices.len())));
        }
        reply.iter().map(|id| id.parse().map_err(|_| bad_reply("read allow lists", format!("bad id {id:?}")))).collect()
    }

    /// Ends `device`'s presence if `token` still holds it; returns whether it did.
    pub(crate) async fn release(&self, device: &DeviceId, token: &str) -> Result<bool> {
        let n: u64 = self
            .scripts
            .presence
            .prepare_invoke()
            .arg(&self.prefix)
            .arg("release")
            .arg(millis(self.presence_ttl))
            .arg(device.to_string())
            .arg(token)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("release presence"))?;
        Ok(n > 0)
    }

    /// Extends the presence of the devices this instance holds.
    pub(crate) async fn refresh(&self, held: &[(DeviceId, String)]) -> Result<()> {
        for chunk in held.chunks(256) {
            let mut call = self.scripts.presence.prepare_invoke();
            call.arg(&self.prefix).arg("refresh").arg(millis(self.presence_ttl));
            for (device, token) in chunk {
                call.arg(device.to_string()).arg(token);
            }
            let _: u64 =
                call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("refresh presence"))?;
        }
        Ok(())
    }

    /// The pub/sub channel an instance stays subscribed to while it runs.
    pub(crate) fn alive_channel(&self, instance: &str) -> String {
        format!("{}:alive:{instance}", self.prefix)
    }

    /// Whether `instance` still holds its Redis connection: a process that
    /// died (even by SIGKILL) loses its subscription as soon as Redis sees
    /// its connection close, long before its presence keys run out.
    pub(crate) async fn instance_alive(&self, instance: &str) -> Result<bool> {
        let (_, subscribers): (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(self.alive_channel(instance))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("check an instance"))?;
        Ok(subscribers > 0)
    }

    /// Which of `devices` are online (registering or up) on some instance.
    pub(crate) async fn online(&self, devices: &[DeviceId]) -> Result<Vec<DeviceId>> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = devices.iter().map(|d| format!("{}:on:{d}", self.prefix)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("read presence"))?;
        Ok(devices.iter().zip(values).filter(|(_, v)| v.is_some()).map(|(d, _)| *d).collect())
    }

    /// The next batch of messages waiting for `device`, oldest first; an empty
    /// batch also turns the registration `token` "up" (see `take.lua`).
    pub(crate) async fn take(&self, device: &DeviceId, token: &str) -> Result<Vec<QueuedMessage>> {
        let reply: Vec<String> = self
            .scripts
            .take
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(device.to_string())
            .arg(token)
            .arg(BATCH)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("take queue"))?;
        parse_messages("take queue", &reply)
    }

    /// Puts back messages [`take`](Self::take) returned but could not hand over.
    pub(crate) async fn requeue(&self, messages: &[QueuedMessage]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut call = self.scripts.requeue.prepare_invoke();
        call.arg(&self.prefix);
        for message in messages {
            let stored = StoredMessage::of(message);
            let json = serde_json::to_string(&stored).map_err(|e| bad_reply("requeue", e.to_string()))?;
            let queue = message.queue_key().to_string();
            call.arg(message.seq).arg(queue).arg(message.expires_at).arg(stored.size).arg(json);
        }
        let _: u64 = call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("requeue"))?;
        Ok(())
    }

    /// Removes up to a batch of messages due at `now`.
    pub(crate) async fn expire(&self, now: u64) -> Result<Vec<QueuedMessage>> {
        let reply: Vec<String> = self
            .scripts
            .expire
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(now)
            .arg(BATCH)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("expire queue"))?;
        parse_messages("expire queue", &reply)
    }

    /// Hands an outcome notice to its sender's box unless the sender is up.
    pub(crate) async fn notify(&self, now: u64, sender: &DeviceId, notice: &OutcomeNotice) -> Result<NotifyOutcome> {
        let ttl = millis(self.notices.ttl);
        let stored = StoredNotice { notice: notice.clone(), expires_at: now.saturating_add(ttl) };
        let json = serde_json::to_string(&stored).map_err(|e| bad_reply("notify", e.to_string()))?;
        let reply: Vec<String> = self
            .scripts
            .notices
            .prepare_invoke()
            .arg(&self.prefix)
            .arg("push")
            .arg(sender.to_string())
            .arg(now)
            .arg(json)
            .arg(self.notices.per_device.max(1))
            .arg(self.notices.total.max(1))
            .arg(ttl)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("notify"))?;
        let dropped = || reply.get(1).and_then(|d| d.parse().ok()).unwrap_or(0);
        match reply.first().map(String::as_str) {
            Some("online") => Ok(NotifyOutcome::Online { holder: reply.get(1).cloned().unwrap_or_default() }),
            Some("stored") => Ok(NotifyOutcome::Stored { dropped: dropped() }),
            Some("refused") => Ok(NotifyOutcome::Refused),
            _ => Err(bad_reply("notify", format!("{reply:?}"))),
        }
    }

    /// Removes `device`'s notices; returns those still current at `now`, oldest
    /// first, and how many had run out.
    pub(crate) async fn take_notices(&self, now: u64, device: &DeviceId) -> Result<(Vec<OutcomeNotice>, usize)> {
        let items: Vec<String> = self
            .scripts
            .notices
            .prepare_invoke()
            .arg(&self.prefix)
            .arg("take")
            .arg(device.to_string())
            .arg(now)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("take notices"))?;
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
        self.scripts
            .notices
            .prepare_invoke()
            .arg(&self.prefix)
            .arg("sweep")
            .arg("")
            .arg(now)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("sweep notices"))
    }

    /// One request against each of `budgets` at once (see [`Budget`]): `None`
    /// if every budget had room (and now counts it), otherwise the index of
    /// the first one without room (and nothing counts).
    pub(crate) async fn allow<'a>(
        &self,
        now: u64,
        budgets: impl IntoIterator<Item = &'a Budget>,
    ) -> Result<Option<usize>> {
        let mut invoke = self.scripts.ratelimit.prepare_invoke();
        invoke.arg(now);
        for budget in budgets {
            invoke.arg(format!("{}:rl:{}", self.prefix, budget.key)).arg(budget.interval_ms).arg(budget.burst.max(1));
        }
        let refused: usize =
            invoke.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("rate limit"))?;
        Ok(refused.checked_sub(1))
    }
}

/// A rate budget shared by every instance: requests one per `interval_ms` on
/// average, with bursts of up to `burst`.
#[derive(Clone, Debug)]
pub(crate) struct Budget {
    /// What it limits, for example `ip:192.0.2.1` (prefixed in Redis).
    pub(crate) key: String,
    pub(crate) interval_ms: f64,
    pub(crate) burst: u32,
}

impl Budget {
    pub(crate) fn per_second(key: String, per_second: u32, burst: u32) -> Budget {
        Budget { key, interval_ms: 1000.0 / f64::from(per_second.max(1)), burst }
    }

    pub(crate) fn per_minute(key: String, per_minute: u32, burst: u32) -> Budget {
        Budget { key, interval_ms: 60_000.0 / f64::from(per_minute.max(1)), burst }
    }
}

/// The allow-list arguments of `presence.lua`: '0', or '1' and the ids.
fn allow_args(call: &mut redis::ScriptInvocation<'_>, allow: Option<&AllowList>) {
    match allow {
        None => {
            call.arg("0");
        }
        Some(list) => {
            call.arg("1");
            for id in list.iter() {
                call.arg(id.to_string());
            }
        }
    }
}

fn parse_messages(operation: &'static str, reply: &[String]) -> Result<Vec<QueuedMessage>> {
    let mut messages = Vec::with_capacity(reply.len() / 2);
    for pair in reply.chunks(2) {
        let [seq, json] = pair else { return Err(bad_reply(operation, "odd number of items".into())) };
        let seq: u64 = seq.parse().map_err(|_| bad_reply(operation, format!("bad seq {seq:?}")))?;
        let stored: StoredMessage = serde_json::from_str(json).map_err(|e| bad_reply(operation, e.to_string()))?;
        messages.push(stored.into_queued(seq)?);
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::with_resp3;

    #[test]
    fn resp3_is_added_once() {
        assert_eq!(with_resp3("redis://h:1"), "redis://h:1?protocol=resp3");
        assert_eq!(with_resp3("redis://h:1/2?x=y"), "redis://h:1/2?x=y&protocol=resp3");
        assert_eq!(with_resp3("redis://h:1?protocol=resp3"), "redis://h:1?protocol=resp3");
    }
}
