//! [`PubSubDriver`]: how `socketioxide-redis` publishes and subscribes (and
//! how the server's own channels are subscribed), over a reconnecting
//! [`RedisConnection`] (RESP3 push messages): plain pub/sub on one Redis,
//! sharded pub/sub on a cluster (`connection.rs`).
//!
//! The single-server driver `socketioxide-redis` ships holds one plain
//! multiplexed connection: once Redis restarts, its subscriptions are gone
//! for good and deliveries between instances stop. This one reconnects,
//! re-subscribes every channel, and is kept awake by [`PubSubDriver::ping`]
//! (called by the heartbeat), so the reconnection happens before a delivery
//! needs it.
//!
//! On a cluster a sharded channel lives on the node serving its hash slot.
//! When a resharding moves that slot (`CLUSTER SETSLOT … NODE`), the old
//! node drops the channel's subscribers with an `sunsubscribe` push; the
//! `redis` crate forwards the push and forgets the subscription (it renews
//! only what it still tracks, after a reconnection), so without more every
//! message on the channel would be lost from then on. [`route`] notices an
//! `sunsubscribe` of a channel still wanted here, and [`resubscribe`]
//! subscribes it again (the cluster client follows `MOVED` to the slot's
//! new node), up to [`RESUBSCRIBE_TRIES`] times in a row and then again
//! every [`RESUBSCRIBE_EVERY`] until it succeeds. A publish on a channel
//! being subscribed again waits for it (up to [`PUBLISH_WAIT`]), and one that
//! reached nobody on a channel this instance itself listens on (so at least
//! one listener is due) is tried again, every [`PUBLISH_RETRY`] up to
//! [`PUBLISH_WAIT`]: nobody got it, so trying again cannot duplicate it;
//! still nobody then, the publish fails (a signal is refused with
//! `recipient_busy` rather than answered `delivered`). Publishes and counts
//! use a connection of their own (see [`PubSubDriver`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use redis::{FromRedisValue, PushInfo, PushKind, RedisError};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{RedisClient, RedisConnection};

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;
type WeakHandlers = Weak<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// Subscriptions in a row for a channel whose slot moved, before it waits
/// for the next round.
const RESUBSCRIBE_TRIES: u32 = 8;
/// The first wait between those tries (doubled each time, at most a second).
const RESUBSCRIBE_BACKOFF: Duration = Duration::from_millis(25);
/// How often channels still lost are tried again, and the driver's task
/// checks that the driver is still in use.
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(1);
/// The longest a publish waits for its channel to be subscribed again, or
/// keeps trying while nobody receives it.
const PUBLISH_WAIT: Duration = Duration::from_secs(2);
/// How long a publish that reached nobody waits before it tries again.
const PUBLISH_RETRY: Duration = Duration::from_millis(20);

/// The channels Redis dropped under this driver (their slot moved) that
/// are still wanted, each with how often it was dropped (so a drop during
/// its resubscription is not forgotten), and the wake-up of the task
/// subscribing them again. At most one entry per subscribed channel.
#[derive(Default)]
struct Lost {
    channels: Mutex<HashMap<String, u64>>,
    wake: Notify,
}

impl Lost {
    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn contains(&self, channel: &str) -> bool {
        self.channels().contains_key(channel)
    }

    /// Marks `channel` dropped by Redis.
    fn dropped(&self, channel: String) {
        *self.channels().entry(channel).or_default() += 1;
        self.wake.notify_one();
    }
}

/// The socket.io adapter's connection to Redis pub/sub.
#[derive(Clone)]
pub(crate) struct PubSubDriver {
    /// Subscriptions only (and the heartbeat's `PING`): the `redis` crate
    /// takes an `sunsubscribe` push that arrives while a command is in
    /// flight on a node's connection for that command's reply, so publishes
    /// and counts go over `commands`.
    connection: RedisConnection,
    /// Publishes and subscriber counts (no push messages).
    commands: RedisConnection,
    handlers: Handlers,
    lost: Arc<Lost>,
}

impl std::fmt::Debug for PubSubDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubDriver").finish_non_exhaustive()
    }
}

/// Hands one pushed message to the stream subscribed to its channel; marks
/// a sharded channel Redis dropped while it is still wanted as lost.
fn route(push: PushInfo, handlers: &WeakHandlers, lost: &Lost) {
    let Some(handlers) = handlers.upgrade() else { return };
    if push.kind == PushKind::SUnsubscribe {
        // Ours (`unsubscribe`) come after the handler is gone; one for a
        // channel still handled is Redis dropping it: its slot moved.
        let Some(Ok(channel)) = push.data.into_iter().next().map(String::from_redis_value) else { return };
        if handlers.read().unwrap_or_else(|e| e.into_inner()).contains_key(&channel) {
            info!(%channel, "redis dropped a sharded subscription (its slot moved); subscribing again");
            lost.dropped(channel);
        }
        return;
    }
    // `SMessage`: a message of a sharded channel (cluster mode).
    if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
        return;
    }
    let mut data = push.data.into_iter();
    let (Some(channel), Some(payload)) = (data.next(), data.next()) else { return };
    let (Ok(channel), Ok(payload)) = (String::from_redis_value(channel), Vec::<u8>::from_redis_value(payload)) else {
        warn!("unreadable pub/sub message from redis");
        return;
    };
    let sender = handlers.read().unwrap_or_else(|e| e.into_inner()).get(&channel).cloned();
    if let Some(sender) = sender
        && sender.try_send((channel.clone(), payload)).is_err()
    {
        warn!(%channel, "the reader of a pub/sub channel is behind; a message was dropped");
    }
}

