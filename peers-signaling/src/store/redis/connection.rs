//! The connection to Redis: one server (or a primary with replicas) through
//! a reconnecting [`ConnectionManager`], or a Redis Cluster through the
//! cluster client, which routes each command to the node holding its key's
//! hash slot and follows `MOVED` / `ASK` redirections. [`RedisConnection`]
//! is either and implements [`ConnectionLike`], so every script call, command
//! and pipeline of the store runs through the same code in both modes.
//!
//! Pub/sub differs: on a cluster a plain `PUBLISH` is copied to every node
//! and `PUBSUB NUMSUB` counts one node's subscribers, so cluster mode uses
//! sharded pub/sub (`SSUBSCRIBE` / `SPUBLISH` / `PUBSUB SHARDNUMSUB`, Redis
//! 7 or newer): a channel lives on the node of its hash slot, and the count
//! is summed over the nodes by the client.

use std::time::Duration;

use redis::aio::{AsyncPushSender, ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, ProtocolVersion, RedisError, RedisFuture, Value};

use super::REDIS_TIMEOUT;

/// Retries of a request that failed on a lost connection or a redirection.
const RETRIES: u32 = 2;
/// The longest wait between those retries.
const MAX_RETRY_WAIT: Duration = Duration::from_millis(500);

/// Most seed nodes a cluster URL list may name.
pub(crate) const MAX_SEED_NODES: usize = 16;

/// Where Redis is: one server, or the nodes of a cluster.
#[derive(Clone, Debug)]
pub(crate) enum RedisClient {
    /// One server (or a primary with replicas), RESP3.
    Single(redis::Client),
    /// A Redis Cluster, discovered from its seed nodes, RESP3 (boxed: it is
    /// twice the size of the other).
    Cluster(Box<ClusterClient>),
}

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

impl RedisClient {
    /// The client for `url` (`cluster`: the seed nodes of a Redis Cluster, one
    /// URL or up to [`MAX_SEED_NODES`] separated by commas, each of database 0;
    /// the cluster is found from whichever answers); nothing is dialed yet.
    pub(crate) fn open(url: &str, cluster: bool) -> Result<RedisClient, RedisError> {
        let invalid = |detail: String| RedisError::from((redis::ErrorKind::InvalidClientConfig, "invalid", detail));
        if !cluster {
            if url.contains(',') {
                return Err(invalid(
                    "a list of URLs names the seed nodes of a Redis Cluster; one server takes one URL".into(),
                ));
            }
            return redis::Client::open(with_resp3(url).as_str()).map(RedisClient::Single);
        }
        let seeds: Vec<String> = url.split(',').map(str::trim).map(with_resp3).collect();
        if seeds.len() > MAX_SEED_NODES {
            return Err(invalid(format!("{} seed nodes; at most {MAX_SEED_NODES}", seeds.len())));
        }
        for seed in &seeds {
            if redis::Client::open(seed.as_str())?.get_connection_info().redis_settings().db() != 0 {
                return Err(RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "a Redis Cluster has database 0 only",
                )));
            }
        }
        ClusterClient::builder(seeds)
            .use_protocol(ProtocolVersion::RESP3)
            .connection_timeout(REDIS_TIMEOUT)
            .response_timeout(REDIS_TIMEOUT)
            .retries(RETRIES)
            .max_retry_wait(u64::try_from(MAX_RETRY_WAIT.as_millis()).unwrap_or(u64::MAX))
            .build()
            .map(|client| RedisClient::Cluster(Box::new(client)))
    }

    /// A connection for commands and scripts (`push`: none), or for pub/sub
    /// (`push` gets every message; subscriptions are renewed after a
    /// reconnection). Requests fail within a few seconds while Redis (or a
    /// node) is away rather than wait; later ones use the new connection.
    pub(crate) async fn connect(&self, push: Option<impl AsyncPushSender>) -> Result<RedisConnection, RedisError> {
        match self {
            RedisClient::Single(client) => {
                let mut config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(REDIS_TIMEOUT))
                    .set_response_timeout(Some(REDIS_TIMEOUT))
                    .set_number_of_retries(usize::try_from(RETRIES).unwrap_or(usize::MAX))
                    .set_max_delay(MAX_RETRY_WAIT);
                if let Some(push) = push {
                    config = config.set_push_sender(push).set_automatic_resubscription();
                }
                ConnectionManager::new_with_config(client.clone(), config).await.map(RedisConnection::Single)
            }
            RedisClient::Cluster(client) => {
                let mut config =
                    ClusterConfig::new().set_connection_timeout(REDIS_TIMEOUT).set_response_timeout(REDIS_TIMEOUT);
                if let Some(push) = push {
                    config = config.set_push_sender(push);
                }
                client.get_async_connection_with_config(config).await.map(RedisConnection::Cluster)
            }
        }
    }
}

