//! Connection health from pings: latency, error rate, and the decision to give
//! up on a connection after consecutive failures; and [`Liveness`], the fast
//! check that notices a path that died silently within seconds. Sans-IO: the
//! caller sends the pings and passes the clock in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Settings of [`Health`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HealthOptions {
    /// Time between pings. Default: 15 s.
    pub ping_interval: Duration,
    /// A ping not answered within this time failed. Default: 10 s.
    pub ping_timeout: Duration,
    /// Consecutive failed pings that close the connection. Default: 3.
    pub max_failures: u32,
    /// Pings remembered for the error rate. Default: 20.
    pub window: usize,
    /// After [`ConnectionManager::network_changed`](super::ConnectionManager::network_changed),
    /// a connection that does not answer a ping within this time is closed.
    /// Default: 3 s.
    pub network_probe_timeout: Duration,
    /// Liveness: when nothing has arrived on a connection for this long, it is
    /// pinged (and again each time this passes while it stays silent). Any
    /// frame received counts, so a busy connection costs no pings. Default: 1 s.
    pub liveness_idle: Duration,
    /// Liveness: a connection silent this long (a ping went out and nothing came
    /// back) is suspect: it still carries traffic, but the manager dials the
    /// paths it would fail over to, so that a standby is up if the connection
    /// is declared dead, and failover does not wait for a dial. Default: 1.5 s.
    pub liveness_suspect: Duration,
    /// Liveness: a connection on which nothing at all arrived for this long,
    /// pings included, is closed as dead and traffic fails over. Default: 3 s.
    pub liveness_timeout: Duration,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(10),
            max_failures: 3,
            window: 20,
            network_probe_timeout: Duration::from_secs(3),
            liveness_idle: Duration::from_secs(1),
            liveness_suspect: Duration::from_millis(1500),
            liveness_timeout: Duration::from_secs(3),
        }
    }
}

/// What the caller should do after recording a ping's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the connection.
    Healthy,
    /// Too many consecutive failures: close it.
    Dead,
}

/// The health of one connection.
#[derive(Clone, Debug)]
pub struct Health {
    options: HealthOptions,
    outcomes: VecDeque<Option<Duration>>,
    consecutive_failures: u32,
    smoothed_rtt: Option<Duration>,
    last_rtt: Option<Duration>,
    next_ping: Instant,
}

impl Health {
    /// A connection that has just been verified at `now`.
    pub fn new(options: HealthOptions, now: Instant) -> Self {
        let next_ping = now + options.ping_interval;
        Health {
            outcomes: VecDeque::with_capacity(options.window.max(1)),
            options,
            consecutive_failures: 0,
            smoothed_rtt: None,
            last_rtt: None,
            next_ping,
        }
    }

    /// When the next ping is due.
    pub fn next_ping(&self) -> Instant {
        self.next_ping
    }

    /// How long to wait for a ping's answer.
    pub fn ping_timeout(&self) -> Duration {
        self.options.ping_timeout
    }

    /// Records an answered ping that took `rtt`, at `now`.
    pub fn on_pong(&mut self, rtt: Duration, now: Instant) -> Verdict {
        self.consecutive_failures = 0;
        self.last_rtt = Some(rtt);
        // The usual 1/8 exponential smoothing (as TCP's SRTT).
        self.smoothed_rtt = Some(match self.smoothed_rtt {
            None => rtt,
            Some(srtt) => (srtt * 7 + rtt) / 8,
        });
        self.record(Some(rtt), now)
    }

    /// Records a ping that failed or timed out, at `now`.
    pub fn on_failure(&mut self, now: Instant) -> Verdict {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.record(None, now)
    }

    fn record(&mut self, outcome: Option<Duration>, now: Instant) -> Verdict {
        if self.outcomes.len() >= self.options.window.max(1) {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back(outcome);
        self.next_ping = now + self.options.ping_interval;
        if self.consecutive_failures >= self.options.max_failures { Verdict::Dead } else { Verdict::Healthy }
    }

    /// The smoothed round-trip time, once a ping was answered.
    pub fn latency(&self) -> Option<Duration> {
        self.smoothed_rtt
    }

    /// The last ping's round-trip time.
    pub fn last_rtt(&self) -> Option<Duration> {
        self.last_rtt
    }

    /// The share of failed pings among the last [`HealthOptions::window`].
    pub fn error_rate(&self) -> f64 {
        if self.outcomes.is_empty() {
            return 0.0;
        }
        self.outcomes.iter().filter(|o| o.is_none()).count() as f64 / self.outcomes.len() as f64
    }

    /// Consecutive failed pings so far.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }
}

/// What the liveness check wants done at a given moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LivenessStep {
    /// The peer was heard recently: check again at this time.
    Wait(Instant),
    /// Silent for a while: send a ping now (its answer counts as hearing the
    /// peer), then check again at this time.
    Probe(Instant),
    /// Silent past [`HealthOptions::liveness_suspect`]: send a ping now if one
    /// is due (`ping`), keep the connection, get a standby path ready, and
    /// check again at this time.
    Suspect {
        /// A ping is due now.
        ping: bool,
        /// When to check again.
        next: Instant,
    },
    /// Nothing at all arrived for the whole timeout: the path is dead.
    Dead,
}

