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

mod memory;
mod sqlite;

use std::path::PathBuf;

pub use memory::MemoryStore;
pub use sqlite::{DATABASE_FILE, SqliteStore};

use crate::error::Result;
use crate::notices::StoredNotice;
use crate::queue::QueuedMessage;
use crate::sessions::Session;

/// What a store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Queued messages, in any order.
    pub messages: Vec<QueuedMessage>,
    /// Notices for offline senders, in any order.
    pub notices: Vec<StoredNotice>,
    /// Sessions, in any order.
    pub sessions: Vec<Session>,
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
    fn put_session(&mut self, session: &Session) -> Result<()>;
    /// Removes sessions by transfer id.
    fn delete_sessions(&mut self, transfer_ids: &[String]) -> Result<()>;
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
}

impl Default for StoreConfig {
    /// SQLite in `./peers-signaling-data`.
    fn default() -> Self {
        StoreConfig::Sqlite { data_dir: PathBuf::from("peers-signaling-data") }
    }
}

impl StoreConfig {
    /// Opens the store.
    pub fn open(&self) -> Result<Box<dyn Store>> {
        Ok(match self {
            StoreConfig::Memory => Box::new(MemoryStore::default()),
            StoreConfig::Sqlite { data_dir } => Box::new(SqliteStore::open_in_dir(data_dir)?),
        })
    }
}
