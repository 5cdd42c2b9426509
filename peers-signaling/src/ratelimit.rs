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
    /// Checks that every rate and burst is positive.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("rate_limits.device_per_second", self.device_per_second),
            ("rate_limits.device_burst", self.device_burst),
            ("rate_limits.ip_per_second", self.ip_per_second),
            ("rate_limits.ip_burst", self.ip_burst),
        ] {
            if value == 0 {
                return Err(Error::InvalidConfig { field, detail: "must be at least 1".into() });
            }
        }
        Ok(())
    }
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

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
}

impl Limiters {
    pub(crate) fn new(limits: &RateLimits, sessions: &crate::sessions::SessionLimits) -> Self {
        let per_minute = NonZeroU32::new(sessions.joins_per_minute_per_ip).unwrap_or(NonZeroU32::MIN);
        let joins = Quota::per_minute(per_minute).allow_burst(per_minute);
        Limiters {
            devices: RateLimiter::keyed(quota(limits.device_per_second, limits.device_burst)),
            ips: RateLimiter::keyed(quota(limits.ip_per_second, limits.ip_burst)),
            join_devices: RateLimiter::keyed(joins),
            join_ips: RateLimiter::keyed(joins),
        }
    }

    /// Counts one session join attempt from `ip` (when known) and `device`.
    pub(crate) fn check_join(&self, ip: Option<IpAddr>, device: &DeviceId) -> Result<(), Limited> {
        if let Some(ip) = ip
            && self.join_ips.check_key(&ip).is_err()
        {
            return Err(Limited::Ip);
        }
        self.join_devices.check_key(device).map_err(|_| Limited::Device)
    }

    /// Counts one request from `ip` (when known) and `device` (when registered).
    pub(crate) fn check(&self, ip: Option<IpAddr>, device: Option<&DeviceId>) -> Result<(), Limited> {
        if let Some(ip) = ip
            && self.ips.check_key(&ip).is_err()
        {
            return Err(Limited::Ip);
        }
        if let Some(device) = device
            && self.devices.check_key(device).is_err()
        {
            return Err(Limited::Device);
        }
        Ok(())
    }

    /// Forgets keys whose limit has fully recovered.
    pub(crate) fn sweep(&self) {
        for limiter in [&self.devices, &self.join_devices] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        for limiter in [&self.ips, &self.join_ips] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
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
}
