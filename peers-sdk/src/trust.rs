//! Trust decisions: how much a device trusts an authenticated peer.
//!
//! The handshake proves *who* a peer is; a [`TrustPolicy`] says whether that is good
//! enough. The connection is refused when the level is below the configured floor
//! ([`crate::ConnectionConfig::trust_floor`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::identity::{DeviceId, DeviceInfo};

/// How much a device trusts a peer, lowest first. Levels are ordered, so a floor is
/// a simple comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TrustLevel {
    /// Known bad: always refused.
    Untrusted,
    /// Never seen before, nothing vouches for it.
    Unknown,
    /// A device of a user we have not met before.
    NewUser,
    /// A new device of a user we already know.
    NewDevice,
    /// Seen before and accepted.
    Known,
    /// Explicitly trusted by the user.
    Trusted,
    /// Another device of our own user.
    SelfDevice,
}

/// Decides how much to trust an authenticated peer. In the original design this was
/// the `GetTrustLevel` callback.
///
/// The `DeviceInfo` passed in has already been authenticated: its `device_id`,
/// `signing_key` and `static_key` are proven. Its `user_id` is only a claim, so a
/// policy must not grant [`TrustLevel::SelfDevice`] on the user id alone.
///
/// Any `Fn(&DeviceInfo) -> TrustLevel` is a policy; implement the trait directly to
/// look the answer up asynchronously (a database, a prompt to the user).
#[doc(alias = "GetTrustLevel")]
pub trait TrustPolicy: Send + Sync + 'static {
    /// The trust level of `remote`.
    fn trust_level<'a>(&'a self, remote: &'a DeviceInfo) -> Pin<Box<dyn Future<Output = TrustLevel> + Send + 'a>>;
}

impl<F> TrustPolicy for F
where
    F: Fn(&DeviceInfo) -> TrustLevel + Send + Sync + 'static,
{
    fn trust_level<'a>(&'a self, remote: &'a DeviceInfo) -> Pin<Box<dyn Future<Output = TrustLevel> + Send + 'a>> {
        let level = self(remote);
        Box::pin(std::future::ready(level))
    }
}

/// A simple in-memory policy: an explicit level per device id, and a default for
/// everyone else. Cloning shares the same table.
#[derive(Clone, Debug)]
pub struct TrustStore {
    levels: Arc<RwLock<HashMap<DeviceId, TrustLevel>>>,
    default: TrustLevel,
}

impl TrustStore {
    /// A store that gives `default` to every device it has no entry for.
    pub fn new(default: TrustLevel) -> Self {
        TrustStore { levels: Arc::default(), default }
    }

    /// Sets the level of `device`.
    pub fn set(&self, device: DeviceId, level: TrustLevel) {
        self.levels.write().unwrap_or_else(|e| e.into_inner()).insert(device, level);
    }

    /// Removes the entry for `device`, so it gets the default again.
    pub fn remove(&self, device: &DeviceId) {
        self.levels.write().unwrap_or_else(|e| e.into_inner()).remove(device);
    }

    /// The level `device` currently gets.
    pub fn level(&self, device: &DeviceId) -> TrustLevel {
        self.levels.read().unwrap_or_else(|e| e.into_inner()).get(device).copied().unwrap_or(self.default)
    }
}

impl TrustPolicy for TrustStore {
    fn trust_level<'a>(&'a self, remote: &'a DeviceInfo) -> Pin<Box<dyn Future<Output = TrustLevel> + Send + 'a>> {
        Box::pin(std::future::ready(self.level(&remote.device_id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::DeviceKeys;

    #[tokio::test]
    async fn store_gives_explicit_levels_and_a_default() {
        let a = DeviceKeys::generate("a").unwrap().info(vec![]).unwrap();
        let b = DeviceKeys::generate("b").unwrap().info(vec![]).unwrap();
        let store = TrustStore::new(TrustLevel::Unknown);
        store.set(a.device_id, TrustLevel::Trusted);
        assert_eq!(store.trust_level(&a).await, TrustLevel::Trusted);
        assert_eq!(store.trust_level(&b).await, TrustLevel::Unknown);
        store.remove(&a.device_id);
        assert_eq!(store.trust_level(&a).await, TrustLevel::Unknown);
        assert!(TrustLevel::Untrusted < TrustLevel::Known && TrustLevel::Known < TrustLevel::SelfDevice);
    }
}
