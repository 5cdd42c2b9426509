//! The offline queue: messages waiting for a device that is not connected.
//!
//! A plain state machine with no I/O and no clock: every call that depends on
//! time takes `now` (unix milliseconds, so stored deadlines survive a restart).
//! The server keeps one [`OfflineQueue`] and mirrors each change into its
//! [`Store`](crate::store::Store).
//!
//! ```text
//!            push (under every bound)            take(device) on registration
//!  signal ───────────────────────────▶ queued ──────────────────────────────▶ delivered
//!     │                                  │
//!     │ a bound is full                  │ expire(now ≥ expires_at)
//!     ▼                                  ▼
//!  rejected (QueueFull, which bound)   expired → the sender gets an expiry notice
//! ```
//!
//! Bounds: messages and bytes per recipient, per sending device, per sending
//! address (an IPv6 /64) and overall. A message that would break any of them is
//! refused, never an older one dropped. Messages of one device leave in the
//! order they were pushed.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use peers_sdk::DeviceId;

use crate::privacy::shadow_of;
use crate::protocol::{ErrorCode, Rejection, SignalKind};

/// Bytes counted per message on top of its id and body (ids, kind, times).
pub const MESSAGE_OVERHEAD: usize = 96;

/// Bounds and times of the offline queue.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueLimits {
    /// Most messages waiting for one device. Default: 256.
    pub per_device_messages: usize,
    /// Most bytes waiting for one device. Default: 1 MiB.
    pub per_device_bytes: usize,
    /// Most messages one device may have waiting, for all its recipients.
    /// Default: 1,024.
    pub per_sender_messages: usize,
    /// Most bytes one device may have waiting. Default: 8 MiB.
    pub per_sender_bytes: usize,
    /// Most messages the devices of one address (an IPv6 /64) may have
    /// waiting. Default: 4,096.
    pub per_address_messages: usize,
    /// Most bytes the devices of one address may have waiting. Default: 32 MiB.
    pub per_address_bytes: usize,
    /// Most messages waiting overall. Default: 100,000.
    pub total_messages: usize,
    /// Most bytes waiting overall. Default: 256 MiB.
    pub total_bytes: usize,
    /// Time to live of a message whose sender names none. Default: 60 s.
    pub default_ttl: Duration,
    /// Longest time to live a sender may ask for; longer requests are cut to it.
    /// Default: 1 hour.
    pub max_ttl: Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            per_device_messages: 256,
            per_device_bytes: 1 << 20,
            per_sender_messages: 1024,
            per_sender_bytes: 8 << 20,
            per_address_messages: 4096,
            per_address_bytes: 32 << 20,
            total_messages: 100_000,
            total_bytes: 256 << 20,
            default_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
        }
    }
}

impl QueueLimits {
    /// The longest `max_ttl` accepted: one day.
    pub const MAX_TTL_LIMIT: Duration = Duration::from_secs(24 * 3600);

    /// Checks that the limits can work.
    pub fn validate(&self) -> crate::Result<()> {
        let invalid = |field, detail: String| Err(crate::Error::InvalidConfig { field, detail });
        for (field, value) in [
            ("queue.per_device_messages", self.per_device_messages),
            ("queue.per_device_bytes", self.per_device_bytes),
            ("queue.per_sender_messages", self.per_sender_messages),
            ("queue.per_sender_bytes", self.per_sender_bytes),
            ("queue.per_address_messages", self.per_address_messages),
            ("queue.per_address_bytes", self.per_address_bytes),
            ("queue.total_messages", self.total_messages),
            ("queue.total_bytes", self.total_bytes),
        ] {
            if value == 0 {
                return invalid(field, "must be at least 1".into());
            }
        }
        if self.max_ttl > Self::MAX_TTL_LIMIT {
            return invalid(
                "queue.max_ttl",
                format!("{:?} is over the cap of {:?}", self.max_ttl, Self::MAX_TTL_LIMIT),
            );
        }
        if self.default_ttl > self.max_ttl {
            return invalid("queue.default_ttl", format!("{:?} is over max_ttl {:?}", self.default_ttl, self.max_ttl));
        }
        Ok(())
    }

