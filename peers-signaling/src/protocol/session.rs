//! How a session by code is made and where it is in its life: what a client
//! reads in replies and `"session"` notices (the server's table is
//! `crate::sessions`, behind the `server` feature).

use serde::{Deserialize, Serialize};

/// How a session's code is made and checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// The code is `NNNN-SSSSSS`: the server checks the secret and locks the
    /// session after `SessionLimits::max_failed_joins` wrong ones.
    #[default]
    Secret,
    /// The code is the slot number alone; the parties authenticate each other
    /// with a PAKE, and the creator closes the session after one failed PAKE.
    Pake,
}

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Waiting for its receiver.
    Created,
    /// The receiver joined.
    Joined,
    /// Closed by a party, or locked after wrong secrets.
    Closed,
    /// Its time ran out.
    Expired,
}
