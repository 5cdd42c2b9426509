//! The frame relay: the server's bookkeeping of relays between two devices,
//! with no I/O and no clock (calls take `now` in unix milliseconds).
//!
//! ```text
//!  A: open(B) ──▶ Waiting(A→B) ──B: open(A) within `pending_wait`──▶ Open(id, A, B)
//!                     │                                              │ frames both ways, bytes counted
//!                     └── times out: forgotten (A's open times out)   │
//!                                      close by a party / a party goes offline /
//!                                      byte cap / time cap ──────────▶ Closed (both told)
//! ```
//!
//! Both devices must ask for each other: a device cannot push a relay on
//! another. The server forwards opaque frames (the peers `Connection` seals
//! them end to end) and counts their bytes against the pair's cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use peers_sdk::flow::{Credit, SendCredit};
use peers_sdk::{CloseCode, DeviceId};

use crate::protocol::{ErrorCode, Rejection};

/// Bounds of the frame relay.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayLimits {
    /// Most relays open at once. Default: 256.
    pub max_relays: usize,
    /// Most bytes one relay carries, both directions together. Default: 256 MiB.
    pub max_bytes: u64,
    /// Longest life of one relay. Default: 10 minutes.
    pub max_duration: Duration,
    /// Largest frame. Default: 64 KiB (so a frame in base64 fits a socket.io
    /// message with room to spare).
    pub max_frame: usize,
    /// How long a request waits for the other device to ask too. Default: 30 s.
    pub pending_wait: Duration,
    /// Most requests one device may have waiting. Default: 16.
    pub max_pending_per_device: usize,
    /// Most relays open at once that one device is a party of. Default: 8.
    pub per_device: usize,
    /// Most relays open at once that the devices of one address (IPv4
    /// address, IPv6 /64) are parties of (a relay between two devices of one
    /// address counts once). Default: 32.
    pub per_address: usize,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            max_relays: 256,
            max_bytes: 256 << 20,
            max_duration: Duration::from_secs(600),
            max_frame: 64 * 1024,
            pending_wait: Duration::from_secs(30),
            max_pending_per_device: 16,
            per_device: 8,
            per_address: 32,
        }
    }
}

impl RelayLimits {
    /// The largest `max_frame` ([`RELAY_MAX_FRAME_LIMIT`](crate::protocol::RELAY_MAX_FRAME_LIMIT)).
    pub const MAX_FRAME_LIMIT: usize = crate::protocol::RELAY_MAX_FRAME_LIMIT;

    /// Checks the limits; the error names the field.
    pub fn validate(&self) -> crate::Result<()> {
        let invalid = |field, detail: &str| Err(crate::Error::InvalidConfig { field, detail: detail.into() });
        if self.max_relays == 0 || self.max_bytes == 0 || self.max_pending_per_device == 0 {
            return invalid("relay.max_relays / max_bytes / max_pending_per_device", "must be at least 1");
        }
        if self.per_device == 0 || self.per_address == 0 {
            return invalid("relay.per_device / per_address", "must be at least 1");
        }
        if self.max_duration.is_zero() || self.pending_wait.is_zero() {
            return invalid("relay.max_duration / pending_wait", "must be positive");
        }
        if !(1024..=Self::MAX_FRAME_LIMIT).contains(&self.max_frame) {
            return invalid("relay.max_frame", "must be 1 KiB ..= 90 KiB");
        }
        Ok(())
    }
}

/// An open relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRelay {
    /// Its id.
    pub id: u64,
    /// The device that asked first.
    pub a: DeviceId,
    /// The device that asked second.
    pub b: DeviceId,
    /// Bytes carried so far.
    pub bytes: u64,
    /// When it must close (unix milliseconds).
    pub deadline: u64,
    /// `a`'s and `b`'s ends: what each sent and the credit the other granted.
    pub legs: [RelayLeg; 2],
    /// `a`'s and `b`'s address groups, when known (the per-address quota).
    pub origins: [Option<IpAddr>; 2],
}

