//! `peers-device`: what applications and daemons use to keep a user's devices,
//! and the groups they share, in sync.
//!
//! - [`Device`] ([`Device::builder`]): an application's device in a dozen lines —
//!   keys, trust, groups, a socket.io listener, the dialers and a signaling server
//!   wired with defaults; [`Device::add_peer`] trusts a device, makes it a member
//!   and keeps it connected. The `peers` daemon is built on it.
//! - [`ConnectionManager`]: one authenticated connection per device, routed to
//!   many per-group sync engines, preferring a local socket, then WebRTC, then the
//!   internet, then the signaling server's relay, and handing over between them
//!   without losing calls; [`ConnectionManager::serve`] takes any
//!   [`Listener`](peers_sdk::socket::Listener), with incoming handshakes bounded
//!   in one place.
//! - [`sync`]: the [`SyncGroup`](sync::SyncGroup) trait applications implement
//!   (the original design's `IPeerDevice`) and the reference engine,
//!   [`SqliteSyncEngine`](sync::SqliteSyncEngine): a key-value map per group in
//!   SQLite, last writer wins with a deterministic tie-break, incremental pulls
//!   from a per-member checkpoint.
//! - [`device_message`]: small messages routed through other devices.
//! - [`transfer`]: send and receive files by a short code (`7-maple-orbit`): a
//!   SPAKE2 PAKE through the signaling server confirms the two devices' keys,
//!   then a `Connection` pinned to them moves the files, each chunk checked
//!   against a BLAKE3 manifest, resumable; [`transfer::send`] and
//!   [`transfer::receive`] do it all, and `peers send` / `peers receive` wrap them.
//!   [`transfer::pair`] and [`transfer::join`] pair two devices the same way: the
//!   PAKE confirms their long-term keys and both learn the groups to trust each
//!   other in (`peers pair` / `peers join`).
//! - [`transports`]: the socket.io, WebRTC and signaling-server dialers and
//!   listeners; `daemon` and the `peers` binary (feature `daemon`).
//!
//! # Features
//!
//! | Feature  | Default | What it brings |
//! |----------|---------|----------------|
//! | `daemon` | yes     | `daemon` (data directory, `Daemon`, the control socket on Unix), `demo`, the `peers` binary and its CLI crates (clap, indicatif, tracing-subscriber); the demo runs a signaling server (`peers-signaling/server`) |
//!
//! An application that embeds sync uses `default-features = false`: the
//! manager, the device builder, sync, transfer, the socket.io listener and
//! dialer, WebRTC and the signaling *client*, and no signaling server, Redis,
//! Prometheus exporter or CLI crates.
//!
//! What it does not do: store trusted devices or groups for an application
//! (the daemon keeps them in its data directory), or trust a device nobody
//! added or vouched for.
//!
//! ```no_run
//! # async fn run() -> peers_device::Result<()> {
//! use std::sync::Arc;
//! use peers_device::{Device, GroupId, sync::{EngineOptions, SqliteSyncEngine}};
//!
//! let keys = Arc::new(peers_sdk::DeviceKeys::generate("me")?);
//! let notes = GroupId::new("notes")?;
//! let engine = SqliteSyncEngine::in_memory(notes, keys.device_id(), EngineOptions::default()).await?;
//! let device = Device::builder().keys(keys).group(Arc::new(engine)).build().await?;
//! println!("share code: {}", device.info().to_share_code());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

#[cfg(feature = "daemon")]
pub mod daemon;
#[cfg(feature = "daemon")]
pub mod demo;
pub mod device;
pub mod device_message;
mod error;
mod group;
pub mod manager;
pub mod netmon;
pub mod sync;
pub mod transfer;
pub mod transports;
mod util;

pub use device::{Device, DeviceBuilder};
pub use error::{Error, Result};
pub use group::{GroupId, MAX_GROUP_ID_LEN};
pub use manager::class::ConnectionClass;
pub use manager::{ConnectionManager, DialError, Dialer, ManagerConfig, ManagerEvent, ManagerStatus, Serving};
