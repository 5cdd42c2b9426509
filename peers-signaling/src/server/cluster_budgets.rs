//! Redis mode's request budgets, kept off the path of most requests.
//!
//! - **A device's budget** (`rate_limits.device_*`) lives on the instance
//!   that holds the device: registration takes its presence, so one
//!   instance at a time serves its requests. It is a [`Gcra`] in memory
//!   (`cluster_held.rs`), handed over through Redis: the release of the
//!   presence writes it to `P:{d:<dev>}:rl` and the next claim reads it. A
//!   device that registers while another connection still holds it (its
//!   old instance has not released it yet) starts with its burst spent
//!   ([`Gcra::moved`]): what it spent there is not known here, so the move
//!   is charged as if it had spent all of it.
//! - **An address's budget** (`rate_limits.ip_*`) is shared by every
//!   instance: one address may connect to several. Each instance takes it
//!   from Redis in leases ([`AddressLeases`]): up to a tenth of the burst
//!   at once, spent here, and what is left after [`LEASE_LIFETIME_MS`] is
//!   given back. Over any span of time `T` the requests admitted from one
//!   address, on all instances together, are at most `burst + rate × T +
//!   instances × lease`: what Redis counted in the span (its GCRA) plus
//!   what the instances held, unspent, when it began (at most one lease
//!   each: a lease is taken only when the last one is spent, one at a time).
//! - Session joins and creations keep a call to Redis per request
//!   ([`Cluster::allow_join`], [`Cluster::allow_create`]).
//!
//! The pure parts ([`Gcra`], [`AddressLeases`]) take `now` and are tested
//! without Redis; [`Cluster::charge_address`] and [`run_lease_returns`] drive
//! them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Weak;
use std::time::Duration;

use peers_sdk::DeviceId;
use tracing::{debug, warn};

use super::cluster::{Cluster, unavailable};
use super::connection::lock;
use super::now_ms;
use super::state::Charge;
use crate::protocol::Rejection;
use crate::ratelimit::{Limited, RateLimits};
use crate::sessions::SessionLimits;
use crate::store::redis::Budget;

/// How long an instance keeps a lease of an address's budget before what is
/// left of it goes back to Redis.
pub(super) const LEASE_LIFETIME_MS: u64 = 1_000;

/// How often expired leases are given back.
const LEASE_RETURNS: Duration = Duration::from_millis(250);

/// Requests per second with a burst, as a GCRA: one request per `interval_ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rate {
    interval_ms: f64,
    burst: u32,
}

impl Rate {
    pub(crate) fn per_second(per_second: u32, burst: u32) -> Rate {
        Rate { interval_ms: 1000.0 / f64::from(per_second.max(1)), burst: burst.max(1) }
    }

    /// A device's request rate.
    pub(crate) fn device(limits: &RateLimits) -> Rate {
        Rate::per_second(limits.device_per_second, limits.device_burst)
    }

    /// The deepest the budget may go: `burst` requests ahead of now.
    fn depth(&self) -> f64 {
        f64::from(self.burst) * self.interval_ms
    }
}

/// One budget's state in memory: its theoretical arrival time (unix ms), the
/// same GCRA as `ratelimit.lua`, so its state moves to and from Redis as it is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Gcra {
    tat: f64,
}

impl Gcra {
    /// The budget a release left in Redis (`None`: full).
    pub(crate) fn stored(tat: Option<f64>) -> Gcra {
        Gcra { tat: tat.filter(|t| t.is_finite()).unwrap_or(0.0) }
    }

    /// The budget of a device whose presence another connection still held
    /// when it registered here: that holder's spending since the release it
    /// has not made yet is unknown, so the burst counts as spent (the rate
    /// applies at once). Never more room than a single budget would give.
    pub(crate) fn moved(tat: Option<f64>, now: u64, rate: Rate) -> Gcra {
        let stored = Gcra::stored(tat).tat;
        Gcra { tat: stored.max(now as f64 + rate.depth()) }
    }

