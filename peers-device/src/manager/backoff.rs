//! When to try reconnecting: jittered exponential backoff, plus a cooldown for a
//! device whose connections keep dying young. Sans-IO: the caller passes the
//! clock and the randomness in.

use std::time::{Duration, Instant};

/// Settings of [`Backoff`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BackoffOptions {
    /// The first delay. Default: 500 ms.
    pub initial: Duration,
    /// The longest delay. Default: 5 minutes.
    pub max: Duration,
    /// A connection that closes sooner than this after it was verified died
    /// young. Default: 10 s.
    pub young: Duration,
    /// Young deaths in a row that start a cooldown. Default: 3.
    pub young_deaths_for_cooldown: u32,
    /// The cooldown. Default: 5 minutes.
    pub cooldown: Duration,
}

impl Default for BackoffOptions {
    fn default() -> Self {
        BackoffOptions {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(300),
            young: Duration::from_secs(10),
            young_deaths_for_cooldown: 3,
            cooldown: Duration::from_secs(300),
        }
    }
}

/// The reconnection schedule of one device.
#[derive(Clone, Debug)]
pub struct Backoff {
    options: BackoffOptions,
    failures: u32,
    young_deaths: u32,
    connected_at: Option<Instant>,
}

impl Backoff {
    /// A device never tried.
    pub fn new(options: BackoffOptions) -> Self {
        Backoff { options, failures: 0, young_deaths: 0, connected_at: None }
    }

    /// A connection was verified at `now`.
    pub fn on_connected(&mut self, now: Instant) {
        self.failures = 0;
        self.connected_at = Some(now);
    }

    /// A dial failed at `now`; returns when to try again. `unit` is a uniform
    /// random number in `[0, 1)` for the jitter.
    pub fn on_dial_failed(&mut self, now: Instant, unit: f64) -> Instant {
        self.failures = self.failures.saturating_add(1);
        now + self.delay(unit)
    }

    /// A verified connection closed at `now`; returns when to try again.
    pub fn on_closed(&mut self, now: Instant, unit: f64) -> Instant {
        let lived = self.connected_at.take().map(|at| now.saturating_duration_since(at));
        if lived.is_some_and(|lived| lived < self.options.young) {
            self.young_deaths = self.young_deaths.saturating_add(1);
            if self.young_deaths >= self.options.young_deaths_for_cooldown {
                self.young_deaths = 0;
                self.failures = self.failures.saturating_add(1);
                return now + self.options.cooldown + self.delay(unit);
            }
        } else {
            self.young_deaths = 0;
        }
        self.failures = self.failures.saturating_add(1);
        now + self.delay(unit)
    }

    /// "Equal jitter": half the exponential delay, plus a random share of the
    /// other half, so devices that lost their peer together do not retry together.
    fn delay(&self, unit: f64) -> Duration {
        let exponent = self.failures.saturating_sub(1).min(30);
        let full = self.options.initial.saturating_mul(1u32 << exponent).min(self.options.max);
        full / 2 + full.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_with_jitter_up_to_the_cap() {
        let now = Instant::now();
        let mut backoff = Backoff::new(BackoffOptions::default());
        let mut previous_low = Duration::ZERO;
        for attempt in 1..=15 {
            let low = backoff.clone().on_dial_failed(now, 0.0) - now;
            let high = backoff.clone().on_dial_failed(now, 0.999) - now;
            assert!(low <= high);
            assert!(high <= Duration::from_secs(300), "attempt {attempt}: {high:?}");
            assert!(low >= previous_low);
            previous_low = low;
            backoff.on_dial_failed(now, 0.5);
        }
        assert_eq!(backoff.clone().on_dial_failed(now, 0.0) - now, Duration::from_secs(150));
        backoff.on_connected(now);
        assert_eq!(backoff.on_dial_failed(now, 0.0) - now, Duration::from_millis(250), "success resets");
    }

    #[test]
    fn connections_that_keep_dying_young_trigger_a_cooldown() {
        let mut now = Instant::now();
        let mut backoff = Backoff::new(BackoffOptions::default());
        let mut delays = Vec::new();
        for _ in 0..3 {
            backoff.on_connected(now);
            now += Duration::from_secs(1);
            let next = backoff.on_closed(now, 0.0);
            delays.push(next - now);
            now = next;
        }
        assert!(delays[0] < Duration::from_secs(5));
        assert!(delays[2] >= Duration::from_secs(300), "{delays:?}");
        // A connection that lived long resets the count.
        backoff.on_connected(now);
        now += Duration::from_secs(60);
        assert!(backoff.on_closed(now, 0.0) - now < Duration::from_secs(300));
    }
}
