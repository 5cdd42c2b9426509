//! [`PubSubDriver`]: how `socketioxide-redis` publishes and subscribes,
//! over a reconnecting [`ConnectionManager`] (RESP3 push messages).
//!
//! The driver `socketioxide-redis` ships holds one plain multiplexed
//! connection: once Redis restarts, its subscriptions are gone for good and
//! deliveries between instances stop. This one reconnects, re-subscribes
//! every channel, and is kept awake by [`PubSubDriver::ping`] (called by the
//! heartbeat), so the reconnection happens before a delivery needs it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, PushInfo, PushKind, RedisError};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;
use tracing::warn;

use super::REDIS_TIMEOUT;

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// The socket.io adapter's connection to Redis pub/sub.
#[derive(Clone)]
pub(crate) struct PubSubDriver {
    connection: ConnectionManager,
    handlers: Handlers,
}

impl std::fmt::Debug for PubSubDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubDriver").finish_non_exhaustive()
    }
}

/// Hands one pushed message to the stream subscribed to its channel.
fn route(push: PushInfo, handlers: &Handlers) {
    if push.kind != PushKind::Message {
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
    /// Connects (the client's URL must ask for RESP3).
    pub(crate) async fn connect(client: &redis::Client) -> Result<PubSubDriver, RedisError> {
        let handlers: Handlers = Arc::default();
        let routed = handlers.clone();
        let config = ConnectionManagerConfig::new()
            .set_push_sender(move |push: PushInfo| {
                route(push, &routed);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(std::time::Duration::from_millis(500));
        let connection = ConnectionManager::new_with_config(client.clone(), config).await?;
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
        if let Err(err) = self.connection.clone().subscribe(chan.as_str()).await {
            self.handlers.write().unwrap_or_else(|e| e.into_inner()).remove(&chan);
            return Err(err);
        }
        Ok(receiver)
    }

    /// One round trip, so that a lost connection is noticed and re-made (with
    /// its subscriptions) without waiting for a delivery to fail.
    pub(crate) async fn ping(&self) -> Result<(), RedisError> {
        redis::cmd("PING").query_async::<String>(&mut self.connection.clone()).await.map(|_| ())
    }
}

impl Driver for PubSubDriver {
    type Error = RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        redis::cmd("PUBLISH").arg(chan).arg(val).query_async::<redis::Value>(&mut self.connection.clone()).await?;
        Ok(())
    }

    async fn subscribe(&self, chan: String, size: usize) -> Result<MessageStream<ChanItem>, Self::Error> {
        self.subscribe_channel(chan, size).await.map(MessageStream::new)
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        self.handlers.write().unwrap_or_else(|e| e.into_inner()).remove(&chan);
        self.connection.clone().unsubscribe(chan.as_str()).await
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let (_, count): (String, u16) =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(chan).query_async(&mut self.connection.clone()).await?;
        Ok(count)
    }
}