    /// The time to live a message gets when its sender asked for `requested`
    /// milliseconds (or nothing), in milliseconds.
    pub fn ttl_ms(&self, requested: Option<u64>) -> u64 {
        let max = millis(self.max_ttl);
        requested.unwrap_or_else(|| millis(self.default_ttl)).min(max)
    }
}

/// A queue bound a new message would break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QueueBound {
    DeviceMessages,
    DeviceBytes,
    SenderMessages,
    SenderBytes,
    AddressMessages,
    AddressBytes,
    TotalMessages,
    TotalBytes,
}

/// What is queued now, for one recipient, its sender, the sender's address
/// and overall.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct QueueUsage {
    pub(crate) device_messages: usize,
    pub(crate) device_bytes: usize,
    pub(crate) sender_messages: usize,
    pub(crate) sender_bytes: usize,
    pub(crate) address_messages: usize,
    pub(crate) address_bytes: usize,
    pub(crate) total_messages: usize,
    pub(crate) total_bytes: usize,
}

impl QueueLimits {
    /// The first bound a message of `size` bytes would break, if any. The
    /// in-process queue and the Redis backend's script check the same bounds
    /// in the same order.
    pub(crate) fn full_bound(&self, usage: &QueueUsage, size: usize) -> Option<QueueBound> {
        if usage.device_messages >= self.per_device_messages {
            Some(QueueBound::DeviceMessages)
        } else if usage.device_bytes + size > self.per_device_bytes {
            Some(QueueBound::DeviceBytes)
        } else if usage.sender_messages >= self.per_sender_messages {
            Some(QueueBound::SenderMessages)
        } else if usage.sender_bytes + size > self.per_sender_bytes {
            Some(QueueBound::SenderBytes)
        } else if usage.address_messages >= self.per_address_messages {
            Some(QueueBound::AddressMessages)
        } else if usage.address_bytes + size > self.per_address_bytes {
            Some(QueueBound::AddressBytes)
        } else if usage.total_messages >= self.total_messages {
            Some(QueueBound::TotalMessages)
        } else if usage.total_bytes + size > self.total_bytes {
            Some(QueueBound::TotalBytes)
        } else {
            None
        }
    }

    /// The refusal naming `bound`: `queue_full` for a recipient's or the
    /// server's bound, `quota_exceeded` for the sender's or its address's.
    pub(crate) fn refusal(&self, bound: QueueBound, usage: &QueueUsage, size: usize) -> Rejection {
        let quota = |what: String| Rejection::new(ErrorCode::QuotaExceeded, what);
        let what = match bound {
            QueueBound::SenderMessages => {
                return quota(format!("this device has its limit of {} messages queued", self.per_sender_messages));
            }
            QueueBound::SenderBytes => {
                return quota(format!(
                    "this device's queued messages would exceed its limit of {} bytes ({} queued, message {size})",
                    self.per_sender_bytes, usage.sender_bytes
                ));
            }
            QueueBound::AddressMessages => {
                return quota(format!("this address has its limit of {} messages queued", self.per_address_messages));
            }
            QueueBound::AddressBytes => {
                return quota(format!(
                    "this address's queued messages would exceed its limit of {} bytes ({} queued, message {size})",
                    self.per_address_bytes, usage.address_bytes
                ));
            }
            QueueBound::DeviceMessages => {
                format!("the recipient's queue holds its limit of {} messages", self.per_device_messages)
            }
            QueueBound::DeviceBytes => format!(
                "the recipient's queue would exceed its limit of {} bytes ({} queued, message {size})",
                self.per_device_bytes, usage.device_bytes
            ),
            QueueBound::TotalMessages => {
                format!("the server's queue holds its limit of {} messages", self.total_messages)
            }
            QueueBound::TotalBytes => {
                format!("the server's queue would exceed its limit of {} bytes", self.total_bytes)
            }
        };
        Rejection::new(ErrorCode::QueueFull, what)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A message waiting for its recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Position in the queue: increases with every push, survives restarts.
    pub seq: u64,
    /// The recipient.
    pub to: DeviceId,
    /// The sender, as the server authenticated it.
    pub from: DeviceId,
    /// The sender's address group (an IPv4 address or an IPv6 /64), when
    /// known: the per-address quota counts the message against it.
    pub origin: Option<IpAddr>,
    /// The sender's message id.
    pub id: String,
    /// The kind.
    pub kind: SignalKind,
    /// The body as compact JSON.
    pub body: String,
    /// When the server accepted it (unix milliseconds).
    pub sent_at: u64,
    /// When it expires (unix milliseconds).
    pub expires_at: u64,
    /// Whether its sender may not reach `to` (`to` has an allow list that
    /// does not name it): it then waits in the queue of `to`'s shadow
    /// ([`shadow_of`]), is never delivered and expires, but its sender's
    /// notices still name `to`.
    pub shadowed: bool,
}

impl QueuedMessage {
    /// The bytes it counts against the bounds.
    pub fn size(&self) -> usize {
        self.body.len() + self.id.len() + MESSAGE_OVERHEAD
    }

