//! A build without the `redis` feature: one instance, no cluster.
//!
//! Requests reach the state only through
//! [`SignalingState`](super::state::SignalingState), whose only
//! implementation in this build is the local one; `bind` still names the
//! Redis constructor, which here refuses.

pub(super) mod cluster {
    use axum::Router;

    use super::super::{ServerConfig, SignalingServer};
    use crate::error::Error;

    /// Refuses: [`StoreConfig::validate`](crate::store::StoreConfig::validate)
    /// already turned a Redis store away, this answers the same if reached.
    pub(in super::super) async fn attach(_config: ServerConfig) -> Result<(SignalingServer, Router), Error> {
        Err(Error::InvalidConfig {
            field: "store",
            detail: "this build has no Redis support (peers-signaling's `redis` feature)".into(),
        })
    }
}
