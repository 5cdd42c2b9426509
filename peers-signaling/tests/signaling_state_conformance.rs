//! The signaling state conformance suite (`common/conformance.rs`) against
//! each backend: one process with the memory store, and (feature `redis`)
//! two instances sharing a real `redis-server`, and two sharing a
//! `redis-server --cluster-enabled yes` that holds every hash slot (so
//! Redis itself refuses a script call that touches two slots).

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