    /// The queue it waits in: `to`'s, or, shadowed, its shadow's.
    pub fn queue_key(&self) -> DeviceId {
        if self.shadowed { shadow_of(&self.to) } else { self.to }
    }
}

/// A message to push: everything but the sequence number and the deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// The recipient.
    pub to: DeviceId,
    /// The authenticated sender.
    pub from: DeviceId,
    /// The sender's address group (see [`QueuedMessage::origin`]).
    pub origin: Option<IpAddr>,
    /// The sender's message id.
    pub id: String,
    /// The kind.
    pub kind: SignalKind,
    /// The body as compact JSON.
    pub body: String,
    /// See [`QueuedMessage::shadowed`].
    pub shadowed: bool,
}

#[derive(Debug, Default)]
struct DeviceQueue {
    messages: VecDeque<QueuedMessage>,
    bytes: usize,
}

/// Messages and bytes one sender (a device or an address) has waiting.
#[derive(Clone, Copy, Debug, Default)]
struct Held {
    messages: usize,
    bytes: usize,
}

/// Adds (`add`) or removes one message of `size` bytes from `key`'s count,
/// forgetting keys that reach zero so the tables stay as small as the queue.
fn count<K: std::hash::Hash + Eq>(table: &mut HashMap<K, Held>, key: K, size: usize, add: bool) {
    match table.entry(key) {
        Entry::Vacant(vacant) => {
            if add {
                vacant.insert(Held { messages: 1, bytes: size });
            }
        }
        Entry::Occupied(mut occupied) => {
            let held = occupied.get_mut();
            if add {
                held.messages += 1;
                held.bytes += size;
            } else {
                held.messages = held.messages.saturating_sub(1);
                held.bytes = held.bytes.saturating_sub(size);
            }
            if held.messages == 0 {
                occupied.remove();
            }
        }
    }
}

/// Messages waiting for offline devices, bounded per device and overall.
#[derive(Debug)]
pub struct OfflineQueue {
    limits: QueueLimits,
    devices: HashMap<DeviceId, DeviceQueue>,
    senders: HashMap<DeviceId, Held>,
    addresses: HashMap<IpAddr, Held>,
    /// `(expires_at, seq, recipient)` of every message, earliest first.
    deadlines: BTreeSet<(u64, u64, DeviceId)>,
    messages: usize,
    bytes: usize,
    next_seq: u64,
}

impl OfflineQueue {
    /// An empty queue.
    pub fn new(limits: QueueLimits) -> Self {
        OfflineQueue {
            limits,
            devices: HashMap::new(),
            senders: HashMap::new(),
            addresses: HashMap::new(),
            deadlines: BTreeSet::new(),
            messages: 0,
            bytes: 0,
            next_seq: 1,
        }
    }

    /// The limits.
    pub fn limits(&self) -> &QueueLimits {
        &self.limits
    }

