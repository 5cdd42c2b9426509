//! The signaling state conformance suite (`common/conformance.rs`) against
//! each backend: one process with the memory store, and (feature `redis`)
//! two instances sharing a real `redis-server`, two sharing a
//! `redis-server --cluster-enabled yes` that holds every hash slot (so
//! Redis itself refuses a script call that touches two slots), and two
//! sharing a Redis Cluster of three nodes through the cluster client.

mod common;

mod local {
    use super::common;
    use super::common::conformance::state_conformance_tests;
    state_conformance_tests!(common::conformance::local);
}

#[cfg(feature = "redis")]
mod redis {
    use super::common;
    use super::common::conformance::state_conformance_tests;
    state_conformance_tests!(common::conformance::redis);
}

#[cfg(feature = "redis")]
mod redis_cluster_node {
    use super::common;
    use super::common::conformance::state_conformance_tests;
    state_conformance_tests!(common::conformance::redis_cluster_node);
}

#[cfg(feature = "redis")]
mod redis_cluster {
    use super::common;
    use super::common::conformance::state_conformance_tests;
    state_conformance_tests!(common::conformance::redis_cluster);
}