/// The liveness check of one connection: silence is measured from the last
/// frame received (of any kind), so pings go out only on idle connections.
/// A connection silent for [`HealthOptions::liveness_timeout`] is dead, even
/// though its transport (ICE, TCP) may take much longer to give up.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    idle: Duration,
    suspect: Duration,
    timeout: Duration,
}

impl Liveness {
    /// The check with `options`' idle time and timeout.
    pub fn new(options: &HealthOptions) -> Self {
        let timeout = options.liveness_timeout.max(Duration::from_millis(1));
        let idle = options.liveness_idle.clamp(Duration::from_millis(1), timeout);
        Liveness { idle, suspect: options.liveness_suspect.clamp(idle, timeout), timeout }
    }

    /// What to do at `now`, the peer having been heard last at `last_heard`
    /// and pinged last at `last_ping` (pings go out one idle period apart).
    pub fn step(&self, last_heard: Instant, last_ping: Option<Instant>, now: Instant) -> LivenessStep {
        let silent = now.saturating_duration_since(last_heard);
        if silent >= self.timeout {
            return LivenessStep::Dead;
        }
        if silent < self.idle {
            return LivenessStep::Wait(last_heard + self.idle);
        }
        // Silent: a ping every idle period (none sent since the peer was last
        // heard counts as due), checks exactly at the suspect mark and the timeout.
        let ping = last_ping.is_none_or(|at| at < last_heard || now >= at + self.idle);
        let next_ping = if ping { now + self.idle } else { last_ping.map_or(now, |at| at + self.idle) };
        let mut next = next_ping.min(last_heard + self.timeout);
        if silent < self.suspect {
            next = next.min(last_heard + self.suspect);
            if ping { LivenessStep::Probe(next) } else { LivenessStep::Wait(next) }
        } else {
            LivenessStep::Suspect { ping, next }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_pings_only_when_idle_and_declares_death_at_the_timeout() {
        let heard = Instant::now();
        let live = Liveness::new(&HealthOptions::default());
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let step = |ping: Option<Duration>, at: Duration| live.step(heard, ping.map(|p| heard + p), heard + at);
        assert_eq!(step(None, ms(400)), LivenessStep::Wait(heard + s(1)), "traffic flows: no ping");
        assert_eq!(step(None, s(1)), LivenessStep::Probe(heard + ms(1500)), "pinged, checked at the suspect mark");
        let suspect = |ping, next| LivenessStep::Suspect { ping, next };
        assert_eq!(step(Some(s(1)), ms(1500)), suspect(false, heard + s(2)), "suspect; the next ping at 2 s");
        assert_eq!(step(Some(s(1)), s(2)), suspect(true, heard + s(3)));
        assert_eq!(step(Some(s(2)), ms(2500)), suspect(false, heard + s(3)), "never past the timeout");
        assert_eq!(step(Some(s(2)), s(3)), LivenessStep::Dead);
        // An answer (any frame) moves `heard` on: the next check is an idle period later.
        let later = heard + ms(2900);
        assert_eq!(live.step(later, Some(heard + s(2)), heard + s(3)), LivenessStep::Wait(later + s(1)));
        // Silent again after it: a ping sent before the peer was last heard does not count.
        assert_eq!(live.step(later, Some(heard + s(2)), later + s(1)), LivenessStep::Probe(later + ms(1500)));
    }

    #[test]
    fn three_consecutive_failures_are_fatal_but_an_answer_resets_the_count() {
        let start = Instant::now();
        let mut health = Health::new(HealthOptions::default(), start);
        assert_eq!(health.next_ping(), start + Duration::from_secs(15));
        assert_eq!(health.on_failure(start), Verdict::Healthy);
        assert_eq!(health.on_failure(start), Verdict::Healthy);
        assert_eq!(health.on_pong(Duration::from_millis(4), start), Verdict::Healthy);
        assert_eq!(health.on_failure(start), Verdict::Healthy);
        assert_eq!(health.on_failure(start), Verdict::Healthy);
        assert_eq!(health.on_failure(start), Verdict::Dead);
        assert!((health.error_rate() - 5.0 / 6.0).abs() < 1e-9);
    }

    #[test]
    fn latency_is_smoothed_and_the_error_rate_windowed() {
        let start = Instant::now();
        let options = HealthOptions { window: 4, ..HealthOptions::default() };
        let mut health = Health::new(options, start);
        health.on_pong(Duration::from_millis(80), start);
        assert_eq!(health.latency(), Some(Duration::from_millis(80)));
        health.on_pong(Duration::from_millis(0), start);
        assert_eq!(health.latency(), Some(Duration::from_millis(70)));
        health.on_failure(start);
        for _ in 0..4 {
            health.on_pong(Duration::from_millis(1), start);
        }
        assert_eq!(health.error_rate(), 0.0, "the failure left the window");
    }
}