impl OpenRelay {
    /// The other party, if `device` is one.
    pub fn other(&self, device: &DeviceId) -> Option<DeviceId> {
        if *device == self.a {
            Some(self.b)
        } else if *device == self.b {
            Some(self.a)
        } else {
            None
        }
    }
}

/// What a request to open a relay led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opening {
    /// Waiting for the other device to ask.
    Waiting,
    /// Both asked: the relay is open.
    Open(OpenRelay),
}

/// A relay that ended, and why: both parties are told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    /// The relay.
    pub relay: OpenRelay,
    /// The close code the parties see.
    pub code: CloseCode,
    /// Why.
    pub message: String,
}

/// Every relay and waiting request.
#[derive(Debug)]
pub struct RelayTable {
    limits: RelayLimits,
    /// (asker, wanted peer) → when the request lapses, and the asker's address.
    pending: HashMap<(DeviceId, DeviceId), (u64, Option<IpAddr>)>,
    relays: HashMap<u64, OpenRelay>,
    next_id: u64,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl RelayTable {
    /// An empty table.
    pub fn new(limits: RelayLimits) -> Self {
        RelayTable { limits, pending: HashMap::new(), relays: HashMap::new(), next_id: 1 }
    }

    /// The limits.
    pub fn limits(&self) -> &RelayLimits {
        &self.limits
    }

    /// `from`, whose address group is `origin`, asks for a relay with `to`.
    pub fn open(
        &mut self,
        now: u64,
        from: DeviceId,
        origin: Option<IpAddr>,
        to: DeviceId,
    ) -> Result<Opening, Rejection> {
        if from == to {
            return Err(Rejection::new(ErrorCode::SelfAddressed, "a device cannot relay to itself"));
        }
        self.check_quotas(&from, origin, "this device", "this address")?;
        if let Some((_, their_origin)) = self.pending.remove(&(to, from)).filter(|(lapses, _)| *lapses > now) {
            self.check_quotas(&to, their_origin, "the other device", "the other device's address")?;
            if self.relays.len() >= self.limits.max_relays {
                return Err(Rejection::new(
                    ErrorCode::TooManyRelays,
                    format!("the server carries its limit of {} relays", self.limits.max_relays),
                ));
            }
            let relay = OpenRelay {
                id: self.next_id,
                a: to,
                b: from,
                bytes: 0,
                deadline: now + millis(self.limits.max_duration),
                legs: Default::default(),
                origins: [their_origin, origin],
            };
            self.next_id += 1;
            self.relays.insert(relay.id, relay.clone());
            return Ok(Opening::Open(relay));
        }
        let mine = self.pending.keys().filter(|(asker, _)| *asker == from).count();
        if mine >= self.limits.max_pending_per_device && !self.pending.contains_key(&(from, to)) {
            return Err(Rejection::new(
                ErrorCode::TooManyRelays,
                format!("a device may wait for {} relays at once", self.limits.max_pending_per_device),
            ));
        }
        self.pending.insert((from, to), (now + millis(self.limits.pending_wait), origin));
        Ok(Opening::Waiting)
    }

    /// Refuses (`quota_exceeded`) if `device` or the devices of `origin`
    /// already are parties of their limit of open relays.
    fn check_quotas(&self, device: &DeviceId, origin: Option<IpAddr>, who: &str, whose: &str) -> Result<(), Rejection> {
        let (mut theirs, mut address) = (0, 0);
        for relay in self.relays.values() {
            theirs += usize::from(relay.other(device).is_some());
            address += usize::from(origin.is_some() && relay.origins.contains(&origin));
        }
        if theirs >= self.limits.per_device {
            return Err(Rejection::new(
                ErrorCode::QuotaExceeded,
                format!("{who} is a party of its limit of {} relays", self.limits.per_device),
            ));
        }
        if address >= self.limits.per_address {
            return Err(Rejection::new(
                ErrorCode::QuotaExceeded,
                format!("the devices of {whose} are parties of their limit of {} relays", self.limits.per_address),
            ));
        }
        Ok(())
    }

    /// Counts a frame of `len` bytes from `from` on relay `id`; returns the
    /// device to forward it to. A frame over the size limit, beyond the
    /// credit the other device granted, or over the pair's byte cap ends the
    /// relay (the same checks as [`RelayLeg::admit`] in Redis mode).
    pub fn frame(&mut self, id: u64, from: &DeviceId, len: usize) -> Result<DeviceId, FrameRefusal> {
        let relay = self.relays.get_mut(&id).ok_or(FrameRefusal::Unknown)?;
        let to = relay.other(from).ok_or(FrameRefusal::Unknown)?;
        let (own, other) = if *from == relay.a { (0, 1) } else { (1, 0) };
        let admitted = relay.legs[own].admit(len as u64, &self.limits).and_then(|total| {
            // Both ends are here: the cap check at delivery cannot fail once
            // the frame was admitted, but it keeps the other end's view of
            // this side's total.
            relay.legs[other].deliverable(total, &self.limits)
        });
        match admitted {
            Ok(()) => {
                relay.bytes = relay.legs[0].credit.sent().bytes + relay.legs[1].credit.sent().bytes;
                Ok(to)
            }
            Err((code, message)) => Err(FrameRefusal::Ended(self.end(id, code, &message).map(Box::new))),
        }
    }

    /// `device` granted cumulative credit on relay `id` (for what the other
    /// party sends it); returns the other party, or `None` if `device` is not
    /// a party.
    pub fn credit(&mut self, id: u64, device: &DeviceId, frames: u64, bytes: u64) -> Option<DeviceId> {
        let relay = self.relays.get_mut(&id)?;
        let other = relay.other(device)?;
        let sender = if other == relay.a { 0 } else { 1 };
        relay.legs[sender].grant(frames, bytes);
        Some(other)
    }

    /// The other party of relay `id`, if `device` is a party.
    pub fn peer_of(&self, id: u64, device: &DeviceId) -> Option<DeviceId> {
        self.relays.get(&id).and_then(|relay| relay.other(device))
    }

    /// Ends relay `id` (a party closed it, or a forward failed).
    pub fn end(&mut self, id: u64, code: CloseCode, message: &str) -> Option<Ended> {
        self.relays.remove(&id).map(|relay| Ended { relay, code, message: message.to_owned() })
    }

    /// `device` went offline: its requests lapse and its relays end.
    pub fn device_gone(&mut self, device: &DeviceId) -> Vec<Ended> {
        self.pending.retain(|(asker, wanted), _| asker != device && wanted != device);
        let ids: Vec<u64> = self.relays.values().filter(|r| r.other(device).is_some()).map(|r| r.id).collect();
        ids.into_iter()
            .filter_map(|id| self.end(id, CloseCode::TransportFailure, "the other device went offline"))
            .collect()
    }

    /// Ends relays past their time cap and forgets lapsed requests.
    pub fn expire(&mut self, now: u64) -> Vec<Ended> {
        self.pending.retain(|_, (lapses, _)| *lapses > now);
        let ids: Vec<u64> = self.relays.values().filter(|r| r.deadline <= now).map(|r| r.id).collect();
        ids.into_iter()
            .filter_map(|id| self.end(id, CloseCode::LimitExceeded, "the relay reached its time limit"))
            .collect()
    }

    /// The earliest time [`expire`](Self::expire) has work.
    pub fn next_deadline(&self) -> Option<u64> {
        self.relays.values().map(|r| r.deadline).chain(self.pending.values().map(|(lapses, _)| *lapses)).min()
    }

    /// Relays open now.
    pub fn len(&self) -> usize {
        self.relays.len()
    }

    /// Whether no relay is open.
    pub fn is_empty(&self) -> bool {
        self.relays.is_empty()
    }
}

/// One party's end of a relay whose other party may be on another instance
/// (Redis mode): what the party sent, the credit the other party granted it,
/// and the other party's running total as last reported. Both instances
/// keep one; together they hold the byte cap for both directions (see
/// [`admit`](Self::admit) and [`deliverable`](Self::deliverable)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayLeg {
    /// What this party sent and the cumulative credit the other party granted
    /// it: the same bookkeeping as the sender's own ([`peers_sdk::flow`]), so
    /// the server refuses exactly what the receiver would.
    pub credit: SendCredit,
    /// Bytes the other party sent, as last reported.
    pub other_total: u64,
}