    /// Counts one request at `now` if the budget has room; whether it had.
    pub(crate) fn take(&mut self, now: u64, rate: Rate) -> bool {
        let now = now as f64;
        let next = self.tat.max(now) + rate.interval_ms;
        if next - rate.depth() > now {
            return false;
        }
        self.tat = next;
        true
    }

    /// The state to keep in Redis at `now`, `None` when the budget is full.
    pub(crate) fn state(&self, now: u64) -> Option<f64> {
        (self.tat > now as f64).then_some(self.tat)
    }
}

/// What charging a request against its address's lease needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseCharge {
    /// Counted against this instance's lease: no call to Redis.
    Spent,
    /// The lease is spent: take up to `tokens` from Redis (this request
    /// spends the first), then [`AddressLeases::refilled`].
    Refill { tokens: u32 },
    /// Another request is refilling the lease, or the table is full: count
    /// this one request in Redis on its own.
    Single,
}

#[derive(Debug)]
struct Lease {
    /// Requests taken from Redis and not spent yet.
    tokens: u32,
    /// When what is left goes back (unix ms).
    expires_at: u64,
    /// A refill is out to Redis.
    refilling: bool,
}

/// This instance's leases of the shared address budgets. At most one lease
/// per address and at most one refill out at a time, so an instance holds
/// at most `block` unspent requests of an address; entries go when their
/// lease expires, and there are at most `capacity` (past it, requests are
/// counted in Redis one by one, as without leases).
#[derive(Debug)]
pub(crate) struct AddressLeases {
    leases: HashMap<IpAddr, Lease>,
    block: u32,
    capacity: usize,
}

impl AddressLeases {
    /// Leases of a tenth of `limits.ip_burst` (at least one), for at most
    /// `capacity` addresses.
    pub(crate) fn new(limits: &RateLimits, capacity: usize) -> AddressLeases {
        AddressLeases { leases: HashMap::new(), block: lease_block(limits), capacity }
    }

    /// Charges one request from `ip` at `now`.
    pub(crate) fn charge(&mut self, ip: IpAddr, now: u64) -> LeaseCharge {
        let full = self.leases.len() >= self.capacity;
        match self.leases.get_mut(&ip) {
            Some(lease) if lease.tokens > 0 => {
                lease.tokens -= 1;
                LeaseCharge::Spent
            }
            Some(lease) if lease.refilling => LeaseCharge::Single,
            Some(lease) => {
                lease.refilling = true;
                LeaseCharge::Refill { tokens: self.block }
            }
            None if full => LeaseCharge::Single,
            None => {
                self.leases.insert(ip, Lease { tokens: 0, expires_at: now, refilling: true });
                LeaseCharge::Refill { tokens: self.block }
            }
        }
    }

    /// Redis answered a refill of `ip`'s lease at `now`: `granted` requests
    /// (`None`: the call failed). Whether the request that asked is admitted
    /// (it spends the first); the rest is the lease until it expires.
    pub(crate) fn refilled(&mut self, ip: IpAddr, granted: Option<u32>, now: u64) -> bool {
        let granted = granted.unwrap_or(0);
        let Some(lease) = self.leases.get_mut(&ip) else { return granted > 0 };
        lease.refilling = false;
        if granted == 0 {
            if lease.tokens == 0 {
                self.leases.remove(&ip);
            }
            return false;
        }
        lease.tokens = lease.tokens.saturating_add(granted - 1);
        lease.expires_at = now.saturating_add(LEASE_LIFETIME_MS);
        true
    }

    /// The leases expired at `now` (none out for a refill), removed: what is
    /// left of each, to give back.
    pub(crate) fn expired(&mut self, now: u64) -> Vec<(IpAddr, u32)> {
        let mut due = Vec::new();
        self.leases.retain(|ip, lease| {
            let keep = lease.refilling || lease.expires_at > now;
            if !keep && lease.tokens > 0 {
                due.push((*ip, lease.tokens));
            }
            keep
        });
        due
    }

