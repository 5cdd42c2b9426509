//! Presence subscriptions per address: the connections of one address group
//! (IPv4 address, IPv6 /64) watch at most
//! [`ServerConfig::max_subscriptions_per_address`](super::ServerConfig::max_subscriptions_per_address)
//! devices together, counted per instance. Each entry counts, whether the
//! device exists or not (a watched id costs the server the same either way).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::protocol::{ErrorCode, Rejection};

/// How many subscriptions each address group holds.
#[derive(Debug)]
pub(crate) struct AddressSubscriptions {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl AddressSubscriptions {
    pub(crate) fn new(max: usize) -> Self {
        AddressSubscriptions { max, counts: Mutex::new(HashMap::new()) }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `n` more subscriptions of `ip` (none when the address is
    /// unknown), unless that takes it over its quota (`quota_exceeded`).
    pub(crate) fn reserve(&self, ip: Option<IpAddr>, n: usize) -> Result<(), Rejection> {
        let Some(ip) = ip else { return Ok(()) };
        if n == 0 {
            return Ok(());
        }
        let mut counts = self.counts();
        let held = counts.get(&ip).copied().unwrap_or(0);
        if held.saturating_add(n) > self.max {
            return Err(Rejection::new(
                ErrorCode::QuotaExceeded,
                format!("the connections of this address may watch at most {} devices ({held} already)", self.max),
            ));
        }
        counts.insert(ip, held + n);
        Ok(())
    }

    /// Gives `n` subscriptions of `ip` back.
    pub(crate) fn release(&self, ip: Option<IpAddr>, n: usize) {
        let Some(ip) = ip else { return };
        let mut counts = self.counts();
        if let Some(held) = counts.get_mut(&ip) {
            *held = held.saturating_sub(n);
            if *held == 0 {
                counts.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_quota_and_gets_it_back() {
        let quota = AddressSubscriptions::new(10);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        quota.reserve(Some(a), 8).unwrap();
        assert_eq!(quota.reserve(Some(a), 3).unwrap_err().code, ErrorCode::QuotaExceeded);
        quota.reserve(Some(b), 10).unwrap();
        quota.reserve(None, 1000).unwrap();
        quota.release(Some(a), 8);
        quota.reserve(Some(a), 10).unwrap();
        assert!(quota.counts().get(&b).is_some());
        quota.release(Some(b), 10);
        assert!(quota.counts().get(&b).is_none(), "an address with none is forgotten");
    }
}
