//! The [`ConnectionManager`] and its parts. The rules (classes, preference and
//! eviction, health, backoff) are sans-IO modules tested without sockets or
//! sleeps; `api`, `links`, `control` and `dial` are the async driver around them.

mod api;
pub mod backoff;
pub mod class;
mod config;
mod control;
mod dial;
pub mod health;
mod links;
pub mod preference;
mod status;
mod trust;

pub use api::ConnectionManager;
pub use config::ManagerConfig;
pub use dial::Dialer;
pub use status::{ConnectionStatus, GroupStatus, HistoryEntry, ManagerEvent, ManagerStatus, MemberStatus};
