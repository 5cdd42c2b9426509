//! Pacing of relay events, sans-IO: the server holds each device's relay
//! frames, credit and closes to a rate (`relay-open` says which,
//! [`RelayRate`]) and closes a relay whose device goes over it. The client
//! spends a share of that budget through one token bucket for all its relays,
//! waiting before an event the bucket cannot pay for yet, so a relay is
//! slowed, never closed, by the limit.

use std::time::{Duration, Instant};

use crate::protocol::RelayRate;

/// The share of the server's rate and burst the client spends on relay
/// events: the rest is left for the device's other requests (each costs 16
/// units), and for rounding between the two clocks.
const SHARE: f64 = 0.75;

/// The server's defaults (50 requests/s, a burst of 200, 16 units each), used
/// until a server says otherwise.
const DEFAULT_RATE: RelayRate = RelayRate { units_per_second: 800, burst_units: 3_200 };

/// A token bucket in units; a reservation it cannot pay for at once puts it in
/// debt and says how long to wait.
#[derive(Debug)]
pub(crate) struct Pacer {
    per_second: f64,
    burst: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl Default for Pacer {
    fn default() -> Self {
        let mut pacer = Pacer { per_second: 1.0, burst: 1.0, tokens: 0.0, at: None };
        pacer.set_rate(DEFAULT_RATE);
        pacer.tokens = pacer.burst;
        pacer
    }
}

impl Pacer {
    /// Spends [`SHARE`] of `rate` from now on.
    pub(crate) fn set_rate(&mut self, rate: RelayRate) {
        self.per_second = (rate.units_per_second as f64 * SHARE).max(1.0);
        self.burst = (rate.burst_units as f64 * SHARE).max(1.0);
        self.tokens = self.tokens.min(self.burst);
    }

    /// Reserves `units` at `now`: how long to wait before sending the event.
    pub(crate) fn reserve(&mut self, now: Instant, units: u32) -> Duration {
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * self.per_second;
            self.tokens = (self.tokens + refill).min(self.burst);
        }
        self.at = Some(now);
        self.tokens -= f64::from(units);
        if self.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.tokens / self.per_second) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_goes_at_once_and_the_rest_at_the_rate() {
        let now = Instant::now();
        let mut pacer = Pacer::default();
        pacer.set_rate(RelayRate { units_per_second: 400, burst_units: 40 });
        // 300 units/s, a burst of 30: ten 3-unit events at once, the next one 10 ms later.
        for _ in 0..10 {
            assert_eq!(pacer.reserve(now, 3), Duration::ZERO);
        }
        assert_eq!(pacer.reserve(now, 3), Duration::from_millis(10));
        assert_eq!(pacer.reserve(now, 3), Duration::from_millis(20), "debts add up");
        // A second later the debt is paid and the bucket full again, never more.
        let later = now + Duration::from_secs(1);
        assert_eq!(pacer.reserve(later, 30), Duration::ZERO);
        assert_eq!(pacer.reserve(later, 3), Duration::from_millis(10));
    }

    #[test]
    fn over_a_second_it_spends_no_more_than_its_share() {
        let start = Instant::now();
        let mut pacer = Pacer::default();
        let rate = RelayRate { units_per_second: 800, burst_units: 3_200 };
        pacer.set_rate(rate);
        // Send as soon as allowed for 10 s of the pacer's clock.
        let (mut now, mut spent) = (start, 0u64);
        while now < start + Duration::from_secs(10) {
            now += pacer.reserve(now, 5);
            spent += 5;
        }
        let allowed = (rate.burst_units + 10 * rate.units_per_second) as f64 * SHARE;
        assert!(spent as f64 <= allowed + 5.0, "spent {spent} of {allowed}");
        assert!(spent as f64 >= allowed * 0.95, "too slow: {spent} of {allowed}");
    }
}
