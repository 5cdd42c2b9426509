//! Group ids and the per-group RPC namespace.
//!
//! One connection between two devices carries every group they share. Each group
//! gets its own RPC names, `listChanges_{groupId}`, `getNetworkInfo_{groupId}` and
//! `notifyOfChanges_{groupId}`, so a handler is registered only for the groups a
//! peer is a member of: a peer outside group B finds no `listChanges_B` to call.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The longest group id, in bytes.
pub const MAX_GROUP_ID_LEN: usize = 64;

/// A group's id: 1 to [`MAX_GROUP_ID_LEN`] characters from `[A-Za-z0-9_.-]`, so it
/// can be part of an RPC method name and a file name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct GroupId(String);

impl GroupId {
    /// Checks and wraps `id`.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        let reason = if id.is_empty() {
            Some("empty")
        } else if id.len() > MAX_GROUP_ID_LEN {
            Some("longer than 64 bytes")
        } else if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
            Some("only A-Z, a-z, 0-9, '_', '-' and '.' are allowed")
        } else if id.starts_with('.') {
            Some("must not start with '.'")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidGroupId { id: id.chars().take(80).collect(), reason }),
            None => Ok(GroupId(id)),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `listChanges_{groupId}`.
    pub fn list_changes_method(&self) -> String {
        format!("listChanges_{}", self.0)
    }

    /// `getNetworkInfo_{groupId}`.
    pub fn network_info_method(&self) -> String {
        format!("getNetworkInfo_{}", self.0)
    }

    /// `notifyOfChanges_{groupId}`.
    pub fn notify_method(&self) -> String {
        format!("notifyOfChanges_{}", self.0)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({})", self.0)
    }
}

impl FromStr for GroupId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        GroupId::new(s)
    }
}

impl<'de> Deserialize<'de> for GroupId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = String::deserialize(deserializer)?;
        GroupId::new(id).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids_and_names_methods() {
        let id = GroupId::new("family-photos_2").unwrap();
        assert_eq!(id.list_changes_method(), "listChanges_family-photos_2");
        assert_eq!(id.network_info_method(), "getNetworkInfo_family-photos_2");
        assert_eq!(id.notify_method(), "notifyOfChanges_family-photos_2");
    }

    #[test]
    fn refuses_ids_that_could_escape_a_method_name_or_a_path() {
        for bad in ["", "a/b", "../x", ".hidden", "a b", "é", &"x".repeat(65)] {
            assert!(matches!(GroupId::new(bad), Err(Error::InvalidGroupId { .. })), "{bad:?}");
        }
        let decoded: Result<GroupId, _> = rmp_serde::from_slice(&rmp_serde::to_vec("a/b").unwrap());
        assert!(decoded.is_err());
    }
}
