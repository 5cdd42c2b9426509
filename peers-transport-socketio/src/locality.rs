//! Peer address classification: [`Locality::of_ip`] plus configured LAN ranges.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use peers_sdk::socket::Locality;

/// An address range in CIDR notation (`10.8.0.0/16`, `fd12:3456::/48`), for
/// networks that should count as LAN although [`Locality::of_ip`] calls them
/// internet (a VPN on public addresses, a campus network).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LanRange {
    network: IpAddr,
    prefix: u8,
}

/// Why a [`LanRange`] did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR range {input:?}: {detail}")]
pub struct InvalidLanRange {
    input: String,
    detail: &'static str,
}

impl LanRange {
    /// A range of the addresses that share the first `prefix` bits with `network`.
    /// Returns `None` when `prefix` is longer than the address.
    pub fn new(network: IpAddr, prefix: u8) -> Option<LanRange> {
        let network = network.to_canonical();
        (prefix <= max_prefix(network)).then_some(LanRange { network, prefix })
    }

    /// Whether `ip` lies in the range. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(net.to_bits()), self.prefix, 32) == masked(u128::from(ip.to_bits()), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(net.to_bits(), self.prefix, 128) == masked(ip.to_bits(), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// The top `prefix` bits of a `width`-bit address.
fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
    let host_bits = u32::from(width - prefix.min(width));
    if host_bits >= 128 { 0 } else { bits >> host_bits }
}

impl FromStr for LanRange {
    type Err = InvalidLanRange;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |detail| InvalidLanRange { input: input.to_owned(), detail };
        let (addr, prefix) = input.trim().split_once('/').ok_or_else(|| invalid("expected ADDRESS/PREFIX"))?;
        let network: IpAddr = addr.parse().map_err(|_| invalid("not an IP address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid("prefix is not a number"))?;
        LanRange::new(network, prefix).ok_or_else(|| invalid("prefix longer than the address"))
    }
}

impl fmt::Display for LanRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Classifies `ip`: [`Locality::of_ip`], except that an address in one of
/// `lan_ranges` counts as [`Locality::Lan`] when it would otherwise be internet.
pub fn classify(ip: IpAddr, lan_ranges: &[LanRange]) -> Locality {
    match Locality::of_ip(ip) {
        Locality::Internet if lan_ranges.iter().any(|range| range.contains(ip)) => Locality::Lan,
        locality => locality,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_match() {
        let range: LanRange = "203.0.113.0/24".parse().unwrap();
        assert!(range.contains(ip("203.0.113.7")));
        assert!(range.contains(ip("::ffff:203.0.113.7")));
        assert!(!range.contains(ip("203.0.114.7")));
        assert!(!range.contains(ip("2001:db8::1")));
        assert_eq!(range.to_string(), "203.0.113.0/24");

        let v6: LanRange = "2001:db8:1::/48".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1:ffff::1")));
        assert!(!v6.contains(ip("2001:db8:2::1")));

        let all: LanRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let one: LanRange = "8.8.8.8/32".parse().unwrap();
        assert!(one.contains(ip("8.8.8.8")) && !one.contains(ip("8.8.8.9")));
        let all6: LanRange = "::/0".parse().unwrap();
        assert!(all6.contains(ip("2001:db8::1")));
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in ["10.0.0.0", "10.0.0.0/33", "::/129", "nonsense/8", "10.0.0.0/x", ""] {
            assert!(bad.parse::<LanRange>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn configured_ranges_only_upgrade_internet_addresses() {
        let ranges = ["203.0.113.0/24".parse().unwrap()];
        assert_eq!(classify(ip("203.0.113.9"), &ranges), Locality::Lan);
        assert_eq!(classify(ip("8.8.8.8"), &ranges), Locality::Internet);
        assert_eq!(classify(ip("127.0.0.1"), &ranges), Locality::Loopback);
        assert_eq!(classify(ip("192.168.1.1"), &[]), Locality::Lan);
    }
}