    /// Addresses with a lease.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.leases.len()
    }
}

/// The most requests of an address's budget one instance takes at once: a
/// tenth of the burst, at least one.
pub(crate) fn lease_block(limits: &RateLimits) -> u32 {
    (limits.ip_burst / 10).max(1)
}

fn address_budget(limits: &RateLimits, ip: IpAddr) -> Budget {
    Budget::per_second(format!("ip:{ip}"), limits.ip_per_second, limits.ip_burst)
}

/// Puts a refill that did not finish (its request was dropped) back to
/// "spent", so the next request refills.
struct RefillGuard<'a> {
    cluster: &'a Cluster,
    ip: IpAddr,
    done: bool,
}

impl Drop for RefillGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            lock(&self.cluster.leases).refilled(self.ip, None, now_ms());
        }
    }
}

impl Cluster {
    /// Charges a request from `ip` against the address's shared budget:
    /// ready at once while this instance's lease lasts, otherwise a call to
    /// Redis (a new lease, or this request alone).
    pub(crate) fn charge_address(&self, ip: Option<IpAddr>) -> Charge<'_> {
        let Some(ip) = ip else { return Box::pin(std::future::ready(Ok(None))) };
        let charge = lock(&self.leases).charge(ip, now_ms());
        let budget = address_budget(&self.rate_limits, ip);
        match charge {
            LeaseCharge::Spent => Box::pin(std::future::ready(Ok(None))),
            LeaseCharge::Single => Box::pin(async move { self.check(&[Some((budget, Limited::Ip))]).await }),
            LeaseCharge::Refill { tokens } => Box::pin(async move {
                let mut guard = RefillGuard { cluster: self, ip, done: false };
                let granted = self.state.lease(now_ms(), &budget, tokens).await;
                guard.done = true;
                let admitted = lock(&self.leases).refilled(ip, granted.as_ref().ok().copied(), now_ms());
                match granted {
                    Err(err) => Err(unavailable(err)),
                    Ok(_) if admitted => Ok(None),
                    Ok(_) => Ok(Some(Limited::Ip)),
                }
            }),
        }
    }

    /// Counts one request of the registered `device` against its budget, held
    /// here; `None` if this instance does not hold it.
    pub(crate) fn charge_device(&self, device: &DeviceId) -> Option<bool> {
        self.held.charge(device, now_ms(), Rate::device(&self.rate_limits))
    }

    /// Counts one session join (a code guess) against the join budgets in
    /// Redis of `ip` and `device`, shared by every instance.
    pub(crate) async fn allow_join(
        &self,
        limits: &SessionLimits,
        device: &DeviceId,
        ip: Option<IpAddr>,
    ) -> Result<Option<Limited>, Rejection> {
        let per_minute = limits.joins_per_minute_per_ip;
        let device = (Budget::per_minute(format!("join-dev:{device}"), per_minute, per_minute), Limited::Device);
        let ip = ip.map(|ip| (Budget::per_minute(format!("join-ip:{ip}"), per_minute, per_minute), Limited::Ip));
        self.check(&[Some(device), ip]).await
    }

    /// Counts one session creation against the creation budgets in Redis of
    /// `ip` and `device`, shared by every instance.
    pub(crate) async fn allow_create(
        &self,
        limits: &SessionLimits,
        device: &DeviceId,
        ip: Option<IpAddr>,
    ) -> Result<Option<Limited>, Rejection> {
        let (per_device, per_ip) = (limits.creates_per_minute_per_device, limits.creates_per_minute_per_ip);
        let device = (Budget::per_minute(format!("create-dev:{device}"), per_device, per_device), Limited::Device);
        let ip = ip.map(|ip| (Budget::per_minute(format!("create-ip:{ip}"), per_ip, per_ip), Limited::Ip));
        self.check(&[ip, Some(device)]).await
    }

    /// Counts one request against each budget present; which one had no room.
    async fn check(&self, budgets: &[Option<(Budget, Limited)>]) -> Result<Option<Limited>, Rejection> {
        let budgets: Vec<&(Budget, Limited)> = budgets.iter().flatten().collect();
        if budgets.is_empty() {
            return Ok(None);
        }
        let refused =
            self.state.allow(now_ms(), budgets.iter().map(|(budget, _)| budget)).await.map_err(unavailable)?;
        Ok(refused.and_then(|i| budgets.get(i).map(|(_, whose)| *whose)))
    }
}

