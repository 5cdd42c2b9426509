//! The [`ConnectionManager`] and its parts. The rules (classes, preference and
//! eviction, health and liveness, backoff, and the [`link_table`] that makes
//! every handover and failover decision) are sans-IO modules tested without
//! sockets or sleeps; `api`, `links`, `control` and `dial` are the async driver
//! around them.

mod api;
pub mod backoff;
pub mod class;
mod config;
mod control;
mod dial;
mod handoff;
pub mod health;
pub mod link_table;
mod links;
mod listen;
pub mod preference;
mod status;
mod trust;

pub use api::ConnectionManager;
pub use config::ManagerConfig;
pub use dial::{DialError, Dialer};
pub use listen::Serving;
pub use status::{
    ConnectionStatus, GroupStatus, HistoryEntry, LinkState, ManagerEvent, ManagerStatus, MemberStatus, PathStatus,
    SignalingStatus,
};
