//! Where the server keeps what must survive a restart: the offline queue, the
//! outcome notices waiting for offline senders, and the sessions.
//!
//! The server's in-memory state machines ([`OfflineQueue`](crate::queue::OfflineQueue),
//! [`NoticeBoxes`](crate::notices::NoticeBoxes)) are the authority while it
//! runs; every change is written through to a [`Store`] before the client is
//! told about it, and [`Store::load`] brings them back at start-up.
//!
//! - [`SqliteStore`]: the default, one SQLite file in a data directory, zero setup.
//! - [`MemoryStore`]: nothing survives the process; for tests and ephemeral servers.
//! - [`StoreConfig::Redis`]: several instances share one Redis (or a Redis
//!   Cluster), which is then the authority for the queue, the notices,
//!   presence, sessions and per-device rate limits; not a write-through
//!   [`Store`]. It needs the
//!   crate's `redis` feature: without it the variant exists (so a config file
//!   names it the same way) and [`StoreConfig::validate`] refuses it.

mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;
mod sqlite;

use std::path::PathBuf;
use std::time::Duration;

pub use memory::MemoryStore;
pub use sqlite::{DATABASE_FILE, SqliteStore};

use crate::error::{Error, Result};
use crate::notices::StoredNotice;
use crate::queue::QueuedMessage;
use crate::sessions::CodeSession;

/// What a store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Queued messages, in any order.
    pub messages: Vec<QueuedMessage>,
    /// Notices for offline senders, in any order.
    pub notices: Vec<StoredNotice>,
    /// Sessions, in any order.
    pub sessions: Vec<CodeSession>,
}

/// Durable storage of the queue and the notices. Calls are synchronous and
/// short; the server makes them under its state lock, so they are applied in
/// the order the state changed.
pub trait Store: Send + std::fmt::Debug + 'static {
    /// Everything stored.
    fn load(&mut self) -> Result<Snapshot>;
    /// Adds a queued message.
    fn put_message(&mut self, message: &QueuedMessage) -> Result<()>;
    /// Removes queued messages by sequence number (delivered or expired).
    fn delete_messages(&mut self, seqs: &[u64]) -> Result<()>;
    /// Adds a notice.
    fn put_notice(&mut self, notice: &StoredNotice) -> Result<()>;
    /// Removes notices by sequence number.
    fn delete_notices(&mut self, seqs: &[u64]) -> Result<()>;
    /// Adds or replaces a session.
    fn put_session(&mut self, session: &CodeSession) -> Result<()>;
    /// Removes sessions by transfer id.
    fn delete_sessions(&mut self, transfer_ids: &[String]) -> Result<()>;
}

/// Whether this build can open a Redis store at `url` (`cluster`: a node of
/// a Redis Cluster).
#[cfg(feature = "redis")]
fn usable_redis_url(url: &str, cluster: bool) -> Result<(), String> {
    redis::RedisClient::open(url, cluster).map(drop).map_err(|err| format!("not a usable Redis URL: {err}"))
}

/// Without the `redis` feature no URL is usable.
#[cfg(not(feature = "redis"))]
fn usable_redis_url(_url: &str, _cluster: bool) -> Result<(), String> {
    Err("this build has no Redis support (peers-signaling's `redis` feature)".into())
}

/// Which store a server uses.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreConfig {
    /// In memory: lost when the process ends.
    Memory,
    /// SQLite in `data_dir` (created if missing), file `signaling.sqlite3`.
    Sqlite {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// Redis, shared by several server instances (each running its own
    /// [`SignalingServer::bind`](crate::SignalingServer::bind)). Redis holds
    /// the queue, the outcome notices, presence, sessions and per-device rate
    /// limits, and carries deliveries and relay frames between instances
    /// (socket.io rooms over `socketioxide-redis`, the server's own
    /// channels). One Redis server, or a Redis Cluster (`cluster`). Needs the
    /// `redis` feature.
    Redis {
        /// `redis://[user:pass@]host:port[/db]`; `protocol=resp3` is added when
        /// missing (the socket.io adapter needs RESP3 pub/sub). With `cluster`,
        /// seed nodes of the cluster (database 0): one URL, or up to 16
        /// separated by commas, so the server starts while a seed node is down.
        url: String,
        /// `url` is a node of a Redis Cluster (7 or newer): the server finds
        /// the other nodes from it, sends each request to the node of its
        /// hash slot, follows the cluster's redirections, and uses sharded
        /// pub/sub. Default `false`: one Redis server (or a primary).
        cluster: bool,
        /// Prefix of every key and channel, so several deployments can share
        /// one Redis. 1-64 bytes of `A-Z a-z 0-9 . _ : -`. Default `peers-signaling`.
        key_prefix: String,
        /// How long a device stays "online" in Redis without its instance's
        /// heartbeat (sent every third of it): after a crash, its devices go
        /// offline within this time. Default: 10 s; 1 s to 5 min.
        presence_ttl: Duration,
    },
}

impl Default for StoreConfig {
    /// SQLite in `./peers-signaling-data`.
    fn default() -> Self {
        StoreConfig::Sqlite { data_dir: PathBuf::from("peers-signaling-data") }
    }
}

impl StoreConfig {
    /// One Redis server at `url` with the default key prefix and presence
    /// lifetime (set `cluster` for a Redis Cluster).
    pub fn redis(url: impl Into<String>) -> Self {
        StoreConfig::Redis {
            url: url.into(),
            cluster: false,
            key_prefix: "peers-signaling".into(),
            presence_ttl: Duration::from_secs(10),
        }
    }

    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let StoreConfig::Redis { url, cluster, key_prefix, presence_ttl } = self else { return Ok(()) };
        let invalid = |field, detail: String| Err(Error::InvalidConfig { field, detail });
        if let Err(detail) = usable_redis_url(url, *cluster) {
            return invalid("store.redis_url", detail);
        }
        if key_prefix.is_empty()
            || key_prefix.len() > 64
            || !key_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b))
        {
            return invalid("store.key_prefix", "must be 1-64 bytes of A-Z a-z 0-9 . _ : -".into());
        }
        if *presence_ttl < Duration::from_secs(1) || *presence_ttl > Duration::from_secs(300) {
            return invalid("store.presence_ttl", format!("{presence_ttl:?} is outside 1 s to 5 min"));
        }
        Ok(())
    }

    /// Opens the store. For [`StoreConfig::Redis`] this is an in-memory
    /// store for the in-process part (which then holds nothing durable): the
    /// shared state is opened by the server.
    pub fn open(&self) -> Result<Box<dyn Store>> {
        Ok(match self {
            StoreConfig::Memory | StoreConfig::Redis { .. } => Box::new(MemoryStore::default()),
            StoreConfig::Sqlite { data_dir } => Box::new(SqliteStore::open_in_dir(data_dir)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A build without the `redis` feature refuses a Redis store by name
    /// instead of starting without it; a build with it checks the URL.
    #[test]
    fn a_redis_store_needs_the_redis_feature() {
        let checked = StoreConfig::redis("redis://127.0.0.1:6379").validate();
        if cfg!(feature = "redis") {
            checked.unwrap();
        } else {
            let err = checked.unwrap_err().to_string();
            assert!(err.contains("store.redis_url") && err.contains("`redis` feature"), "{err}");
        }
        assert!(StoreConfig::Memory.validate().is_ok());
    }
}
