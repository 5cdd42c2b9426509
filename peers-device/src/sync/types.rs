//! What the sync RPCs carry, and the limits on it.

use peers_sdk::DeviceId;
use serde::{Deserialize, Serialize};

/// One key's latest version, as listed by `listChanges`.
///
/// Versions are ordered by `(timestamp, origin)`: the greater one wins (last writer
/// wins, ties broken by the device id), so every device settles on the same value
/// whatever order the changes arrive in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The position of this change in the listing device's log (increasing).
    pub seq: u64,
    /// The key.
    pub key: String,
    /// The value, or `None` when the key was deleted (a tombstone).
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
    /// The hybrid-logical-clock time of the write.
    pub timestamp: u64,
    /// The device that made the write.
    pub origin: DeviceId,
}

impl Change {
    /// Bytes this change adds to a batch (key, value and a fixed allowance).
    pub fn weight(&self) -> usize {
        64 + self.key.len() + self.value.as_ref().map_or(0, Vec::len)
    }
}

/// A page of `listChanges`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeBatch {
    /// Changes with `seq` greater than the request's `since`, in `seq` order.
    pub changes: Vec<Change>,
    /// The listing device's newest `seq` when the page was read.
    pub head: u64,
    /// More changes follow: ask again from [`ChangeBatch::next_since`].
    pub more: bool,
    /// How far this page covers the listing device's log: every change up to
    /// this `seq` is listed or was left out on purpose ([`ListChanges::skip_mine`]).
    /// 0 (a device that does not send it): up to the last change listed.
    #[serde(default)]
    pub through: u64,
}

impl ChangeBatch {
    /// Where the next page starts, and where the asker's checkpoint moves once
    /// this page is applied: [`through`](Self::through), or the last change's
    /// `seq` when the lister did not say.
    pub fn next_since(&self, since: u64) -> u64 {
        let last = self.changes.last().map_or(since, |c| c.seq);
        self.through.max(last).max(since)
    }
}

/// The arguments of `listChanges_{groupId}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListChanges {
    /// List changes after this `seq` (0: from the start).
    pub since: u64,
    /// At most this many changes (the lister applies its own cap too).
    pub limit: u32,
    /// Leave out the changes the asker itself made (their `origin` is the
    /// asker): it has them, or newer versions. The page's
    /// [`ChangeBatch::through`] then says how far it covers. A lister that does
    /// not know the field lists everything, which is still correct.
    #[serde(default)]
    pub skip_mine: bool,
}

/// The reply of `getNetworkInfo_{groupId}`: enough to tell whether two devices
/// hold the same data without listing it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// The device answering.
    pub device: DeviceId,
    /// Its newest `seq`.
    pub head: u64,
    /// How many keys it holds, tombstones included.
    pub entries: u64,
    /// An order-independent digest of every key's `(key, timestamp, origin)`:
    /// equal digests mean equal data.
    #[serde(with = "serde_bytes")]
    pub digest: [u8; 32],
}

/// The arguments of `notifyOfChanges_{groupId}`: "I have changes up to `head`".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeNotice {
    /// The notifying device's newest `seq`.
    pub head: u64,
}

/// The largest value by default, in bytes: 32 MiB.
///
/// A `listChanges` page holds changes up to [`SyncLimits::max_batch_bytes`], or a
/// single change when that one alone is larger, so the largest page is one change
/// of this size plus its key: 33 MiB at most, within a `Connection`'s 64 MiB
/// message limit (`CodecConfig::max_message_size`), which the codec carries in
/// 1 MiB chunks so a large page does not hold up the calls queued behind it.
pub const MAX_VALUE_LEN: usize = 32 << 20;

/// Bounds on what the sync engine accepts and sends.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SyncLimits {
    /// The longest key, in bytes. Default: 1 KiB.
    pub max_key_len: usize,
    /// The largest value, in bytes. Default: [`MAX_VALUE_LEN`] (32 MiB). Both
    /// ends of a group must accept what its members write.
    pub max_value_len: usize,
    /// The most changes in one batch, served or applied. Default: 4,000. A
    /// member with a smaller cap serves smaller pages, so devices with
    /// different caps still sync.
    pub max_batch_changes: usize,
    /// The most bytes (by [`Change::weight`]) in one batch; a batch always holds at
    /// least one change (so a page is at most this, or one change of up to
    /// `max_key_len + max_value_len` and its allowance). Default: 4 MiB.
    pub max_batch_bytes: usize,
    /// How far ahead of this device's clock a change may be. Default: 10 minutes.
    pub max_clock_skew_ms: u64,
}

impl Default for SyncLimits {
    fn default() -> Self {
        SyncLimits {
            max_key_len: 1024,
            max_value_len: MAX_VALUE_LEN,
            max_batch_changes: 4000,
            max_batch_bytes: 4 << 20,
            max_clock_skew_ms: 10 * 60 * 1000,
        }
    }
}