impl PubSubDriver {
    /// Connects through `client` (one Redis or a cluster), and starts the
    /// task that subscribes moved channels again (it ends once the driver is
    /// dropped).
    pub(crate) async fn connect(client: &RedisClient) -> Result<PubSubDriver, RedisError> {
        let handlers: Handlers = Arc::default();
        let lost = Arc::new(Lost::default());
        let (routed, pushed) = (Arc::downgrade(&handlers), lost.clone());
        let push = move |push: PushInfo| {
            route(push, &routed, &pushed);
            Ok::<(), std::convert::Infallible>(())
        };
        let connection = client.connect(Some(push)).await?;
        let commands = client.connect(None::<fn(PushInfo) -> Result<(), std::convert::Infallible>>).await?;
        tokio::spawn(resubscribe(connection.clone(), Arc::downgrade(&handlers), lost.clone()));
        Ok(PubSubDriver { connection, commands, handlers, lost })
    }

    /// Subscribes `chan`; its messages arrive on the receiver, at most `size`
    /// waiting (more are dropped, logged). Re-subscribed after a reconnection.
    pub(crate) async fn subscribe_channel(
        &self,
        chan: String,
        size: usize,
    ) -> Result<mpsc::Receiver<ChanItem>, RedisError> {
        let (sender, receiver) = mpsc::channel(size.max(1));
        self.handlers.write().unwrap_or_else(|e| e.into_inner()).insert(chan.clone(), sender);
        if let Err(err) = self.connection.subscribe(&chan).await {
            self.handlers.write().unwrap_or_else(|e| e.into_inner()).remove(&chan);
            return Err(err);
        }
        Ok(receiver)
    }

    /// One round trip, so that a lost connection is noticed and re-made (with
    /// its subscriptions) without waiting for a delivery to fail.
    pub(crate) async fn ping(&self) -> Result<(), RedisError> {
        redis::cmd("PING").query_async::<redis::Value>(&mut self.connection.clone()).await.map(drop)
    }
}

/// Subscribes again, on their new nodes, the channels Redis dropped when
/// their slots moved; runs while the driver's handlers exist.
async fn resubscribe(connection: RedisConnection, handlers: WeakHandlers, lost: Arc<Lost>) {
    loop {
        let _ = tokio::time::timeout(RESUBSCRIBE_EVERY, lost.wake.notified()).await;
        let Some(handlers) = handlers.upgrade() else { return };
        let channels: Vec<(String, u64)> = lost.channels().iter().map(|(c, n)| (c.clone(), *n)).collect();
        for (channel, drops) in channels {
            if subscribe_again(&connection, &handlers, &channel).await {
                let mut channels = lost.channels();
                if channels.get(&channel) == Some(&drops) {
                    channels.remove(&channel);
                }
            }
        }
    }
}

/// Subscribes `channel` again, up to [`RESUBSCRIBE_TRIES`] times with a
/// growing wait; whether that is done (or no longer wanted).
async fn subscribe_again(connection: &RedisConnection, handlers: &Handlers, channel: &str) -> bool {
    let started = Instant::now();
    let mut wait = RESUBSCRIBE_BACKOFF;
    for attempt in 1..=RESUBSCRIBE_TRIES {
        if !handlers.read().unwrap_or_else(|e| e.into_inner()).contains_key(channel) {
            return true; // unsubscribed meanwhile
        }
        match connection.subscribe(channel).await {
            Ok(()) => {
                info!(%channel, attempt, took_ms = started.elapsed().as_millis(), "subscribed again");
                return true;
            }
            Err(err) if attempt < RESUBSCRIBE_TRIES => {
                debug!(%channel, attempt, %err, "could not subscribe again yet");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            Err(err) => warn!(%channel, %err, "could not subscribe again; trying again in a second"),
        }
    }
    false
}

impl Driver for PubSubDriver {
    type Error = RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        let deadline = Instant::now() + PUBLISH_WAIT;
        while self.lost.contains(&chan) && Instant::now() < deadline {
            tokio::time::sleep(PUBLISH_RETRY).await;
        }
        loop {
            let receivers = self.commands.publish(&chan, &val).await?;
            let listening = self.handlers.read().unwrap_or_else(|e| e.into_inner()).contains_key(&chan);
            if receivers > 0 || !listening {
                return Ok(());
            }
            if Instant::now() >= deadline {
                warn!(channel = %chan, "a message on a channel this instance listens on reached nobody; dropped");
                // An error, not silence: a signal is then refused, not
                // answered `delivered`.
                return Err(RedisError::from((redis::ErrorKind::Client, "the message reached no subscriber")));
            }
            debug!(channel = %chan, "a message reached nobody while its channel is subscribed again; trying again");
            tokio::time::sleep(PUBLISH_RETRY).await;
        }
    }

    async fn subscribe(&self, chan: String, size: usize) -> Result<MessageStream<ChanItem>, Self::Error> {
        self.subscribe_channel(chan, size).await.map(MessageStream::new)
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        self.handlers.write().unwrap_or_else(|e| e.into_inner()).remove(&chan);
        self.connection.unsubscribe(&chan).await
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let count = self.commands.subscribers(chan).await?;
        Ok(u16::try_from(count).unwrap_or(u16::MAX))
    }
}
