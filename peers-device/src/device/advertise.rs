//! The URLs a listening device puts in its [`DeviceInfo`](peers_sdk::DeviceInfo)
//! for others to dial: never `0.0.0.0`.

use std::net::{IpAddr, SocketAddr};

/// The URLs to advertise for a socket.io server at `url` bound to `bound`. A
/// server bound to one address advertises it as it is; one bound to every
/// interface (`0.0.0.0`, `::`) advertises each of `interfaces` of that family
/// (IPv6 link-local addresses left out: they need a scope to dial), and the
/// loopback address when the machine has no other.
pub(crate) fn advertise_urls(url: &str, bound: SocketAddr, interfaces: &[IpAddr]) -> Vec<String> {
    if !bound.ip().is_unspecified() {
        return vec![url.to_owned()];
    }
    let Ok(base) = url::Url::parse(url) else { return Vec::new() };
    let family = |ip: &IpAddr| match (bound.ip(), ip) {
        // A `::` socket usually accepts IPv4 too (dual stack).
        (IpAddr::V6(_), _) => true,
        (IpAddr::V4(_), ip) => ip.is_ipv4(),
    };
    let usable = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unspecified() && !v6.is_unicast_link_local(),
    };
    let mut ips: Vec<IpAddr> = interfaces.iter().copied().filter(|ip| family(ip) && usable(ip)).collect();
    if ips.is_empty() {
        ips.push(match bound.ip() {
            IpAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        });
    }
    ips.sort();
    ips.dedup();
    ips.into_iter()
        .filter_map(|ip| {
            let mut url = base.clone();
            url.set_ip_host(ip).ok()?;
            Some(url.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn a_specific_address_is_advertised_as_bound() {
        let bound: SocketAddr = "192.168.1.5:4000".parse().unwrap();
        let urls = advertise_urls("http://192.168.1.5:4000/socket.io/", bound, &ips(&["10.0.0.1"]));
        assert_eq!(urls, ["http://192.168.1.5:4000/socket.io/"]);
    }

    #[test]
    fn every_interface_becomes_each_real_address_of_its_family() {
        let bound: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        let interfaces = ips(&["192.168.1.5", "fe80::1", "2001:db8::5", "10.8.0.2", "127.0.0.1"]);
        let urls = advertise_urls("http://0.0.0.0:4000/socket.io/", bound, &interfaces);
        assert_eq!(urls, ["http://10.8.0.2:4000/socket.io/", "http://192.168.1.5:4000/socket.io/"]);
        let bound: SocketAddr = "[::]:4000".parse().unwrap();
        let urls = advertise_urls("http://[::]:4000/", bound, &interfaces);
        assert_eq!(urls, ["http://10.8.0.2:4000/", "http://192.168.1.5:4000/", "http://[2001:db8::5]:4000/"]);
    }

    #[test]
    fn a_machine_without_interfaces_advertises_loopback_never_unspecified() {
        let bound: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        assert_eq!(advertise_urls("http://0.0.0.0:4000/", bound, &[]), ["http://127.0.0.1:4000/"]);
    }
}
