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

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use redis::{FromRedisValue, PushInfo, PushKind, RedisError};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;
use tracing::warn;

use super::{RedisClient, RedisConnection};

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// The socket.io adapter's connection to Redis pub/sub.
#[derive(Clone)]
pub(crate) struct PubSubDriver {
    connection: RedisConnection,
    handlers: Handlers,
}

impl std::fmt::Debug for PubSubDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubDriver").finish_non_exhaustive()
    }
}

/// Hands one pushed message to the stream subscribed to its channel.
fn route(push: PushInfo, handlers: &Handlers) {
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
    /// Connects through `client` (one Redis or a cluster).
    pub(crate) async fn connect(client: &RedisClient) -> Result<PubSubDriver, RedisError> {
        let handlers: Handlers = Arc::default();
        let routed = handlers.clone();
        let push = move |push: PushInfo| {
            route(push, &routed);
            Ok::<(), std::convert::Infallible>(())
        };
        let connection = client.connect(Some(push)).await?;
        Ok(PubSubDriver { connection, handlers })
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

impl Driver for PubSubDriver {
    type Error = RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        self.connection.publish(&chan, &val).await.map(drop)
    }

    async fn subscribe(&self, chan: String, size: usize) -> Result<MessageStream<ChanItem>, Self::Error> {
        self.subscribe_channel(chan, size).await.map(MessageStream::new)
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        self.handlers.write().unwrap_or_else(|e| e.into_inner()).remove(&chan);
        self.connection.unsubscribe(&chan).await
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let count = self.connection.subscribers(chan).await?;
        Ok(u16::try_from(count).unwrap_or(u16::MAX))
    }
}
