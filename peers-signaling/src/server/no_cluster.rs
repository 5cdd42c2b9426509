//! A build without the `redis` feature: one instance, no cluster.
//!
//! The single-instance code reaches the cluster only through
//! `Shared::cluster`, an `Option<Arc<Cluster>>`. Here [`Cluster`] is an enum
//! without variants, so that option is always `None` and the functions below,
//! each of which needs a cluster in hand, cannot run: they keep the names and
//! signatures of the Redis modules so that code has no `cfg` of its own.

pub(super) mod cluster {
    use std::net::IpAddr;
    use std::sync::{Arc, Weak};

    use axum::Router;
    use peers_sdk::DeviceId;
    use serde_json::{Map, Value as Json};

    use super::super::connection::{Connection, Replier};
    use super::super::{ServerConfig, Shared, SignalingServer};
    use crate::error::Error;
    use crate::protocol::{AllowList, Rejection, Signal};
    use crate::ratelimit::{Limited, RateLimits};

    /// Several instances behind Redis; none can exist in this build.
    #[derive(Debug)]
    pub(crate) enum Cluster {}

    impl Cluster {
        pub(crate) async fn allow(
            &self,
            _limits: &RateLimits,
            _device: Option<&DeviceId>,
            _ip: Option<IpAddr>,
        ) -> Result<Option<Limited>, Rejection> {
            match *self {}
        }
    }

    /// Refuses: [`StoreConfig::validate`](crate::store::StoreConfig::validate)
    /// already turned a Redis store away, this answers the same if reached.
    pub(in super::super) async fn attach(_config: ServerConfig) -> Result<(SignalingServer, Router), Error> {
        Err(Error::InvalidConfig {
            field: "store",
            detail: "this build has no Redis support (peers-signaling's `redis` feature)".into(),
        })
    }

    pub(in super::super) async fn register(
        cluster: &Arc<Cluster>,
        _conn: &Arc<Connection>,
        _device: DeviceId,
        _allow: Option<AllowList>,
        _replier: Replier,
    ) {
        match **cluster {}
    }

    pub(in super::super) async fn set_allow(
        cluster: &Cluster,
        _conn: &Connection,
        _device: DeviceId,
        _allow: Option<AllowList>,
    ) -> Result<Map<String, Json>, Rejection> {
        match *cluster {}
    }

    pub(in super::super) async fn signal(
        cluster: &Cluster,
        _conn: &Connection,
        _from: DeviceId,
        _signal: Signal,
    ) -> Result<Map<String, Json>, Rejection> {
        match *cluster {}
    }

    pub(in super::super) fn disconnected(
        _shared: &Shared,
        cluster: &Arc<Cluster>,
        _device: DeviceId,
        _peer: u64,
        _allow: Option<AllowList>,
    ) {
        match **cluster {}
    }

    pub(in super::super) async fn run_heartbeat(_cluster: Weak<Cluster>) {}

    pub(in super::super) async fn run_expiry(_cluster: Weak<Cluster>) {}
}

pub(super) mod cluster_relay {
    use std::sync::Arc;
    use std::time::Duration;

    use peers_sdk::DeviceId;
    use serde_json::{Map, Value as Json};

    use super::super::Shared;
    use super::super::connection::Connection;
    use super::cluster::Cluster;
    use crate::protocol::{Rejection, RelayClose, RelayCredit, RelayFrame};

    pub(in super::super) fn spawn_tasks(_shared: &Arc<Shared>) -> Vec<tokio::task::JoinHandle<()>> {
        Vec::new()
    }

    pub(in super::super) async fn flush(_shared: &Shared, _wait: Duration) {}

    pub(in super::super) async fn open(
        cluster: &Cluster,
        _conn: &Connection,
        _device: DeviceId,
        _peer: DeviceId,
    ) -> Result<Map<String, Json>, Rejection> {
        match *cluster {}
    }

    pub(in super::super) fn frame(_shared: &Shared, cluster: &Cluster, _device: DeviceId, _frame: RelayFrame) {
        match *cluster {}
    }

    pub(in super::super) fn credit(_shared: &Shared, cluster: &Cluster, _device: DeviceId, _credit: RelayCredit) {
        match *cluster {}
    }

    pub(in super::super) fn close(_shared: &Shared, cluster: &Cluster, _device: DeviceId, _close: RelayClose) {
        match *cluster {}
    }
}

pub(super) mod cluster_presence {
    use peers_sdk::DeviceId;
    use serde_json::{Map, Value as Json};

    use super::super::connection::Connection;
    use super::cluster::Cluster;
    use crate::protocol::Rejection;

    pub(in super::super) async fn subscribe(
        cluster: &Cluster,
        _conn: &Connection,
        _devices: Vec<DeviceId>,
        _add: bool,
    ) -> Result<Map<String, Json>, Rejection> {
        match *cluster {}
    }
}

pub(super) mod cluster_sessions {
    use peers_sdk::DeviceId;
    use serde_json::{Map, Value as Json};

    use super::super::connection::Connection;
    use super::cluster::Cluster;
    use crate::protocol::{Rejection, SessionRequest};

    pub(in super::super) async fn request(
        cluster: &Cluster,
        _conn: &Connection,
        _device: DeviceId,
        _request: SessionRequest,
    ) -> Result<Map<String, Json>, Rejection> {
        match *cluster {}
    }
}