    /// Queues `message` for `ttl_ms` from `now`, or refuses it with the bound it
    /// would break ([`ErrorCode::QueueFull`]). Nothing already queued is dropped.
    pub fn push(&mut self, now: u64, message: NewMessage, ttl_ms: u64) -> Result<QueuedMessage, Rejection> {
        let queued = QueuedMessage {
            seq: self.next_seq,
            to: message.to,
            from: message.from,
            origin: message.origin,
            id: message.id,
            kind: message.kind,
            body: message.body,
            sent_at: now,
            expires_at: now.saturating_add(ttl_ms),
            shadowed: message.shadowed,
        };
        self.check_room(&queued)?;
        self.next_seq += 1;
        self.insert(queued.clone());
        Ok(queued)
    }

    fn check_room(&self, message: &QueuedMessage) -> Result<(), Rejection> {
        let size = message.size();
        let limits = &self.limits;
        let device = self.devices.get(&message.queue_key());
        let (device_messages, device_bytes) = device.map_or((0, 0), |d| (d.messages.len(), d.bytes));
        let sender = self.senders.get(&message.from).copied().unwrap_or_default();
        let address = message.origin.and_then(|ip| self.addresses.get(&ip)).copied().unwrap_or_default();
        let usage = QueueUsage {
            device_messages,
            device_bytes,
            sender_messages: sender.messages,
            sender_bytes: sender.bytes,
            address_messages: address.messages,
            address_bytes: address.bytes,
            total_messages: self.messages,
            total_bytes: self.bytes,
        };
        match limits.full_bound(&usage, size) {
            Some(bound) => Err(limits.refusal(bound, &usage, size)),
            None => Ok(()),
        }
    }

    fn insert(&mut self, message: QueuedMessage) {
        self.messages += 1;
        self.bytes += message.size();
        self.held(&message, true);
        self.deadlines.insert((message.expires_at, message.seq, message.queue_key()));
        let device = self.devices.entry(message.queue_key()).or_default();
        device.bytes += message.size();
        device.messages.push_back(message);
    }

    /// Counts `message` against (or, `add` false, frees it from) its sender's
    /// and its address's quotas.
    fn held(&mut self, message: &QueuedMessage, add: bool) {
        self.count_sender(message.from, message.origin, message.size(), add);
    }

    fn count_sender(&mut self, from: DeviceId, origin: Option<IpAddr>, size: usize, add: bool) {
        count(&mut self.senders, from, size, add);
        if let Some(ip) = origin {
            count(&mut self.addresses, ip, size, add);
        }
    }

    /// Moves messages taken from a device's queue into its shadow's queue
    /// (their senders may not reach it): they keep their sequence numbers and
    /// deadlines, and end as expired. Not checked against the bounds: they
    /// were counted already.
    pub fn shadow(&mut self, messages: Vec<QueuedMessage>) -> Vec<QueuedMessage> {
        let shadowed: Vec<QueuedMessage> =
            messages.into_iter().map(|m| QueuedMessage { shadowed: true, ..m }).collect();
        for message in &shadowed {
            self.insert(message.clone());
        }
        shadowed
    }

    /// Puts back messages read from the store after a restart, in `seq` order.
    /// They were under the bounds when they were pushed, so none is refused;
    /// later pushes are checked against the total.
    pub fn restore(&mut self, mut messages: Vec<QueuedMessage>) {
        messages.sort_by_key(|m| m.seq);
        for message in messages {
            self.next_seq = self.next_seq.max(message.seq + 1);
            self.insert(message);
        }
    }

    /// Removes and returns every message waiting for `device`, oldest first.
    /// Call [`expire`](Self::expire) first so none of them is past its deadline.
    pub fn take(&mut self, device: &DeviceId) -> Vec<QueuedMessage> {
        let Some(queue) = self.devices.remove(device) else { return Vec::new() };
        self.messages -= queue.messages.len();
        self.bytes -= queue.bytes;
        for message in &queue.messages {
            self.deadlines.remove(&(message.expires_at, message.seq, message.queue_key()));
            self.held(message, false);
        }
        queue.messages.into()
    }