impl Default for RelayLeg {
    fn default() -> Self {
        let window = Credit::new(crate::protocol::RELAY_WINDOW_FRAMES, crate::protocol::RELAY_WINDOW_BYTES);
        RelayLeg { credit: SendCredit::new(window), other_total: 0 }
    }
}

impl RelayLeg {
    /// A frame of `len` bytes from this party: within the frame size, the
    /// other party's credit and `own + len + other's total <= max_bytes`.
    /// Returns this party's new running total, to send along with the frame.
    pub fn admit(&mut self, len: u64, limits: &RelayLimits) -> Result<u64, (CloseCode, String)> {
        if len > limits.max_frame as u64 {
            return Err((CloseCode::ProtocolError, "relay frame over the size limit".into()));
        }
        // At most `max_frame` (checked above), so it fits a usize.
        let frame = usize::try_from(len).unwrap_or(usize::MAX);
        if !self.credit.fits(frame) {
            return Err((CloseCode::ProtocolError, "relay frame beyond the credit the other device granted".into()));
        }
        let total = self.credit.sent().bytes.saturating_add(len);
        if total.saturating_add(self.other_total) > limits.max_bytes {
            return Err((CloseCode::LimitExceeded, over_cap(limits)));
        }
        self.credit.take(frame);
        Ok(total)
    }

