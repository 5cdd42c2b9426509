//! [`RedisState`]: the shared state of several server instances, kept in
//! Redis: the offline queue, the outcome notices, presence and the shared
//! rate budgets. Every change that must hold across instances is made of Lua
//! scripts (the `*.lua` files next to this one), each atomic in Redis and
//! each touching the keys of one hash slot (`keys.rs`), so the state can
//! live on a Redis Cluster (`connection.rs`: one Redis or a cluster, behind
//! one connection type): the queue bounds, "deliver or queue", the
//! hand-over from queued to direct delivery, expiry (each message expires on
//! exactly one instance), notice boxes.
//!
//! Keys, under a prefix `P` (see `common.lua`, `quota.lua` and `notices.lua`
//! for each):
//!
//! ```text
//! P:{d:<dev>}:on     string   "<instance>|<connection>|pending|up", expires
//! P:{d:<dev>}:al     set      the devices allowed to reach <dev>, and "*"; lives with :on
//! P:{d:<dev>}:rl     string   <dev>'s request budget (GCRA state) as its last holder
//!                             left it; written on release, read by a claim; expires
//! P:{d:<dev>}:m      hash     seq -> queued message (JSON)
//! P:{d:<dev>}:q      zset     seqs waiting for <dev>, in order; :sq its shadow queue
//! P:{d:<dev>}:c      hash     qn, qb, sn, sb: messages / bytes in :q and :sq
//! P:{d:<dev>}:seq    counter  the last seq of <dev>'s queue
//! P:{qs:<dev>}:z     zset     "<to>|<seq>" of the messages <dev> has queued, by expiry;
//!                             :sz their sizes, :b their bytes (the sender quota)
//! P:{qa:<addr>}:z    zset     the same for an address group (:sz, :b)
//! P:{qt}:z           zset     the same for every queued message: the total
//!                             and the expiry index (:sz, :b)
//! P:{d:<dev>}:n      list     outcome notices for <dev>
//! P:{nt}:c P:{nt}:t  hash, counter  notices per box, notices kept overall
//! P:{nt}:z           zset     <dev> scored by when its newest notice runs out
//! P:{rl:<what>}      string   GCRA state of a rate budget (ip:<ip>,
//!                             join-dev:<dev>, join-ip:<ip>, ...), expires
//! P:{s:<id>}         string   session <id> (JSON); P:{s:<id>}:lock its lock, expires
//! P:{sl}:slot:<n>    string   the transfer id holding code slot <n>
//! P:{sl}:live        zset     live transfer ids by deadline; :done finished ones by
//!                             the end of their grace time
//! P:{ss:<dev>}:z     zset     the live sessions <dev> created; P:{sa:<addr>}:z an address's
//! P:{d:<dev>}:rq     zset     <dev>'s waiting relay requests "<peer>|<instance>|<conn>", by lapse
//! P:{rp:<a>|<b>}:w   zset     the waiting requests between a < b, by lapse
//! P:{relays}:z       zset     open relay ids by deadline (the relay cap); :id the last id;
//!                             :p:<id> the parties, expires at the deadline
//! P:{d:<dev>}:rd:z   zset     the open relays <dev> is a party of; P:{ra:<addr>}:z an address's
//! P:relay:<instance> pub/sub channel: relay events for that instance
//! P:alive:<instance> pub/sub channel: subscribed while that instance runs
//!                    (both sharded on a cluster)
//! ```
//!
//! Each session lives under keys of its own (`sessions.rs`): a request
//! about one session holds that session's lock while the in-process
//! [`SessionTable`](crate::sessions::SessionTable) rules change it. A new
//! session is counted against its device and address, then its code and the
//! overall count are claimed in one script.
//!
//! Every key is hash-tagged (`keys.rs`) and every script call touches one
//! hash slot; an operation that spans slots (queueing counts a message
//! against its recipient, sender, address and the total) is several calls,
//! each atomic, ordered so that every bound holds (see `queue.rs`).

mod connection;
mod keys;
mod notices;
mod pubsub;
mod queue;
mod relay;
mod sessions;

