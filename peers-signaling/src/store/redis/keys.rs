//! Key names and their Redis Cluster hash slots.
//!
//! Every script call names its keys in `KEYS`, and all of one call's keys
//! carry one hash tag (the part in braces), so they fall in one hash slot
//! and a Redis Cluster can run the call on one node:
//!
//! ```text
//! P:{d:<dev>}      a device: presence, allow list, queue, notice box
//! P:{qs:<dev>}     the messages <dev> has queued (its sender quota)
//! P:{qa:<addr>}    the messages an address group has queued
//! P:{qt}           every queued message: the total and the expiry index
//! P:{rl:<what>}    one rate budget
//! P:{s:<id>}       a session's record and lock
//! P:{sl}           the code slots, the live and the finished sessions
//! P:{ss:<dev>}     the live sessions a device created
//! P:{sa:<addr>}    the live sessions of an address group
//! P:{rp:<a>|<b>}   the waiting relay requests between two devices
//! P:{relays}       the open relays (the cap) and their records
//! P:{ra:<addr>}    the open relays of an address group
//! ```
//!
//! A script only builds key names by appending to one of its `KEYS`
//! (`KEYS[1] .. ':on'`), so what it touches stays in the slot of the keys
//! it was given. [`checked_keys`] asserts that in debug builds (every test
//! run), for every call.

/// The hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), Redis Cluster's key hash.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in bytes {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The part of `key` Redis Cluster hashes: the text between the first `{`
/// and the next `}` when that is not empty, otherwise the whole key.
fn hashed_part(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The Redis Cluster hash slot of `key`.
pub(crate) fn slot(key: &str) -> u16 {
    crc16(hashed_part(key).as_bytes()) % SLOTS
}

/// `keys`, checked in debug builds to fall in one hash slot.
pub(super) fn checked_keys<const N: usize>(keys: [String; N]) -> [String; N] {
    if let Some(first) = keys.first() {
        let expected = slot(first);
        debug_assert!(
            keys.iter().all(|key| slot(key) == expected),
            "keys of one script call in several slots: {keys:?}"
        );
    }
    keys
}

/// The key names under one prefix `P`.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_owned() }
    }

    /// The base of device `device`'s keys: presence (`:on`), allow list
    /// (`:al`), queue (`:q`, `:sq`, `:m`, `:c`, `:seq`), notices (`:n`).
    pub(super) fn device(&self, device: &str) -> String {
        format!("{}:{{d:{device}}}", self.prefix)
    }

    /// The base of the quota of the messages `device` has queued.
    pub(super) fn sender(&self, device: &str) -> String {
        format!("{}:{{qs:{device}}}", self.prefix)
    }

    /// The base of the quota of the messages address group `address` has queued.
    pub(super) fn address(&self, address: &str) -> String {
        format!("{}:{{qa:{address}}}", self.prefix)
    }

    /// The base of every queued message: the total and the expiry index.
    pub(super) fn total(&self) -> String {
        format!("{}:{{qt}}", self.prefix)
    }

    /// Session `id`'s record; its lock is `:lock` after it.
    pub(super) fn session(&self, id: &str) -> String {
        format!("{}:{{s:{id}}}", self.prefix)
    }

    /// The base of the code slots and the live and finished sessions.
    pub(super) fn sessions(&self) -> String {
        format!("{}:{{sl}}", self.prefix)
    }

    /// The base of the count of the live sessions `device` created.
    pub(super) fn sessions_of_device(&self, device: &str) -> String {
        format!("{}:{{ss:{device}}}", self.prefix)
    }

    /// The base of the count of the live sessions of address group `address`.
    pub(super) fn sessions_of_address(&self, address: &str) -> String {
        format!("{}:{{sa:{address}}}", self.prefix)
    }

    /// The base of the waiting relay requests between devices `a` and `b`
    /// (in either order).
    pub(super) fn relay_pair(&self, a: &str, b: &str) -> String {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        format!("{}:{{rp:{low}|{high}}}", self.prefix)
    }

    /// The base of the open relays (the cap) and their records.
    pub(super) fn relays(&self) -> String {
        format!("{}:{{relays}}", self.prefix)
    }

    /// The base of the count of the open relays `device` is a party of.
    pub(super) fn relays_of_device(&self, device: &str) -> String {
        format!("{}:rd", self.device(device))
    }

    /// The base of the count of the open relays of address group `address`.
    pub(super) fn relays_of_address(&self, address: &str) -> String {
        format!("{}:{{ra:{address}}}", self.prefix)
    }

    /// The key of rate budget `what` (for example `ip:192.0.2.1`).
    pub(super) fn rate(&self, what: &str) -> String {
        format!("{}:{{rl:{what}}}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::{Keys, checked_keys, slot};

    #[test]
    fn slots_are_redis_clusters() {
        // The examples of the Redis Cluster specification.
        assert_eq!(super::crc16(b"123456789"), 0x31c3);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("foo{}{bar}"), super::crc16(b"foo{}{bar}") % 16384);
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
        assert_eq!(slot("foo{bar}{zap}"), slot("bar"));
        // Values `CLUSTER KEYSLOT` gives.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("somekey"), 11058);
        assert_eq!(slot("{foo}bar"), 12182);
    }

    #[test]
    fn what_one_call_touches_shares_a_slot() {
        let keys = Keys::new("peers-signaling");
        let device = "6n7w2f5l3yq";
        let base = keys.device(device);
        let touched = ["on", "al", "q", "sq", "m", "c", "seq", "n"].map(|what| format!("{base}:{what}"));
        assert!(touched.iter().all(|key| slot(key) == slot(&base)), "{touched:?}");
        checked_keys(touched);
        // Different devices, senders and budgets spread over the slots.
        assert_ne!(slot(&keys.device("a")), slot(&keys.device("b")));
        assert_ne!(slot(&keys.sender(device)), slot(&keys.device(device)));
        assert_eq!(slot(&keys.relays_of_device(device)), slot(&base));
        assert_eq!(keys.relay_pair("a", "b"), keys.relay_pair("b", "a"));
        let total = keys.total();
        assert_eq!(slot(&total), slot(&format!("{total}:z")));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "several slots")]
    fn keys_of_two_devices_are_refused() {
        let keys = Keys::new("p");
        checked_keys([keys.device("a"), keys.device("b")]);
    }
}