    /// A frame from the other party, which had sent `total` bytes with it:
    /// it may be delivered if `own + total <= max_bytes`.
    pub fn deliverable(&mut self, total: u64, limits: &RelayLimits) -> Result<(), (CloseCode, String)> {
        self.other_total = self.other_total.max(total);
        if self.credit.sent().bytes.saturating_add(total) > limits.max_bytes {
            return Err((CloseCode::LimitExceeded, over_cap(limits)));
        }
        Ok(())
    }

    /// The other party granted cumulative limits.
    pub fn grant(&mut self, frames: u64, bytes: u64) {
        self.credit.allow(Credit::new(frames, bytes));
    }
}

fn over_cap(limits: &RelayLimits) -> String {
    format!("the relay carried its limit of {} bytes", limits.max_bytes)
}

/// Why a frame was not forwarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameRefusal {
    /// No such relay, or the sender is not a party.
    Unknown,
    /// The frame ended the relay (over a cap).
    Ended(Option<Box<Ended>>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(n: u8) -> DeviceId {
        format!("{n:02x}").repeat(20).parse().unwrap()
    }

    #[test]
    fn opens_only_when_both_ask_in_time() {
        let mut table = RelayTable::new(RelayLimits::default());
        assert_eq!(table.open(0, device(1), None, device(2)).unwrap(), Opening::Waiting);
        let Opening::Open(relay) = table.open(10, device(2), None, device(1)).unwrap() else { panic!("not open") };
        assert_eq!((relay.a, relay.b), (device(1), device(2)));
        assert_eq!(table.frame(relay.id, &device(1), 10).unwrap(), device(2));
        assert_eq!(table.frame(relay.id, &device(3), 10).unwrap_err(), FrameRefusal::Unknown);
        // A lapsed request does not pair.
        assert_eq!(table.open(0, device(3), None, device(4)).unwrap(), Opening::Waiting);
        assert_eq!(table.open(40_000, device(4), None, device(3)).unwrap(), Opening::Waiting);
        assert_eq!(table.open(1, device(5), None, device(5)).unwrap_err().code, ErrorCode::SelfAddressed);
    }

    #[test]
    fn relays_are_bounded_per_device_and_per_address() {
        let limits = RelayLimits { per_device: 2, per_address: 3, ..RelayLimits::default() };
        let mut table = RelayTable::new(limits);
        let (a, b): (Option<IpAddr>, Option<IpAddr>) =
            (Some("192.0.2.1".parse().unwrap()), Some("192.0.2.2".parse().unwrap()));
        let open = |table: &mut RelayTable, x: u8, y: u8, origin_x, origin_y| {
            table.open(0, device(x), origin_x, device(y))?;
            table.open(0, device(y), origin_y, device(x))
        };
        let Ok(Opening::Open(first)) = open(&mut table, 1, 2, a, a) else { panic!("not open") };
        assert!(matches!(open(&mut table, 1, 3, a, a), Ok(Opening::Open(_))));
        let refused = open(&mut table, 1, 4, a, a).unwrap_err();
        assert_eq!(refused.code, ErrorCode::QuotaExceeded, "{refused:?}");
        assert!(refused.message.contains("this device"), "{refused:?}");
        // Two relays among a's devices, the first counted once: one more.
        assert!(matches!(open(&mut table, 2, 3, a, a), Ok(Opening::Open(_))));
        let refused = open(&mut table, 4, 5, a, a).unwrap_err();
        assert!(refused.message.contains("this address"), "{refused:?}");
        // A request waiting when its address fills up is refused at pairing.
        table.end(first.id, CloseCode::Normal, "done");
        assert_eq!(table.open(0, device(4), a, device(8)).unwrap(), Opening::Waiting);
        assert!(matches!(open(&mut table, 1, 2, a, a), Ok(Opening::Open(_))));
        let refused = table.open(0, device(8), b, device(4)).unwrap_err();
        assert!(refused.message.contains("the other device's address"), "{refused:?}");
        let Some(first) = table.relays.values().find(|r| r.other(&device(1)) == Some(device(2))).cloned() else {
            panic!("the relay of 1 and 2")
        };
        // Another address is free.
        assert!(matches!(open(&mut table, 6, 7, b, b), Ok(Opening::Open(_))));
        table.end(first.id, CloseCode::Normal, "done");
        assert!(matches!(open(&mut table, 4, 5, a, a), Ok(Opening::Open(_))));
    }

    #[test]
    fn caps_end_relays() {
        let limits = RelayLimits { max_bytes: 100, max_relays: 1, ..RelayLimits::default() };
        let mut table = RelayTable::new(limits);
        table.open(0, device(1), None, device(2)).unwrap();
        let Opening::Open(relay) = table.open(0, device(2), None, device(1)).unwrap() else { panic!() };
        table.open(0, device(3), None, device(4)).unwrap();
        assert_eq!(table.open(0, device(4), None, device(3)).unwrap_err().code, ErrorCode::TooManyRelays);
        table.frame(relay.id, &device(1), 60).unwrap();
        let FrameRefusal::Ended(Some(ended)) = table.frame(relay.id, &device(2), 60).unwrap_err() else { panic!() };
        assert_eq!(ended.code, CloseCode::LimitExceeded);
        assert!(table.is_empty());

        table.open(0, device(1), None, device(2)).unwrap();
        let Opening::Open(relay) = table.open(0, device(2), None, device(1)).unwrap() else { panic!() };
        assert_eq!(table.next_deadline(), Some(relay.deadline));
        let ended = table.expire(relay.deadline);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].code, CloseCode::LimitExceeded);
    }

    /// One instance's side in the simulation below: its leg (`None` once
    /// ended) and the events on their way to the other instance.
    struct Side {
        leg: Option<RelayLeg>,
        outbox: std::collections::VecDeque<Option<(u64, u64)>>,
    }

    impl Side {
        fn new() -> Side {
            let mut leg = RelayLeg::default();
            leg.grant(u64::MAX, u64::MAX);
            Side { leg: Some(leg), outbox: Default::default() }
        }

        /// The leg ended here: a close (`None`) follows what is in flight.
        fn end(&mut self) {
            self.leg = None;
            self.outbox.push_back(None);
        }
    }

    proptest::proptest! {
        /// Two instances, each admitting its party's frames and delivering
        /// the other's in any interleaving, never deliver more than the cap
        /// both ways together.
        #[test]
        fn two_legs_hold_the_byte_cap_together(steps in proptest::collection::vec((0u8..4, 1u64..3000), 1..400)) {
            let limits = RelayLimits { max_bytes: 20_000, ..RelayLimits::default() };
            let mut sides = [Side::new(), Side::new()];
            let mut delivered = 0u64;
            for (op, len) in steps {
                let (me, other) = ((op % 2) as usize, 1 - (op % 2) as usize);
                if op < 2 {
                    let admitted = sides[me].leg.as_mut().map(|leg| leg.admit(len, &limits));
                    match admitted {
                        Some(Ok(total)) => sides[me].outbox.push_back(Some((len, total))),
                        Some(Err(_)) => sides[me].end(),
                        None => {}
                    }
                } else if let Some(event) = sides[other].outbox.pop_front() {
                    match (event, sides[me].leg.as_mut()) {
                        (Some((len, total)), Some(leg)) => match leg.deliverable(total, &limits) {
                            Ok(()) => delivered += len,
                            Err(_) => sides[me].end(),
                        },
                        (None, Some(_)) => sides[me].leg = None,
                        (_, None) => {}
                    }
                }
                proptest::prop_assert!(delivered <= limits.max_bytes, "{delivered} delivered");
            }
        }
    }

    #[test]
    fn a_leg_checks_size_credit_and_cap() {
        let limits = RelayLimits { max_bytes: 10_000, ..RelayLimits::default() };
        let mut leg = RelayLeg::default();
        assert_eq!(leg.admit(limits.max_frame as u64 + 1, &limits).unwrap_err().0, CloseCode::ProtocolError);
        assert_eq!(leg.admit(4_000, &limits), Ok(4_000));
        leg.deliverable(5_000, &limits).unwrap();
        assert_eq!(leg.admit(2_000, &limits).unwrap_err().0, CloseCode::LimitExceeded, "4,000 + 2,000 + 5,000");
        assert_eq!(leg.deliverable(7_000, &limits).unwrap_err().0, CloseCode::LimitExceeded);
        let mut leg = RelayLeg::default();
        for _ in 0..crate::protocol::RELAY_WINDOW_FRAMES {
            leg.admit(1, &RelayLimits::default()).unwrap();
        }
        assert_eq!(leg.admit(1, &RelayLimits::default()).unwrap_err().0, CloseCode::ProtocolError, "beyond credit");
        leg.grant(crate::protocol::RELAY_WINDOW_FRAMES + 1, 1 << 30);
        leg.admit(1, &RelayLimits::default()).unwrap();
    }

    #[test]
    fn one_instance_enforces_the_credit_each_side_granted() {
        let mut table = RelayTable::new(RelayLimits::default());
        table.open(0, device(1), None, device(2)).unwrap();
        let Opening::Open(relay) = table.open(0, device(2), None, device(1)).unwrap() else { panic!("not open") };
        let window = crate::protocol::RELAY_WINDOW_BYTES as usize;
        let frame = 16 * 1024;
        for _ in 0..window / frame {
            assert_eq!(table.frame(relay.id, &device(1), frame).unwrap(), device(2));
        }
        assert_eq!(table.credit(relay.id, &device(2), 64, window as u64 + frame as u64), Some(device(1)));
        assert_eq!(table.frame(relay.id, &device(1), frame).unwrap(), device(2), "within the new grant");
        assert_eq!(table.credit(relay.id, &device(3), 1 << 20, 1 << 40), None, "not a party");
        let Err(FrameRefusal::Ended(Some(ended))) = table.frame(relay.id, &device(1), frame) else {
            panic!("a frame beyond the grant ends the relay")
        };
        assert_eq!(ended.code, CloseCode::ProtocolError);
    }

    #[test]
    fn a_device_going_offline_ends_its_relays_and_requests() {
        let mut table = RelayTable::new(RelayLimits::default());
        table.open(0, device(1), None, device(2)).unwrap();
        table.open(0, device(2), None, device(1)).unwrap();
        table.open(0, device(1), None, device(3)).unwrap();
        assert_eq!(table.device_gone(&device(1)).len(), 1);
        assert_eq!(
            table.open(1, device(3), None, device(1)).unwrap(),
            Opening::Waiting,
            "the request lapsed with its device"
        );
    }
}
