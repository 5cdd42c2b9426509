//! The account of every message the generator sends: sans-IO bookkeeping that
//! the clients feed with what they see, and the latency samples.
//!
//! ```text
//! sent ──reply "delivered"──▶ received by the target ───────────────▶ delivered
//!   │ ──reply "queued"──▶ "outcome" delivered + received (queued) ───▶ queued, then delivered
//!   │                 └─▶ "outcome" expired ──────────────────────────▶ expired in the queue
//!   │ ──reply "expired" (ttl 0) ─────────────────────────────────────▶ expired at once
//!   └ ──reply ok: false ─────────────────────────────────────────────▶ rejected (by code)
//! anything else when the run ends ───────────────────────────────────▶ lost (by what is missing)
//! ```
//!
//! A server without replies (PeerJS) is accounted with
//! [`Ledger::without_replies`]: a message is done when it is received.

use std::collections::{BTreeMap, HashMap};

/// The server's first answer to a signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirstOutcome {
    /// Handed to the recipient's connection.
    Delivered,
    /// Queued for an offline recipient.
    Queued,
    /// Not queued (time to live 0, recipient offline).
    Expired,
    /// Refused with this code.
    Rejected(String),
}

/// A later `"outcome"` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaterOutcome {
    /// Delivered from the queue.
    Delivered,
    /// Expired in the queue.
    Expired,
}

#[derive(Debug, Default)]
struct Entry {
    first: Option<FirstOutcome>,
    later: Option<LaterOutcome>,
    received: u32,
}

/// Every message's state.
#[derive(Debug)]
pub struct Ledger {
    replies: bool,
    entries: HashMap<u64, Entry>,
    /// Events about messages the ledger never saw sent (a generator bug or a
    /// server inventing messages).
    unknown: u64,
}

/// The final account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages written to the server.
    pub sent: u64,
    /// Replied `delivered` and received.
    pub delivered: u64,
    /// Replied `queued`, then the `delivered` outcome, and received.
    pub queued_then_delivered: u64,
    /// Replied `queued`, then the `expired` outcome (and never received).
    pub expired_in_queue: u64,
    /// Replied `expired` at once.
    pub expired_at_once: u64,
    /// Refused, by error code.
    pub rejected: BTreeMap<String, u64>,
    /// Messages with no final outcome, by what was missing.
    pub lost: BTreeMap<&'static str, u64>,
    /// Extra copies received (a message received more than once).
    pub duplicates: u64,
    /// Events naming messages never sent.
    pub unknown: u64,
}

impl Counts {
    /// Messages refused, all codes.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Messages without a final outcome.
    pub fn lost_total(&self) -> u64 {
        self.lost.values().sum()
    }

    /// Whether every message ended with an outcome, once, and nothing
    /// unexplained happened.
    pub fn is_clean(&self) -> bool {
        self.lost_total() == 0 && self.duplicates == 0 && self.unknown == 0
    }
}

impl Ledger {
    /// A ledger for the signaling protocol: every message gets a reply.
    pub fn new() -> Self {
        Ledger { replies: true, entries: HashMap::new(), unknown: 0 }
    }

    /// A ledger for a server that replies nothing: received is final.
    pub fn without_replies() -> Self {
        Ledger { replies: false, ..Ledger::new() }
    }

    /// `seq` was written to the server.
    pub fn sent(&mut self, seq: u64) {
        self.entries.entry(seq).or_default();
    }

    /// The server's reply to `seq`.
    pub fn reply(&mut self, seq: u64, outcome: FirstOutcome) {
        match self.entries.get_mut(&seq) {
            Some(entry) => entry.first = Some(outcome),
            None => self.unknown += 1,
        }
    }

    /// A later outcome of `seq`.
    pub fn later(&mut self, seq: u64, outcome: LaterOutcome) {
        match self.entries.get_mut(&seq) {
            Some(entry) => entry.later = Some(outcome),
            None => self.unknown += 1,
        }
    }

    /// The target received `seq`.
    pub fn received(&mut self, seq: u64) {
        match self.entries.get_mut(&seq) {
            Some(entry) => entry.received += 1,
            None => self.unknown += 1,
        }
    }

    /// Messages sent so far.
    pub fn sent_count(&self) -> usize {
        self.entries.len()
    }

    /// Messages still without a final outcome.
    pub fn pending(&self) -> usize {
        self.entries.values().filter(|e| self.classify(e).is_err()).count()
    }

