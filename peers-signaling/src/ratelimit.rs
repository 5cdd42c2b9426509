//! Rate limits per device and per IP address (`governor`'s GCRA, keyed).
//!
//! Every request a connection makes counts once against its IP address and,
//! once registered, once against its device. A request over either limit is
//! refused with [`ErrorCode::RateLimited`](crate::protocol::ErrorCode::RateLimited)
//! and has no other effect. The limiters forget idle keys in the server's
//! periodic sweep, so their memory follows the active clients.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use peers_sdk::DeviceId;

use crate::error::{Error, Result};

/// Requests allowed per second, with a burst, per device and per IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimits {
    /// Sustained requests per second per device. Default: 50.
    pub device_per_second: u32,
    /// Requests a device may make at once before the rate applies. Default: 200.
    pub device_burst: u32,
    /// Sustained requests per second per IP address. Default: 200.
    pub ip_per_second: u32,
    /// Requests an IP address may make at once. Default: 1000.
    pub ip_burst: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits { device_per_second: 50, device_burst: 200, ip_per_second: 200, ip_burst: 1000 }
    }
}

impl RateLimits {
    /// The per-device budget relay events are held to, as `relay-open` tells it.
    pub fn relay_rate(&self) -> crate::protocol::RelayRate {
        let units = |n: u32| u64::from(n.min(MAX_RATE)) * u64::from(REQUEST_COST);
        crate::protocol::RelayRate {
            units_per_second: units(self.device_per_second),
            burst_units: units(self.device_burst),
        }
    }

    /// Checks that every rate and burst is positive.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("rate_limits.device_per_second", self.device_per_second),
            ("rate_limits.device_burst", self.device_burst),
            ("rate_limits.ip_per_second", self.ip_per_second),
            ("rate_limits.ip_burst", self.ip_burst),
        ] {
            if value == 0 || value > MAX_RATE {
                return Err(Error::InvalidConfig { field, detail: format!("must be 1 ..= {MAX_RATE}") });
            }
        }
        Ok(())
    }
}

/// What a request costs in the limiters' units. A relay frame, credit or
/// close costs one unit per started 16 KiB: a relay may carry `REQUEST_COST`
/// small events, or 3 frames of 64 KiB, for each request the limits allow
/// (with the defaults, 800 small events or 160 full frames, 10 MiB, per second
/// per device), and a flood of them is bounded.
pub(crate) const REQUEST_COST: u32 = 16;

/// The largest rate or burst a limit may name (it is kept in units).
const MAX_RATE: u32 = u32::MAX / REQUEST_COST;

fn quota(per_second: u32, burst: u32) -> Quota {
    let units = |n: u32| NonZeroU32::new(n.min(MAX_RATE).saturating_mul(REQUEST_COST)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(units(per_second)).allow_burst(units(burst))
}

const COST: NonZeroU32 = match NonZeroU32::new(REQUEST_COST) {
    Some(cost) => cost,
    None => NonZeroU32::MIN,
};

/// Which limit a request broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limited {
    Device,
    Ip,
}

/// The server's limiters.
#[derive(Debug)]
pub(crate) struct Limiters {
    devices: DefaultKeyedRateLimiter<DeviceId>,
    ips: DefaultKeyedRateLimiter<IpAddr>,
    /// Session joins (code guesses), per device and per IP address.
    join_devices: DefaultKeyedRateLimiter<DeviceId>,
    join_ips: DefaultKeyedRateLimiter<IpAddr>,
    /// Sessions created, per device and per IP address.
    create_devices: DefaultKeyedRateLimiter<DeviceId>,
    create_ips: DefaultKeyedRateLimiter<IpAddr>,
}

impl Limiters {
    pub(crate) fn new(limits: &RateLimits, sessions: &crate::sessions::SessionLimits) -> Self {
        let per_minute = NonZeroU32::new(sessions.joins_per_minute_per_ip).unwrap_or(NonZeroU32::MIN);
        let joins = Quota::per_minute(per_minute).allow_burst(per_minute);
        let per_minute = |n: u32| {
            let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
            Quota::per_minute(n).allow_burst(n)
        };
        Limiters {
            devices: RateLimiter::keyed(quota(limits.device_per_second, limits.device_burst)),
            ips: RateLimiter::keyed(quota(limits.ip_per_second, limits.ip_burst)),
            join_devices: RateLimiter::keyed(joins),
            join_ips: RateLimiter::keyed(joins),
            create_devices: RateLimiter::keyed(per_minute(sessions.creates_per_minute_per_device)),
            create_ips: RateLimiter::keyed(per_minute(sessions.creates_per_minute_per_ip)),
        }
    }

