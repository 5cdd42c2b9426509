//! Privacy by trust, server side: which devices may reach a device, and
//! where a stranger's requests go instead.
//!
//! A device that registered with an allow list (`protocol::AllowList`) is,
//! to any device not on it, indistinguishable from a device that does not
//! exist: the stranger's signals, presence subscriptions and relay requests
//! are addressed to the device's *shadow*, an id no device can have, which
//! is never online. So they are answered, queued, limited and expired by
//! the same code, with the same quotas, as those to a made-up id.
//!
//! ```text
//! shadow(D) = SHA-1("peers/v1 signaling shadow" || D as 40 lowercase hex digits)
//! ```
//!
//! A real id is the first 20 bytes of a SHA-256 over a public key
//! (`DeviceId::from_public_key`): finding a key whose id is someone's shadow
//! means finding a SHA-256/SHA-1 collision. Redis mode computes the same
//! value in Lua (`redis.sha1hex`).

use std::collections::HashMap;

use peers_sdk::DeviceId;
use sha1::{Digest, Sha1};

use crate::protocol::AllowList;

/// The domain-separation prefix of a shadow id.
pub const SHADOW_DOMAIN: &str = "peers/v1 signaling shadow";

/// The id a stranger's requests to `device` are addressed to.
pub fn shadow_of(device: &DeviceId) -> DeviceId {
    let digest = Sha1::new().chain_update(SHADOW_DOMAIN.as_bytes()).chain_update(device.to_string()).finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    // SHA-1 is 20 bytes: always a well-formed id.
    hex.parse().unwrap_or(*device)
}

/// The allow lists of the devices registered on this instance.
#[derive(Debug, Default)]
pub(crate) struct AllowLists {
    lists: HashMap<DeviceId, AllowList>,
}

impl AllowLists {
    /// Sets (`Some`) or clears (`None`: everyone may reach it) `device`'s list.
    pub(crate) fn set(&mut self, device: DeviceId, list: Option<AllowList>) {
        match list {
            Some(list) => self.lists.insert(device, list),
            None => self.lists.remove(&device),
        };
    }

    /// Whether `from` may reach `to`.
    pub(crate) fn reaches(&self, from: &DeviceId, to: &DeviceId) -> bool {
        self.lists.get(to).is_none_or(|list| list.contains(from))
    }

    /// Where `from`'s request for `to` goes: `to`, or its shadow.
    pub(crate) fn address(&self, from: &DeviceId, to: &DeviceId) -> DeviceId {
        if self.reaches(from, to) { *to } else { shadow_of(to) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> DeviceId {
        format!("{n:02x}").repeat(20).parse().unwrap()
    }

    #[test]
    fn the_shadow_is_the_documented_sha1() {
        // SHA-1("peers/v1 signaling shadow" || "01" × 20), computed independently.
        let expected = {
            let input = format!("{SHADOW_DOMAIN}{}", "01".repeat(20));
            let digest = Sha1::digest(input.as_bytes());
            digest.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        assert_eq!(shadow_of(&id(1)).to_string(), expected);
        assert_ne!(shadow_of(&id(1)), shadow_of(&id(2)));
        assert_ne!(shadow_of(&id(1)), id(1));
    }

    #[test]
    fn only_listed_devices_reach_a_device_with_a_list() {
        let mut lists = AllowLists::default();
        assert!(lists.reaches(&id(2), &id(1)), "no list: everyone");
        lists.set(id(1), Some(AllowList::new([id(3)]).unwrap()));
        assert!(!lists.reaches(&id(2), &id(1)));
        assert!(lists.reaches(&id(3), &id(1)));
        assert_eq!(lists.address(&id(2), &id(1)), shadow_of(&id(1)));
        assert_eq!(lists.address(&id(3), &id(1)), id(1));
        lists.set(id(1), Some(AllowList::default()));
        assert!(!lists.reaches(&id(3), &id(1)), "an empty list: nobody");
        lists.set(id(1), None);
        assert!(lists.reaches(&id(2), &id(1)));
    }
}