/// A connection to one Redis or to a cluster; cheap to clone (clones share
/// the connection).
#[derive(Clone)]
pub(crate) enum RedisConnection {
    /// One server.
    Single(ConnectionManager),
    /// A cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(connection) => connection.req_packed_command(cmd),
            RedisConnection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            RedisConnection::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(connection) => connection.get_db(),
            RedisConnection::Cluster(connection) => connection.get_db(),
        }
    }
}

impl RedisConnection {
    /// Publishes `payload` on `channel` (sharded on a cluster); returns how
    /// many subscribers got it.
    pub(crate) async fn publish(&self, channel: &str, payload: &[u8]) -> Result<u64, RedisError> {
        let command = match self {
            RedisConnection::Single(_) => "PUBLISH",
            RedisConnection::Cluster(_) => "SPUBLISH",
        };
        redis::cmd(command).arg(channel).arg(payload).query_async(&mut self.clone()).await
    }

    /// How many connections are subscribed to `channel` (on a cluster: its
    /// sharded subscribers, summed over the nodes).
    pub(crate) async fn subscribers(&self, channel: &str) -> Result<u64, RedisError> {
        let which = match self {
            RedisConnection::Single(_) => "NUMSUB",
            RedisConnection::Cluster(_) => "SHARDNUMSUB",
        };
        let (_, count): (String, u64) =
            redis::cmd("PUBSUB").arg(which).arg(channel).query_async(&mut self.clone()).await?;
        Ok(count)
    }

    /// Subscribes `channel` (sharded on a cluster); its messages go to the
    /// push sender this connection was made with.
    pub(crate) async fn subscribe(&self, channel: &str) -> Result<(), RedisError> {
        match self.clone() {
            RedisConnection::Single(mut connection) => connection.subscribe(channel).await,
            RedisConnection::Cluster(mut connection) => connection.ssubscribe(channel).await,
        }
    }

    /// Ends a subscription made by [`subscribe`](Self::subscribe).
    pub(crate) async fn unsubscribe(&self, channel: &str) -> Result<(), RedisError> {
        match self.clone() {
            RedisConnection::Single(mut connection) => connection.unsubscribe(channel).await,
            RedisConnection::Cluster(mut connection) => connection.sunsubscribe(channel).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_SEED_NODES, RedisClient, with_resp3};

    #[test]
    fn resp3_is_added_once() {
        assert_eq!(with_resp3("redis://h:1"), "redis://h:1?protocol=resp3");
        assert_eq!(with_resp3("redis://h:1/2?x=y"), "redis://h:1/2?x=y&protocol=resp3");
        assert_eq!(with_resp3("redis://h:1?protocol=resp3"), "redis://h:1?protocol=resp3");
    }

    #[test]
    fn the_url_decides_nothing_the_flag_decides_the_client() {
        assert!(matches!(RedisClient::open("redis://h:1", false), Ok(RedisClient::Single(_))));
        assert!(matches!(RedisClient::open("redis://h:1", true), Ok(RedisClient::Cluster(_))));
        assert!(RedisClient::open("http://h:1", true).is_err());
        assert!(RedisClient::open("redis://h:1/2", false).is_ok());
        let err = RedisClient::open("redis://h:1/2", true).unwrap_err().to_string();
        assert!(err.contains("database 0"), "{err}");
    }

    #[test]
    fn a_cluster_takes_a_list_of_seed_nodes_and_one_server_does_not() {
        assert!(matches!(RedisClient::open("redis://a:1, redis://b:2,redis://c:3", true), Ok(RedisClient::Cluster(_))));
        let err = RedisClient::open("redis://a:1,redis://b:2", false).unwrap_err().to_string();
        assert!(err.contains("seed nodes"), "{err}");
        let err = RedisClient::open("redis://a:1,redis://b:2/3", true).unwrap_err().to_string();
        assert!(err.contains("database 0"), "{err}");
        assert!(RedisClient::open("redis://a:1,", true).is_err(), "an empty seed");
        let many = vec!["redis://a:1"; MAX_SEED_NODES + 1].join(",");
        let err = RedisClient::open(&many, true).unwrap_err().to_string();
        assert!(err.contains("at most 16"), "{err}");
    }
}