    /// Removes one message (a push whose store write failed) from the queue
    /// `to` ([`QueuedMessage::queue_key`]).
    pub fn take_one(&mut self, to: &DeviceId, seq: u64) -> Option<QueuedMessage> {
        let queue = self.devices.get_mut(to)?;
        let index = queue.messages.iter().position(|m| m.seq == seq)?;
        let message = queue.messages.remove(index)?;
        queue.bytes -= message.size();
        self.messages -= 1;
        self.bytes -= message.size();
        self.deadlines.remove(&(message.expires_at, message.seq, message.queue_key()));
        if queue.messages.is_empty() {
            self.devices.remove(to);
        }
        self.held(&message, false);
        Some(message)
    }

    /// Removes and returns every message whose deadline is at or before `now`,
    /// earliest deadline first.
    pub fn expire(&mut self, now: u64) -> Vec<QueuedMessage> {
        let mut expired = Vec::new();
        while let Some(&(deadline, seq, to)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(queue) = self.devices.get_mut(&to) else { continue };
            let mut freed = None;
            if let Some(index) = queue.messages.iter().position(|m| m.seq == seq)
                && let Some(message) = queue.messages.remove(index)
            {
                queue.bytes -= message.size();
                self.messages -= 1;
                self.bytes -= message.size();
                freed = Some((message.from, message.origin, message.size()));
                expired.push(message);
            }
            if queue.messages.is_empty() {
                self.devices.remove(&to);
            }
            if let Some((from, origin, size)) = freed {
                self.count_sender(from, origin, size, false);
            }
        }
        expired
    }

    /// The earliest deadline of any queued message.
    pub fn next_expiry(&self) -> Option<u64> {
        self.deadlines.first().map(|&(deadline, _, _)| deadline)
    }

    /// Messages and bytes queued overall.
    pub fn depth(&self) -> (usize, usize) {
        (self.messages, self.bytes)
    }

