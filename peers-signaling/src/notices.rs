//! Outcome notices kept for senders that are offline when their message is
//! delivered from the queue or expires. Delivered when the sender registers
//! again, after its own queued messages.
//!
//! Sans-IO like [`OfflineQueue`](crate::queue::OfflineQueue). Bounded per
//! device and in time: a notice is kept for [`NoticeLimits::ttl`]; when a
//! device's box is full the oldest notice gives way and the caller logs and
//! counts it (`signaling_notices_dropped_total`), so even that is not silent.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use peers_sdk::DeviceId;

use crate::protocol::OutcomeNotice;

/// Bounds of the notice boxes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NoticeLimits {
    /// Most notices kept per device. Default: 1024.
    pub per_device: usize,
    /// Most notices kept overall. Default: 100,000.
    pub total: usize,
    /// How long a notice is kept for an offline sender. Default: 1 hour.
    pub ttl: Duration,
}

impl Default for NoticeLimits {
    fn default() -> Self {
        NoticeLimits { per_device: 1024, total: 100_000, ttl: Duration::from_secs(3600) }
    }
}

/// A notice waiting for its device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredNotice {
    /// Position: increases with every notice, survives restarts.
    pub seq: u64,
    /// The device it is for (the sender of the message it is about).
    pub device: DeviceId,
    /// The notice.
    pub notice: OutcomeNotice,
    /// When it is dropped unread (unix milliseconds).
    pub expires_at: u64,
}

/// Outcome notices waiting for offline senders.
#[derive(Debug)]
pub struct NoticeBoxes {
    limits: NoticeLimits,
    boxes: HashMap<DeviceId, VecDeque<StoredNotice>>,
    total: usize,
    next_seq: u64,
}

impl NoticeBoxes {
    /// Empty boxes.
    pub fn new(limits: NoticeLimits) -> Self {
        NoticeBoxes { limits, boxes: HashMap::new(), total: 0, next_seq: 1 }
    }

    /// Keeps `notice` for `device`. Returns it with its sequence number, and the
    /// notices that gave way (the device's oldest, or when the total is reached
    /// the oldest of the largest box).
    pub fn push(&mut self, now: u64, device: DeviceId, notice: OutcomeNotice) -> (StoredNotice, Vec<StoredNotice>) {
        let ttl = u64::try_from(self.limits.ttl.as_millis()).unwrap_or(u64::MAX);
        let stored = StoredNotice { seq: self.next_seq, device, notice, expires_at: now.saturating_add(ttl) };
        self.next_seq += 1;
        let mut dropped = Vec::new();
        let per_device = self.limits.per_device.max(1);
        while self.boxes.get(&device).is_some_and(|b| b.len() >= per_device) {
            dropped.extend(self.pop_oldest(&device));
        }
        while self.total >= self.limits.total.max(1) {
            let Some(largest) = self.boxes.iter().max_by_key(|(_, b)| b.len()).map(|(d, _)| *d) else { break };
            dropped.extend(self.pop_oldest(&largest));
        }
        self.insert(stored.clone());
        (stored, dropped)
    }

    fn pop_oldest(&mut self, device: &DeviceId) -> Option<StoredNotice> {
        let queue = self.boxes.get_mut(device)?;
        let oldest = queue.pop_front();
        if oldest.is_some() {
            self.total -= 1;
        }
        if queue.is_empty() {
            self.boxes.remove(device);
        }
        oldest
    }

    fn insert(&mut self, stored: StoredNotice) {
        self.total += 1;
        self.boxes.entry(stored.device).or_default().push_back(stored);
    }

    /// Puts back notices read from the store, in `seq` order.
    pub fn restore(&mut self, mut notices: Vec<StoredNotice>) {
        notices.sort_by_key(|n| n.seq);
        for notice in notices {
            self.next_seq = self.next_seq.max(notice.seq + 1);
            self.insert(notice);
        }
    }

    /// Removes and returns `device`'s notices that are still current at `now`,
    /// oldest first, and those that ran out (to delete from the store).
    pub fn take(&mut self, now: u64, device: &DeviceId) -> (Vec<StoredNotice>, Vec<StoredNotice>) {
        let Some(queue) = self.boxes.remove(device) else { return (Vec::new(), Vec::new()) };
        self.total -= queue.len();
        queue.into_iter().partition(|n| n.expires_at > now)
    }

    /// Removes every notice past its time at `now` (a periodic sweep).
    pub fn sweep(&mut self, now: u64) -> Vec<StoredNotice> {
        let mut gone = Vec::new();
        self.boxes.retain(|_, queue| {
            while queue.front().is_some_and(|n| n.expires_at <= now) {
                gone.extend(queue.pop_front());
            }
            !queue.is_empty()
        });
        self.total -= gone.len();
        gone
    }

    /// Notices kept overall.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether no notice is kept.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::OutcomeKind;

    fn device(n: u8) -> DeviceId {
        format!("{n:02x}").repeat(20).parse().unwrap()
    }

    fn notice(id: &str) -> OutcomeNotice {
        OutcomeNotice { id: id.into(), to: device(9).to_string(), outcome: OutcomeKind::Expired, at: 0 }
    }

    #[test]
    fn boxes_are_bounded_and_give_way_oldest_first() {
        let mut boxes = NoticeBoxes::new(NoticeLimits { per_device: 2, total: 3, ttl: Duration::from_secs(10) });
        assert!(boxes.push(0, device(1), notice("a")).1.is_empty());
        assert!(boxes.push(0, device(1), notice("b")).1.is_empty());
        let (_, dropped) = boxes.push(0, device(1), notice("c"));
        assert_eq!(dropped.iter().map(|n| n.notice.id.as_str()).collect::<Vec<_>>(), ["a"]);
        boxes.push(0, device(2), notice("d"));
        let (_, dropped) = boxes.push(0, device(3), notice("e"));
        assert_eq!(dropped.len(), 1, "total bound of 3 holds");
        assert_eq!(boxes.len(), 3);
    }

    #[test]
    fn take_returns_current_notices_in_order() {
        let mut boxes = NoticeBoxes::new(NoticeLimits { ttl: Duration::from_millis(100), ..NoticeLimits::default() });
        boxes.push(0, device(1), notice("old"));
        boxes.push(50, device(1), notice("new"));
        let (current, stale) = boxes.take(120, &device(1));
        assert_eq!(current.iter().map(|n| n.notice.id.as_str()).collect::<Vec<_>>(), ["new"]);
        assert_eq!(stale.len(), 1);
        assert!(boxes.is_empty());
        boxes.push(0, device(2), notice("x"));
        assert_eq!(boxes.sweep(100).len(), 1);
        assert!(boxes.is_empty());
    }
}
