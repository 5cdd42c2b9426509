//! Which connection to a device to use, and which device to drop at the
//! connection limit. Sans-IO.

use std::time::{Duration, Instant};

use peers_sdk::DeviceId;

use super::class::ConnectionClass;

/// Settings of the switching rules.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PreferenceOptions {
    /// A connection of the same class replaces the active one only if its latency
    /// is lower by at least this share of the active one's. Default: 0.5.
    pub latency_margin: f64,
    /// ... and by at least this much. Default: 20 ms.
    pub min_latency_gain: Duration,
    /// After a switch, no switch to a connection of the same class for this long
    /// (a better class may still take over). Default: 30 s.
    pub hold_down: Duration,
}

impl Default for PreferenceOptions {
    fn default() -> Self {
        PreferenceOptions {
            latency_margin: 0.5,
            min_latency_gain: Duration::from_millis(20),
            hold_down: Duration::from_secs(30),
        }
    }
}

/// What is known of a connection when comparing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Its class.
    pub class: ConnectionClass,
    /// Its measured latency, if any.
    pub latency: Option<Duration>,
}

/// Whether `new` should take over from `active`, which became active at
/// `switched_at`. A better class always wins; a worse class never does; within a
/// class, only a clearly lower latency does, and not during the hold-down. This
/// margin is what keeps two similar paths from flapping.
pub fn should_switch(
    active: Candidate,
    new: Candidate,
    switched_at: Instant,
    now: Instant,
    options: &PreferenceOptions,
) -> bool {
    if new.class != active.class {
        return new.class < active.class;
    }
    if now.saturating_duration_since(switched_at) < options.hold_down {
        return false;
    }
    match (active.latency, new.latency) {
        (Some(old), Some(new)) => {
            let gain = old.saturating_sub(new);
            gain >= options.min_latency_gain && gain.as_secs_f64() >= old.as_secs_f64() * options.latency_margin
        }
        _ => false,
    }
}

/// A device's active connection, as eviction sees it.
#[derive(Clone, Copy, Debug)]
pub struct Occupant {
    /// The device.
    pub device: DeviceId,
    /// Its active connection's class and latency.
    pub candidate: Candidate,
    /// Whether a group sync or an application call needs it right now (never
    /// evicted while another choice exists).
    pub pinned: bool,
}

/// At the connection limit, which device's connection to close so that a
/// newcomer of class `incoming` fits: the least preferred one (worst class, then
/// highest latency, unpinned first), and only if it is worse than the newcomer.
/// `None` means the newcomer is the one to refuse.
pub fn pick_eviction(occupants: &[Occupant], incoming: Candidate) -> Option<DeviceId> {
    let rank =
        |o: &Occupant| (o.pinned, std::cmp::Reverse(o.candidate.class), std::cmp::Reverse(latency_key(o.candidate)));
    let victim = occupants.iter().min_by_key(|o| rank(o))?;
    let worse = (victim.candidate.class, latency_key(victim.candidate)) > (incoming.class, latency_key(incoming));
    worse.then_some(victim.device)
}

/// Unknown latency sorts as worst.
fn latency_key(candidate: Candidate) -> Duration {
    candidate.latency.unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use peers_sdk::DeviceKeys;

    use super::*;
    use ConnectionClass::*;

    fn candidate(class: ConnectionClass, ms: u64) -> Candidate {
        Candidate { class, latency: Some(Duration::from_millis(ms)) }
    }

    #[test]
    fn a_better_class_takes_over_and_a_worse_one_never_does() {
        let (t0, options) = (Instant::now(), PreferenceOptions::default());
        assert!(should_switch(candidate(InternetDirect, 5), candidate(WebRtcDirect, 50), t0, t0, &options));
        assert!(!should_switch(candidate(WebRtcDirect, 500), candidate(InternetDirect, 1), t0, t0, &options));
    }

    #[test]
    fn within_a_class_only_a_clear_gain_after_the_hold_down_switches() {
        let (t0, options) = (Instant::now(), PreferenceOptions::default());
        let later = t0 + Duration::from_secs(60);
        // Similar latencies: no flapping either way.
        assert!(!should_switch(candidate(WebRtcDirect, 40), candidate(WebRtcDirect, 35), t0, later, &options));
        assert!(!should_switch(candidate(WebRtcDirect, 35), candidate(WebRtcDirect, 40), t0, later, &options));
        // A clear gain switches, but not during the hold-down.
        assert!(should_switch(candidate(WebRtcDirect, 100), candidate(WebRtcDirect, 20), t0, later, &options));
        assert!(!should_switch(candidate(WebRtcDirect, 100), candidate(WebRtcDirect, 20), t0, t0, &options));
    }

    #[test]
    fn eviction_picks_the_least_preferred_and_only_for_a_better_newcomer() {
        let id = || DeviceKeys::generate("x").unwrap().device_id();
        let (a, b, c) = (id(), id(), id());
        let occupants = [
            Occupant { device: a, candidate: candidate(Local, 1), pinned: false },
            Occupant { device: b, candidate: candidate(ServerRelay, 90), pinned: false },
            Occupant { device: c, candidate: candidate(ServerRelay, 30), pinned: false },
        ];
        assert_eq!(pick_eviction(&occupants, candidate(WebRtcDirect, 10)), Some(b));
        assert_eq!(pick_eviction(&occupants, candidate(ServerRelay, 200)), None);
        let mut pinned = occupants;
        pinned[1].pinned = true;
        assert_eq!(pick_eviction(&pinned, candidate(WebRtcDirect, 10)), Some(c));
    }
}