    /// Messages and bytes queued for `device`.
    pub fn device_depth(&self, device: &DeviceId) -> (usize, usize) {
        self.devices.get(device).map_or((0, 0), |d| (d.messages.len(), d.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn device(n: u8) -> DeviceId {
        format!("{n:02x}").repeat(20).parse().unwrap()
    }

    fn message(to: u8, id: &str, body_len: usize) -> NewMessage {
        NewMessage {
            to: device(to),
            from: device(200),
            origin: None,
            id: id.into(),
            kind: SignalKind::Offer,
            body: "x".repeat(body_len),
            shadowed: false,
        }
    }

    fn small_limits() -> QueueLimits {
        QueueLimits {
            per_device_messages: 3,
            per_device_bytes: 10_000,
            total_messages: 5,
            total_bytes: 100_000,
            ..QueueLimits::default()
        }
    }

    #[test]
    fn delivers_in_push_order_and_empties() {
        let mut queue = OfflineQueue::new(small_limits());
        for id in ["a", "b", "c"] {
            queue.push(1000, message(1, id, 10), 60_000).unwrap();
        }
        let taken: Vec<String> = queue.take(&device(1)).into_iter().map(|m| m.id).collect();
        assert_eq!(taken, ["a", "b", "c"]);
        assert_eq!(queue.depth(), (0, 0));
        assert!(queue.take(&device(1)).is_empty());
        assert_eq!(queue.next_expiry(), None);
    }

    #[test]
    fn each_bound_refuses_with_its_reason() {
        let mut queue = OfflineQueue::new(small_limits());
        for id in ["a", "b", "c"] {
            queue.push(0, message(1, id, 10), 1000).unwrap();
        }
        let err = queue.push(0, message(1, "d", 10), 1000).unwrap_err();
        assert_eq!(err.code, ErrorCode::QueueFull);
        assert!(err.message.contains("recipient's queue holds its limit of 3"), "{err}");
        queue.push(0, message(2, "e", 10), 1000).unwrap();
        queue.push(0, message(2, "f", 10), 1000).unwrap();
        let err = queue.push(0, message(3, "g", 10), 1000).unwrap_err();
        assert!(err.message.contains("server's queue holds its limit of 5"), "{err}");
        let err = queue.push(0, message(2, "big", 20_000), 1000).unwrap_err();
        assert!(err.message.contains("10000 bytes"), "{err}");
        // The refused messages left nothing behind.
        assert_eq!(queue.depth().0, 5);
        assert_eq!(queue.device_depth(&device(1)).0, 3);
    }

    #[test]
    fn sender_and_address_quotas_refuse_and_free() {
        let limits = QueueLimits {
            per_sender_messages: 2,
            per_sender_bytes: 1000,
            per_address_messages: 3,
            per_address_bytes: 100_000,
            ..QueueLimits::default()
        };
        let mut queue = OfflineQueue::new(limits);
        let here: IpAddr = "2001:db8::".parse().unwrap();
        let from = |sender: u8, to: u8, id: &str, len: usize| NewMessage {
            from: device(sender),
            origin: Some(here),
            ..message(to, id, len)
        };
        queue.push(0, from(10, 1, "a", 10), 1000).unwrap();
        let err = queue.push(0, from(10, 2, "big", 900), 1000).unwrap_err();
        assert_eq!(err.code, ErrorCode::QuotaExceeded);
        assert!(err.message.contains("this device's queued messages would exceed its limit of 1000"), "{err}");
        queue.push(0, from(10, 2, "b", 10), 500).unwrap();
        let err = queue.push(0, from(10, 3, "c", 10), 1000).unwrap_err();
        assert!(err.message.contains("this device has its limit of 2"), "{err}");
        queue.push(0, from(11, 3, "d", 10), 1000).unwrap();
        let err = queue.push(0, from(12, 4, "e", 10), 1000).unwrap_err();
        assert!(err.message.contains("this address has its limit of 3"), "{err}");
        // Another address, and a sender of unknown address, are not affected.
        let there = NewMessage { origin: Some("127.0.0.2".parse().unwrap()), ..from(12, 4, "f", 10) };
        queue.push(0, there, 1000).unwrap();
        queue.push(0, NewMessage { origin: None, ..from(13, 4, "g", 10) }, 1000).unwrap();
        // Expiry and delivery give the quotas back.
        assert_eq!(queue.expire(500).len(), 1);
        queue.push(0, from(10, 5, "h", 10), 1000).unwrap();
        assert_eq!(queue.take(&device(1)).len(), 1);
        queue.push(0, from(12, 6, "i", 10), 1000).unwrap();
        let err = queue.push(0, from(14, 6, "j", 10), 1000).unwrap_err();
        assert!(err.message.contains("this address has its limit of 3"), "the address is full again: {err}");
        for to in 0..=6 {
            queue.take(&device(to));
        }
        assert!(queue.senders.is_empty() && queue.addresses.is_empty(), "an empty queue holds no quota entries");
    }

    #[test]
    fn expiry_removes_only_due_messages_in_deadline_order() {
        let mut queue = OfflineQueue::new(QueueLimits::default());
        queue.push(0, message(1, "late", 1), 5000).unwrap();
        queue.push(0, message(1, "early", 1), 1000).unwrap();
        queue.push(0, message(2, "middle", 1), 3000).unwrap();
        assert_eq!(queue.next_expiry(), Some(1000));
        assert!(queue.expire(999).is_empty());
        let ids = |v: Vec<QueuedMessage>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(queue.expire(3000)), ["early", "middle"]);
        assert_eq!(queue.next_expiry(), Some(5000));
        assert_eq!(ids(queue.take(&device(1))), ["late"]);
    }

    #[test]
    fn ttl_is_capped_and_defaulted() {
        let limits = QueueLimits::default();
        assert_eq!(limits.ttl_ms(None), 60_000);
        assert_eq!(limits.ttl_ms(Some(5)), 5);
        assert_eq!(limits.ttl_ms(Some(u64::MAX)), 3_600_000);
        assert!(QueueLimits { max_ttl: Duration::from_secs(2 * 86_400), ..limits.clone() }.validate().is_err());
        assert!(QueueLimits { default_ttl: Duration::from_secs(7200), ..limits }.validate().is_err());
    }

    #[test]
    fn restore_keeps_order_and_continues_sequence() {
        let mut first = OfflineQueue::new(QueueLimits::default());
        let a = first.push(0, message(1, "a", 1), 100).unwrap();
        let b = first.push(0, message(1, "b", 1), 100).unwrap();
        let mut second = OfflineQueue::new(QueueLimits::default());
        second.restore(vec![b.clone(), a.clone()]);
        let c = second.push(0, message(1, "c", 1), 100).unwrap();
        assert!(c.seq > b.seq);
        assert_eq!(second.take(&device(1)), vec![a, b, c]);
    }

    #[test]
    fn shadowed_messages_wait_apart_and_only_expire() {
        let mut queue = OfflineQueue::new(QueueLimits { per_device_messages: 1, ..QueueLimits::default() });
        let stranger = queue.push(0, NewMessage { shadowed: true, ..message(1, "s", 1) }, 100).unwrap();
        assert_eq!(stranger.to, device(1), "it still names the device it was sent to");
        // It counts against the shadow's bound, not the device's.
        let friend = queue.push(0, message(1, "f", 1), 100).unwrap();
        assert!(queue.push(0, NewMessage { shadowed: true, ..message(1, "s2", 1) }, 100).is_err());
        assert_eq!(queue.take(&device(1)), vec![friend.clone()]);
        // A message taken from the device's queue can be moved to the shadow.
        let moved = queue.shadow(vec![friend]);
        assert!(moved[0].shadowed);
        assert!(queue.take(&device(1)).is_empty());
        let expired = queue.expire(100);
        assert_eq!(expired.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["s", "f"]);
        assert_eq!(queue.depth(), (0, 0));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push { to: u8, len: usize, ttl: u64 },
        Take { to: u8 },
        Advance { ms: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..4, 0usize..3000, 0u64..5000).prop_map(|(to, len, ttl)| Op::Push { to, len, ttl }),
            1 => (0u8..4).prop_map(|to| Op::Take { to }),
            2 => (0u64..3000).prop_map(|ms| Op::Advance { ms }),
        ]
    }

    proptest! {
        /// Every pushed message is taken, expired or still queued, exactly once;
        /// bounds hold after every step; takes come out in push order; nothing
        /// expires early or survives past its deadline.
        #[test]
        fn bookkeeping_holds_under_random_operations(ops in proptest::collection::vec(op(), 1..200)) {
            let limits = QueueLimits {
                per_device_messages: 8,
                per_device_bytes: 12_000,
                total_messages: 20,
                total_bytes: 30_000,
                ..QueueLimits::default()
            };
            let mut queue = OfflineQueue::new(limits.clone());
            let mut now = 0u64;
            let mut accepted = std::collections::BTreeMap::new();
            let mut out = std::collections::BTreeSet::new();
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Push { to, len, ttl } => {
                        if let Ok(m) = queue.push(now, message(to, &format!("m{n}"), len), ttl) {
                            accepted.insert(m.seq, m);
                        }
                    }
                    Op::Take { to } => {
                        for m in queue.expire(now) {
                            prop_assert!(m.expires_at <= now);
                            prop_assert!(out.insert(m.seq));
                        }
                        let taken = queue.take(&device(to));
                        prop_assert!(taken.windows(2).all(|w| w[0].seq < w[1].seq));
                        for m in taken {
                            prop_assert!(m.expires_at > now, "taken after its deadline");
                            prop_assert!(out.insert(m.seq));
                        }
                    }
                    Op::Advance { ms } => {
                        now += ms;
                        for m in queue.expire(now) {
                            prop_assert!(m.expires_at <= now);
                            prop_assert!(out.insert(m.seq), "message left twice");
                        }
                    }
                }
                let (messages, bytes) = queue.depth();
                prop_assert!(messages <= limits.total_messages && bytes <= limits.total_bytes);
                for to in 0..4 {
                    let (m, b) = queue.device_depth(&device(to));
                    prop_assert!(m <= limits.per_device_messages && b <= limits.per_device_bytes);
                }
                prop_assert_eq!(messages + out.len(), accepted.len());
            }
            for to in 0..4 {
                for m in queue.take(&device(to)) {
                    prop_assert!(out.insert(m.seq));
                }
            }
            prop_assert_eq!(out.len(), accepted.len());
            prop_assert_eq!(queue.depth(), (0, 0));
        }
    }
}