/// Gives back what is left of each expired lease, every [`LEASE_RETURNS`].
/// A give-back that fails leaves the requests counted (fewer admitted, never
/// more); they come back at the rate.
pub(super) async fn run_lease_returns(cluster: Weak<Cluster>) {
    loop {
        tokio::time::sleep(LEASE_RETURNS).await;
        let Some(cluster) = cluster.upgrade() else { return };
        let now = now_ms();
        let due = lock(&cluster.leases).expired(now);
        for chunk in due.chunks(256) {
            let gives = chunk.iter().map(|(ip, tokens)| {
                let budget = address_budget(&cluster.rate_limits, *ip);
                let cluster = &cluster;
                async move { (*ip, *tokens, cluster.state.give(now, &budget, *tokens).await) }
            });
            for (ip, tokens, given) in futures_util::future::join_all(gives).await {
                match given {
                    Ok(()) => debug!(%ip, tokens, "gave an unspent lease back"),
                    Err(err) => warn!(%ip, tokens, %err, "could not give an unspent lease back"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn limits(ip_per_second: u32, ip_burst: u32) -> RateLimits {
        RateLimits { ip_per_second, ip_burst, ..RateLimits::default() }
    }

    #[test]
    fn a_budget_allows_its_burst_then_its_rate() {
        let rate = Rate::per_second(10, 5);
        let mut budget = Gcra::stored(None);
        assert_eq!((0..8).filter(|_| budget.take(NOW, rate)).count(), 5);
        assert!(!budget.take(NOW + 99, rate), "100 ms give one back, not 99");
        assert!(budget.take(NOW + 100, rate));
        assert!(!budget.take(NOW + 100, rate));
    }

    #[test]
    fn a_budget_moves_through_its_stored_state() {
        let rate = Rate::per_second(10, 5);
        let mut here = Gcra::stored(None);
        for _ in 0..5 {
            assert!(here.take(NOW, rate));
        }
        let mut there = Gcra::stored(here.state(NOW));
        assert!(!there.take(NOW, rate), "a released budget does not refill by moving");
        assert_eq!(Gcra::stored(None).state(NOW), None);
        assert_eq!(Gcra::stored(Some(1.0)).state(NOW), None, "a state in the past is a full budget");
    }

    #[test]
    fn a_move_from_a_holder_that_has_not_released_starts_spent() {
        let rate = Rate::per_second(10, 5);
        let mut moved = Gcra::moved(None, NOW, rate);
        assert!(!moved.take(NOW, rate), "the burst counts as spent");
        assert!(moved.take(NOW + 100, rate), "the rate applies at once");
        // A stored state further ahead than a spent burst is kept.
        let later = NOW as f64 + 10_000.0;
        assert_eq!(Gcra::moved(Some(later), NOW, rate).state(NOW), Some(later));
    }

    #[test]
    fn a_lease_is_spent_here_and_refilled_one_at_a_time() {
        let mut leases = AddressLeases::new(&limits(100, 40), 8);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(leases.charge(ip, NOW), LeaseCharge::Refill { tokens: 4 });
        assert_eq!(leases.charge(ip, NOW), LeaseCharge::Single, "one refill out at a time");
        assert!(leases.refilled(ip, Some(4), NOW));
        for _ in 0..3 {
            assert_eq!(leases.charge(ip, NOW), LeaseCharge::Spent);
        }
        assert_eq!(leases.charge(ip, NOW), LeaseCharge::Refill { tokens: 4 });
        assert!(leases.refilled(ip, Some(2), NOW), "a partial lease admits");
        assert_eq!(leases.charge(ip, NOW), LeaseCharge::Spent);
        assert_eq!(leases.charge(ip, NOW), LeaseCharge::Refill { tokens: 4 });
        assert!(!leases.refilled(ip, Some(0), NOW), "an empty budget refuses");
        assert_eq!(leases.len(), 0, "an empty lease is forgotten");
        assert_eq!(leases.charge(ip, NOW), LeaseCharge::Refill { tokens: 4 });
        assert!(!leases.refilled(ip, None, NOW), "a failed call admits nothing");
    }

    #[test]
    fn an_expired_lease_gives_back_what_is_left() {
        let mut leases = AddressLeases::new(&limits(100, 40), 8);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        leases.charge(a, NOW);
        leases.refilled(a, Some(4), NOW);
        leases.charge(a, NOW);
        leases.charge(b, NOW);
        assert_eq!(leases.expired(NOW + LEASE_LIFETIME_MS - 1), vec![]);
        assert_eq!(leases.expired(NOW + LEASE_LIFETIME_MS), vec![(a, 2)], "b's refill is still out");
        assert_eq!(leases.len(), 1);
        leases.refilled(b, Some(1), NOW + LEASE_LIFETIME_MS);
        assert_eq!(leases.expired(NOW + 3 * LEASE_LIFETIME_MS), vec![], "nothing left to give back");
        assert_eq!(leases.len(), 0);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut leases = AddressLeases::new(&limits(100, 40), 2);
        let ips: Vec<IpAddr> = (1..=3).map(|i| format!("192.0.2.{i}").parse().unwrap()).collect();
        assert!(matches!(leases.charge(ips[0], NOW), LeaseCharge::Refill { .. }));
        assert!(matches!(leases.charge(ips[1], NOW), LeaseCharge::Refill { .. }));
        assert_eq!(leases.charge(ips[2], NOW), LeaseCharge::Single, "full: counted in Redis one by one");
        assert_eq!(leases.len(), 2);
    }

    /// The bound of the module docs, played out: two instances leasing from
    /// one budget (a model of `ratelimit.lua`) admit at most `burst + rate ×
    /// T + instances × lease` over any span.
    #[test]
    fn two_instances_admit_within_the_documented_bound() {
        let limits = limits(10, 50);
        let rate = Rate::per_second(limits.ip_per_second, limits.ip_burst);
        let mut shared = Gcra::stored(None);
        let lease = |shared: &mut Gcra, now: u64, n: u32| (0..n).take_while(|_| shared.take(now, rate)).count();
        let mut instances = [AddressLeases::new(&limits, 8), AddressLeases::new(&limits, 8)];
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut admitted = Vec::new();
        for ms in (0..3_000u64).step_by(5) {
            let now = NOW + ms;
            for leases in &mut instances {
                for (_, tokens) in leases.expired(now) {
                    shared.tat = (shared.tat - f64::from(tokens) * rate.interval_ms).max(now as f64);
                }
                let ok = match leases.charge(ip, now) {
                    LeaseCharge::Spent => true,
                    LeaseCharge::Single => lease(&mut shared, now, 1) == 1,
                    LeaseCharge::Refill { tokens } => {
                        let granted = lease(&mut shared, now, tokens) as u32;
                        leases.refilled(ip, Some(granted), now)
                    }
                };
                if ok {
                    admitted.push(ms);
                }
            }
        }
        let bound = |span: u64| 50 + 10 * span / 1000 + 2 * u64::from(lease_block(&limits));
        for (i, start) in admitted.iter().enumerate() {
            for end in &admitted[i..] {
                let count = admitted.iter().filter(|t| (*start..=*end).contains(t)).count() as u64;
                assert!(count <= bound(end - start), "{count} admitted in {start}..={end} ms");
            }
        }
        assert!(admitted.len() > 50 + 20, "the rate admits, too: {}", admitted.len());
    }
}
