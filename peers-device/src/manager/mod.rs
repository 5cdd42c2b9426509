//! The connection manager's parts. The sans-IO rules (classes, preference and
//! eviction, health, backoff) live in their own modules and are tested without
//! sockets or sleeps.

pub mod backoff;
pub mod class;
pub mod health;
pub mod preference;