    fn classify(&self, entry: &Entry) -> Result<Final, &'static str> {
        if !self.replies {
            return if entry.received > 0 { Ok(Final::Delivered) } else { Err("never received") };
        }
        match (&entry.first, entry.later, entry.received) {
            (None, _, _) => Err("no reply"),
            (Some(FirstOutcome::Rejected(code)), _, _) => Ok(Final::Rejected(code.clone())),
            (Some(FirstOutcome::Expired), _, _) => Ok(Final::ExpiredAtOnce),
            (Some(FirstOutcome::Delivered), _, 0) => Err("replied delivered, never received"),
            (Some(FirstOutcome::Delivered), _, _) => Ok(Final::Delivered),
            (Some(FirstOutcome::Queued), None, _) => Err("queued, no outcome"),
            (Some(FirstOutcome::Queued), Some(LaterOutcome::Expired), _) => Ok(Final::ExpiredInQueue),
            (Some(FirstOutcome::Queued), Some(LaterOutcome::Delivered), 0) => Err("outcome delivered, never received"),
            (Some(FirstOutcome::Queued), Some(LaterOutcome::Delivered), _) => Ok(Final::QueuedThenDelivered),
        }
    }

    /// The account as it stands; call it once nothing more can arrive.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts { sent: self.entries.len() as u64, unknown: self.unknown, ..Counts::default() };
        for entry in self.entries.values() {
            counts.duplicates += u64::from(entry.received.saturating_sub(1));
            match self.classify(entry) {
                Ok(Final::Delivered) => counts.delivered += 1,
                Ok(Final::QueuedThenDelivered) => counts.queued_then_delivered += 1,
                Ok(Final::ExpiredInQueue) => counts.expired_in_queue += 1,
                Ok(Final::ExpiredAtOnce) => counts.expired_at_once += 1,
                Ok(Final::Rejected(code)) => *counts.rejected.entry(code).or_default() += 1,
                Err(missing) => *counts.lost.entry(missing).or_default() += 1,
            }
        }
        counts
    }
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new()
    }
}

enum Final {
    Delivered,
    QueuedThenDelivered,
    ExpiredInQueue,
    ExpiredAtOnce,
    Rejected(String),
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// Sorts `samples` and reads the percentiles (nearest rank).
    pub fn of(samples: &mut [u64]) -> Percentiles {
        samples.sort_unstable();
        let rank = |p: f64| -> u64 {
            if samples.is_empty() {
                return 0;
            }
            let index = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples.get(index).copied().unwrap_or_default()
        };
        Percentiles {
            count: samples.len(),
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

/// A small, fast random number generator (SplitMix64) for picking devices
/// and durations; not for anything secret.
#[derive(Clone, Debug)]
pub struct Picker(u64);

impl Picker {
    /// Seeded from the operating system.
    pub fn from_entropy() -> Self {
        use rand_core::{OsRng, RngCore};
        Picker(OsRng.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        if high <= low { low } else { low + self.next_u64() % (high - low + 1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_to_a_final_outcome_counts_once() {
        let mut ledger = Ledger::new();
        for seq in 1..=8 {
            ledger.sent(seq);
        }
        ledger.reply(1, FirstOutcome::Delivered);
        ledger.received(1);
        ledger.reply(2, FirstOutcome::Queued);
        ledger.later(2, LaterOutcome::Delivered);
        ledger.received(2);
        ledger.reply(3, FirstOutcome::Queued);
        ledger.later(3, LaterOutcome::Expired);
        ledger.reply(4, FirstOutcome::Expired);
        ledger.reply(5, FirstOutcome::Rejected("queue_full".into()));
        ledger.reply(6, FirstOutcome::Delivered); // never received: lost
        ledger.reply(7, FirstOutcome::Queued); // no outcome: lost
        // 8: no reply at all: lost
        assert_eq!(ledger.pending(), 3);
        let counts = ledger.counts();
        assert_eq!(counts.sent, 8);
        assert_eq!((counts.delivered, counts.queued_then_delivered), (1, 1));
        assert_eq!((counts.expired_in_queue, counts.expired_at_once), (1, 1));
        assert_eq!(counts.rejected_total(), 1);
        assert_eq!(counts.lost_total(), 3);
        assert!(!counts.is_clean());
        ledger.received(6);
        ledger.later(7, LaterOutcome::Expired);
        ledger.reply(8, FirstOutcome::Delivered);
        ledger.received(8);
        ledger.received(8);
        ledger.received(99);
        let counts = ledger.counts();
        assert_eq!((counts.lost_total(), counts.duplicates, counts.unknown), (0, 1, 1));
        assert!(!counts.is_clean());
    }

    #[test]
    fn without_replies_received_is_final() {
        let mut ledger = Ledger::without_replies();
        ledger.sent(1);
        ledger.sent(2);
        ledger.received(1);
        assert_eq!(ledger.pending(), 1);
        assert_eq!(ledger.counts().delivered, 1);
        assert_eq!(ledger.counts().lost.get("never received"), Some(&1));
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut samples: Vec<u64> = (1..=100).rev().collect();
        let p = Percentiles::of(&mut samples);
        assert_eq!((p.count, p.p50, p.p95, p.p99, p.max), (100, 50, 95, 99, 100));
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
    }

    #[test]
    fn picker_stays_in_range() {
        let mut picker = Picker(7);
        for _ in 0..1000 {
            assert!(picker.below(10) < 10);
            assert!((5..=9).contains(&picker.between(5, 9)));
        }
        assert_eq!(picker.below(0), 0);
    }
}