    /// Counts one session creation from `ip` (when known) and `device`.
    pub(crate) fn check_create(&self, ip: Option<IpAddr>, device: &DeviceId) -> Result<(), Limited> {
        if let Some(ip) = ip.map(group)
            && self.create_ips.check_key(&ip).is_err()
        {
            return Err(Limited::Ip);
        }
        self.create_devices.check_key(device).map_err(|_| Limited::Device)
    }

    /// Counts one session join attempt from `ip` (when known) and `device`.
    pub(crate) fn check_join(&self, ip: Option<IpAddr>, device: &DeviceId) -> Result<(), Limited> {
        if let Some(ip) = ip.map(group)
            && self.join_ips.check_key(&ip).is_err()
        {
            return Err(Limited::Ip);
        }
        self.join_devices.check_key(device).map_err(|_| Limited::Device)
    }

    /// Counts one request from `ip` (when known) and `device` (when registered).
    pub(crate) fn check(&self, ip: Option<IpAddr>, device: Option<&DeviceId>) -> Result<(), Limited> {
        self.check_cost(ip, device, COST)
    }

    /// Counts one relay frame, credit or close of `len` bytes: one unit
    /// (1/[`REQUEST_COST`] of a request) per started [`RELAY_UNIT_BYTES`](crate::protocol::RELAY_UNIT_BYTES).
    pub(crate) fn check_relay_event(&self, ip: Option<IpAddr>, device: &DeviceId, len: usize) -> Result<(), Limited> {
        let units = crate::protocol::relay_event_units(len);
        self.check_cost(ip, Some(device), NonZeroU32::new(units).unwrap_or(NonZeroU32::MIN))
    }

    fn check_cost(&self, ip: Option<IpAddr>, device: Option<&DeviceId>, cost: NonZeroU32) -> Result<(), Limited> {
        let ip = ip.map(group);
        if let Some(ip) = ip
            && !matches!(self.ips.check_key_n(&ip, cost), Ok(Ok(())))
        {
            return Err(Limited::Ip);
        }
        if let Some(device) = device
            && !matches!(self.devices.check_key_n(device, cost), Ok(Ok(())))
        {
            return Err(Limited::Device);
        }
        Ok(())
    }

    /// Forgets keys whose limit has fully recovered.
    pub(crate) fn sweep(&self) {
        for limiter in [&self.devices, &self.join_devices, &self.create_devices] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        for limiter in [&self.ips, &self.join_ips, &self.create_ips] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The key of an address for every per-address limit: an IPv4 address, or
/// the /64 network of an IPv6 address (one subscriber usually holds a whole
/// /64, so single IPv6 addresses would be free for the taking).
pub(crate) fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_per_key() {
        let limits = RateLimits { device_per_second: 1, device_burst: 3, ip_per_second: 1, ip_burst: 100 };
        let limiters = Limiters::new(&limits, &Default::default());
        let a: DeviceId = "11".repeat(20).parse().unwrap();
        let b: DeviceId = "22".repeat(20).parse().unwrap();
        for _ in 0..3 {
            assert!(limiters.check(None, Some(&a)).is_ok());
        }
        assert_eq!(limiters.check(None, Some(&a)), Err(Limited::Device));
        assert!(limiters.check(None, Some(&b)).is_ok(), "another device is not affected");
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let tight = Limiters::new(&RateLimits { ip_burst: 1, ..limits }, &Default::default());
        assert!(tight.check(Some(ip), None).is_ok());
        assert_eq!(tight.check(Some(ip), None), Err(Limited::Ip));
    }

    #[test]
    fn relay_events_cost_a_fraction_of_a_request() {
        let limits = RateLimits { device_per_second: 1, device_burst: 2, ip_per_second: 1000, ip_burst: 1000 };
        let limiters = Limiters::new(&limits, &Default::default());
        let a: DeviceId = "11".repeat(20).parse().unwrap();
        for _ in 0..2 * REQUEST_COST {
            assert!(limiters.check_relay_event(None, &a, 100).is_ok());
        }
        assert_eq!(limiters.check_relay_event(None, &a, 100), Err(Limited::Device));
        assert_eq!(limiters.check(None, Some(&a)), Err(Limited::Device), "the same budget");
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(group(a), group(b));
        assert_ne!(group(a), group(c));
        let v4: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(group(v4), v4);
        assert_eq!(group("::ffff:127.0.0.2".parse().unwrap()), v4);
    }
}