use std::time::Duration;

use futures_util::future::join_all;
use peers_sdk::DeviceId;
use redis::Script;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::notices::NoticeLimits;
use crate::protocol::{AllowList, OutcomeNotice, SignalKind};
pub(crate) use connection::{RedisClient, RedisConnection};
use keys::{Keys, checked_keys};
pub(crate) use pubsub::PubSubDriver;
pub(crate) use relay::{RelayPairing, RelayQuota};
pub(crate) use sessions::SlotClaim;

use crate::queue::{QueueBound, QueueLimits, QueueUsage, QueuedMessage};

/// How long one Redis request (or connection attempt) may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// A script, with the `#!lua` line that makes Redis (7 or newer) hold it to
/// the hash slot rule: on a Redis Cluster a call touching keys of two slots
/// fails (scripts without it may, for compatibility). `common` prepends
/// `common.lua`.
macro_rules! script {
    ($file:literal) => {
        Script::new(concat!("#!lua\n", include_str!($file)))
    };
    (common $file:literal) => {
        Script::new(concat!("#!lua\n", include_str!("common.lua"), "\n", include_str!($file)))
    };
}

/// The Lua scripts, loaded once (then called by their SHA).
struct Scripts {
    queue: Script,
    quota: Script,
    presence: Script,
    notices: Script,
    ratelimit: Script,
    lock: Script,
    relay: Script,
    reach: Script,
    sessions: Script,
}

