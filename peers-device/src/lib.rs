//! `peers-device`: what applications and daemons use to keep a user's devices,
//! and the groups they share, in sync.
//!
//! This crate holds, so far:
//!
//! - [`GroupId`] and the per-group RPC namespace (`listChanges_{groupId}`, ...);
//! - [`sync`]: the [`SyncGroup`](sync::SyncGroup) trait applications implement (the
//!   original design's `IPeerDevice`) and the reference engine,
//!   [`SqliteSyncEngine`](sync::SqliteSyncEngine): a key-value map per group in
//!   SQLite, last writer wins with a deterministic tie-break, incremental pulls
//!   from a per-member checkpoint, batched change notification and a periodic full
//!   resync;
//! - [`transfer`]: send and receive files by a short code (`7-maple-orbit`): a SPAKE2
//!   PAKE through the signaling server confirms the two devices' keys, then a
//!   `Connection` pinned to them moves the files, each chunk checked against a BLAKE3
//!   manifest, resumable; [`transfer::send`] and [`transfer::receive`] do it all, and
//!   the `peers send` / `peers receive` commands wrap them.
//!
//! The sync engine does not open connections itself: a `peers_sdk::Connection` to a member is
//! handed to [`sync::expose_group`] and [`sync::ConnectionPeer`].
#![deny(missing_docs)]

pub mod daemon;
pub mod demo;
pub mod device_message;
mod error;
mod group;
pub mod manager;
pub mod netmon;
pub mod sync;
pub mod transfer;
pub mod transports;
mod util;

pub use error::{Error, Result};
pub use group::{GroupId, MAX_GROUP_ID_LEN};
pub use manager::class::ConnectionClass;
pub use manager::{ConnectionManager, Dialer, ManagerConfig, ManagerEvent, ManagerStatus};
