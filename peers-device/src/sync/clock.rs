//! A hybrid logical clock: wall-clock milliseconds with a logical counter, so a
//! write made after seeing a change always sorts after it, even when the wall
//! clocks of the two devices disagree.
//!
//! ```text
//! timestamp (u64): | wall-clock ms since the Unix epoch (48 bits) | counter (16 bits) |
//! ```
//!
//! Sans-IO: the caller passes the wall clock in.

/// Bits of the logical counter.
const COUNTER_BITS: u32 = 16;

/// The largest timestamp stored (SQLite integers are signed 64-bit).
pub(crate) const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// The clock of one device in one group.
#[derive(Clone, Debug)]
pub(crate) struct HybridClock {
    last: u64,
    max_skew_ms: u64,
}

impl HybridClock {
    /// A clock that has already issued or seen `last`, refusing remote timestamps
    /// more than `max_skew_ms` ahead of the wall clock.
    pub(crate) fn new(last: u64, max_skew_ms: u64) -> Self {
        HybridClock { last, max_skew_ms }
    }

    /// A fresh timestamp for a local write, greater than every one before.
    pub(crate) fn tick(&mut self, wall_ms: u64) -> u64 {
        let physical = wall_ms.min(MAX_TIMESTAMP >> COUNTER_BITS) << COUNTER_BITS;
        self.last = physical.max(self.last.saturating_add(1)).min(MAX_TIMESTAMP);
        self.last
    }

    /// Checks a remote timestamp against the skew limit; `Err(ahead_ms)` if it is
    /// too far in the future. Does not move the clock (see [`HybridClock::observe`]).
    pub(crate) fn check(&self, remote: u64, wall_ms: u64) -> Result<(), u64> {
        let remote_ms = remote >> COUNTER_BITS;
        let ahead = remote_ms.saturating_sub(wall_ms);
        if remote > MAX_TIMESTAMP || ahead > self.max_skew_ms { Err(ahead) } else { Ok(()) }
    }

    /// Moves the clock past a remote timestamp that passed [`HybridClock::check`].
    pub(crate) fn observe(&mut self, remote: u64) {
        self.last = self.last.max(remote.min(MAX_TIMESTAMP));
    }
}

/// The wall-clock part of a timestamp, in ms since the Unix epoch.
#[cfg(test)]
fn wall_ms_of(timestamp: u64) -> u64 {
    timestamp >> COUNTER_BITS
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ticks_follow_the_wall_clock_and_never_go_back() {
        let mut clock = HybridClock::new(0, 1_000);
        let a = clock.tick(5_000);
        assert_eq!(wall_ms_of(a), 5_000);
        // The wall clock stepped back: the counter carries on.
        let b = clock.tick(4_000);
        assert!(b > a);
        assert_eq!(wall_ms_of(b), 5_000);
    }

    #[test]
    fn a_write_after_seeing_a_remote_change_sorts_after_it() {
        let mut clock = HybridClock::new(0, 60_000);
        let remote = HybridClock::new(0, 0).clone().tick(10_500);
        clock.check(remote, 10_000).unwrap();
        clock.observe(remote);
        assert!(clock.tick(10_000) > remote);
    }

    #[test]
    fn refuses_timestamps_beyond_the_skew_limit() {
        let clock = HybridClock::new(0, 1_000);
        let ahead = 2_500u64 << COUNTER_BITS;
        assert_eq!(clock.check(ahead, 1_000), Err(1_500));
        assert!(clock.check(u64::MAX, 1_000).is_err());
    }

    proptest! {
        #[test]
        fn timestamps_strictly_increase(walls in proptest::collection::vec(0u64..1 << 40, 1..100)) {
            let mut clock = HybridClock::new(0, 0);
            let mut previous = 0;
            for wall in walls {
                let t = clock.tick(wall);
                prop_assert!(t > previous);
                previous = t;
            }
        }
    }
}