/// A queued message as stored in `P:{d:<to>}:m`. `q` is always the first field: a
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
    connection: RedisConnection,
    prefix: String,
    keys: Keys,
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
    /// Connects through `client` (one Redis or a cluster).
    pub(crate) async fn connect(
        client: &RedisClient,
        prefix: &str,
        queue: QueueLimits,
        notices: NoticeLimits,
        presence_ttl: Duration,
    ) -> Result<RedisState> {
        let no_push: Option<fn(redis::PushInfo) -> Result<(), std::convert::Infallible>> = None;
        let connection = client.connect(no_push).await.map_err(redis_error("connect"))?;
        let scripts = Scripts {
            queue: script!(common "queue.lua"),
            quota: script!("quota.lua"),
            presence: script!("presence.lua"),
            notices: script!(common "notices.lua"),
            ratelimit: script!("ratelimit.lua"),
            lock: script!("lock.lua"),
            relay: script!("relay.lua"),
            reach: script!(common "reach.lua"),
            sessions: script!("sessions.lua"),
        };
        Ok(RedisState {
            connection,
            prefix: prefix.to_owned(),
            keys: Keys::new(prefix),
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

    /// Marks `device` as registering on connection `token`; returns the
    /// previous presence value (another connection's, or a crashed instance's
    /// not yet expired) and the device's request budget as the last
    /// connection to release it left it (its GCRA state, unix ms; `None`:
    /// full).
    /// `allow` becomes its allow list (`P:{d:<dev>}:al`) in the same step.
    pub(crate) async fn claim(&self, device: &DeviceId, token: &str, allow: Option<&AllowList>) -> Result<Claimed> {
        let mut call = self.presence_call(device, "claim", token);
        allow_args(&mut call, allow);
        let reply: Vec<String> =
            call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("claim presence"))?;
        let [previous, budget] = reply.as_slice() else {
            return Err(bad_reply("claim presence", format!("{reply:?}")));
        };
        let previous = (!previous.is_empty()).then(|| previous.clone());
        Ok(Claimed { previous, budget: budget.parse().ok() })
    }

    /// A call of `presence.lua` about `device`.
    fn presence_call(&self, device: &DeviceId, op: &str, token: &str) -> redis::ScriptInvocation<'_> {
        let mut call = self.scripts.presence.prepare_invoke();
        let [base] = checked_keys([self.keys.device(&device.to_string())]);
        call.key(base).arg(op).arg(millis(self.presence_ttl)).arg(token);
        call
    }

    /// Replaces `device`'s allow list, if `token` still holds its presence;
    /// returns whether it did.
    pub(crate) async fn set_allow(&self, device: &DeviceId, token: &str, allow: Option<&AllowList>) -> Result<bool> {
        let mut call = self.presence_call(device, "allow", token);
        allow_args(&mut call, allow);
        let n: u64 = call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("set allow list"))?;
        Ok(n > 0)
    }

    /// `device`'s allow list as Redis holds it (`None`: no list).
    pub(crate) async fn allow_list(&self, device: &DeviceId) -> Result<Option<AllowList>> {
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}:al", self.keys.device(&device.to_string())))
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
    /// One call per device (each in its device's slot), sent together.
    pub(crate) async fn addresses(&self, from: &DeviceId, devices: &[DeviceId]) -> Result<Vec<DeviceId>> {
        let from = from.to_string();
        let calls = devices.iter().map(|device| {
            let device = device.to_string();
            let [base] = checked_keys([self.keys.device(&device)]);
            let mut call = self.scripts.reach.prepare_invoke();
            call.key(base).arg(&from).arg(device);
            let mut connection = self.connection.clone();
            async move {
                let id: String = call.invoke_async(&mut connection).await.map_err(redis_error("read allow lists"))?;
                id.parse().map_err(|_| bad_reply("read allow lists", format!("bad id {id:?}")))
            }
        });
        futures_util::future::try_join_all(calls).await
    }

    /// Ends `device`'s presence if `token` still holds it; returns whether it did.
    /// `budget` (the device's request budget as this instance leaves it, a
    /// GCRA state in unix ms, with `now`) is kept for the next registration,
    /// whoever holds the presence.
    pub(crate) async fn release(&self, device: &DeviceId, token: &str, budget: Option<(u64, f64)>) -> Result<bool> {
        let mut call = self.presence_call(device, "release", token);
        if let Some((now, tat)) = budget {
            call.arg(now).arg(tat);
        }
        let n: u64 = call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("release presence"))?;
        Ok(n > 0)
    }

    /// Extends the presence of the devices this instance holds (one call per
    /// device, at most 256 in flight). Returns those whose presence Redis
    /// no longer has (`presence.lua`: lost, not put back), and those another
    /// connection holds now (a newer registration whose `replaced` did not
    /// reach this instance).
    pub(crate) async fn refresh(&self, held: &[(DeviceId, String)]) -> Result<Refreshed> {
        let (mut lost, mut replaced) = (Vec::new(), Vec::new());
        for chunk in held.chunks(256) {
            let calls = chunk.iter().map(|(device, token)| {
                let call = self.presence_call(device, "refresh", token);
                let mut connection = self.connection.clone();
                async move { call.invoke_async::<u64>(&mut connection).await.map_err(redis_error("refresh presence")) }
            });
            let answers = futures_util::future::try_join_all(calls).await?;
            for (held, answer) in chunk.iter().zip(answers) {
                match answer {
                    0 => replaced.push(held.clone()),
                    2 => lost.push(held.clone()),
                    _ => {}
                }
            }
        }
        if lost.is_empty() {
            return Ok(Refreshed { lost, replaced });
        }
        // A script names its device's keys itself, so while a slot moves
        // between nodes it may run where the presence is not (yet or any
        // more); a plain read follows the move. Lost is what that read
        // does not find either.
        let devices: Vec<DeviceId> = lost.iter().map(|(device, _)| *device).collect();
        let present = self.online(&devices).await?;
        lost.retain(|(device, _)| !present.contains(device));
        Ok(Refreshed { lost, replaced })
    }

    /// The pub/sub channel an instance stays subscribed to while it runs.
    pub(crate) fn alive_channel(&self, instance: &str) -> String {
        format!("{}:alive:{instance}", self.prefix)
    }

    /// Whether `instance` still holds its Redis connection: a process that
    /// died (even by SIGKILL) loses its subscription as soon as Redis sees
    /// its connection close, long before its presence keys run out.
    pub(crate) async fn instance_alive(&self, instance: &str) -> Result<bool> {
        let subscribers = self
            .connection
            .subscribers(&self.alive_channel(instance))
            .await
            .map_err(redis_error("check an instance"))?;
        Ok(subscribers > 0)
    }

    /// Which of `devices` are online (registering or up) on some instance
    /// (one read per device, each in its device's slot, sent together).
    pub(crate) async fn online(&self, devices: &[DeviceId]) -> Result<Vec<DeviceId>> {
        let reads = devices.iter().map(|device| {
            let key = format!("{}:on", self.keys.device(&device.to_string()));
            let mut connection = self.connection.clone();
            async move {
                let value: Option<String> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut connection)
                    .await
                    .map_err(redis_error("read presence"))?;
                Ok::<_, Error>(value.map(|_| *device))
            }
        });
        Ok(futures_util::future::try_join_all(reads).await?.into_iter().flatten().collect())
    }

    /// One request against each of `budgets` (see [`Budget`]): `None` if
    /// every budget had room (and now counts it), otherwise the index of the
    /// first one without room (and nothing counts: the budgets that had
    /// room get their request back). Each budget is its own key and slot,
    /// so each is its own call; they go out together (one round trip on the
    /// pipelined connection).
    pub(crate) async fn allow<'a>(
        &self,
        now: u64,
        budgets: impl IntoIterator<Item = &'a Budget>,
    ) -> Result<Option<usize>> {
        let budgets: Vec<&Budget> = budgets.into_iter().collect();
        let takes = budgets.iter().map(|budget| self.rate_call(budget, "take", now, 1));
        let taken: Vec<bool> = join_all(takes).await.into_iter().map(|n| n.map(|n| n > 0)).collect::<Result<_>>()?;
        let Some(refused) = taken.iter().position(|had_room| !had_room) else { return Ok(None) };
        let counted = budgets.iter().zip(&taken).filter(|(_, had_room)| **had_room);
        let gives = counted.map(|(budget, _)| self.rate_call(budget, "give", now, 1));
        join_all(gives).await.into_iter().collect::<Result<Vec<u32>>>()?;
        Ok(Some(refused))
    }

    /// Counts up to `n` requests against `budget` at once, as many as it has
    /// room for (an instance's lease, spent in memory); how many.
    pub(crate) async fn lease(&self, now: u64, budget: &Budget, n: u32) -> Result<u32> {
        self.rate_call(budget, "lease", now, n).await
    }

    /// Gives `n` requests a lease counted and nobody made back to `budget`.
    pub(crate) async fn give(&self, now: u64, budget: &Budget, n: u32) -> Result<()> {
        self.rate_call(budget, "give", now, n).await.map(drop)
    }

    /// One call of `ratelimit.lua` on `budget` for `n` requests; how many it
    /// counted (`take`: 1 or 0).
    async fn rate_call(&self, budget: &Budget, op: &str, now: u64, n: u32) -> Result<u32> {
        let [key] = checked_keys([self.keys.rate(&budget.key)]);
        let done: u64 = self
            .scripts
            .ratelimit
            .prepare_invoke()
            .key(key)
            .arg(op)
            .arg(now)
            .arg(budget.interval_ms)
            .arg(budget.burst.max(1))
            .arg(n)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("rate limit"))?;
        Ok(u32::try_from(done).unwrap_or(u32::MAX))
    }
}

/// What [`RedisState::claim`] found.
#[derive(Debug)]
pub(crate) struct Claimed {
    /// The previous presence value, if a connection held the device.
    pub(crate) previous: Option<String>,
    /// The device's request budget as the last release left it (GCRA state,
    /// unix ms; `None`: full).
    pub(crate) budget: Option<f64>,
}

/// What [`RedisState::refresh`] found: the held devices (with their tokens)
/// whose presence is lost, and those another connection holds now.
#[derive(Debug, Default)]
pub(crate) struct Refreshed {
    pub(crate) lost: Vec<(DeviceId, String)>,
    pub(crate) replaced: Vec<(DeviceId, String)>,
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
