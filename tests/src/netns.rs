//! Network labs in Linux network namespaces, for the NAT tests: hosts, routers
//! that NAT, an "internet" segment, and the faults the tests need (UDP blocked,
//! packet loss). Everything is created with `ip` and `iptables` and removed when
//! the [`Lab`] is dropped.
//!
//! ```text
//!               internet (bridge, 198.51.100.0/24: documentation space, so it
//!                         classifies as a public address)
//!          ┌──────────────┴──────────────┐
//!   router nat1 198.51.100.2      router nat2 198.51.100.3
//!          │ 10.0.1.1/24                  │ 10.0.2.1/24
//!     lan1 bridge                    lan2 bridge
//!     hosts 10.0.1.2, .3 ...         hosts 10.0.2.2, ...
//! ```
//!
//! Needs root (CI runs as root). Names are prefixed per lab so labs of parallel
//! tests never collide; interface names stay within Linux's 15 characters.

use std::process::Command as StdCommand;
use std::sync::atomic::{AtomicU32, Ordering};

/// How a router translates addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    /// `MASQUERADE`: one public port per private socket whatever the destination
    /// (endpoint-independent mapping, so STUN-learned addresses work).
    EndpointIndependent,
    /// `MASQUERADE --random-fully`: a fresh public port per destination
    /// (symmetric), so only TURN gets through.
    Symmetric,
}

/// A network namespace of a lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ns {
    /// Its name (for `ip netns exec`).
    pub name: String,
}

/// A lab: namespaces and links, removed on drop.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    links: u32,
}

static LABS: AtomicU32 = AtomicU32::new(0);

/// Runs a command, panicking with its output when it fails.
pub fn run(program: &str, args: &[&str]) {
    let output = StdCommand::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Lab {
    /// Whether labs can be built here (root, `ip`, `iptables`).
    pub fn available() -> Result<(), String> {
        let root = StdCommand::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
        if !root {
            return Err("network labs need root".into());
        }
        for tool in ["ip", "iptables"] {
            if StdCommand::new(tool).arg("-V").output().is_err() {
                return Err(format!("{tool} is not installed"));
            }
        }
        Ok(())
    }

    /// An empty lab.
    pub fn new() -> Lab {
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("pl{}x{n}", std::process::id() % 100_000);
        Lab { prefix, namespaces: Vec::new(), links: 0 }
    }

    /// Adds a namespace with loopback up.
    pub fn namespace(&mut self, name: &str) -> Ns {
        let full = format!("{}-{name}", self.prefix);
        let _ = StdCommand::new("ip").args(["netns", "del", &full]).output();
        run("ip", &["netns", "add", &full]);
        self.namespaces.push(full.clone());
        run("ip", &["-n", &full, "link", "set", "lo", "up"]);
        Ns { name: full }
    }

    /// Adds a bridge `name` in `ns` with `address` (CIDR), for a segment with
    /// several members.
    pub fn bridge(&mut self, ns: &Ns, name: &str, address: &str) {
        run("ip", &["-n", &ns.name, "link", "add", name, "type", "bridge"]);
        run("ip", &["-n", &ns.name, "addr", "add", address, "dev", name]);
        run("ip", &["-n", &ns.name, "link", "set", name, "up"]);
    }

    /// Connects `host` to the bridge `bridge` in `hub` with a veth pair; gives the
    /// host end `address` (CIDR). Returns the host's interface name.
    pub fn attach(&mut self, host: &Ns, address: &str, hub: &Ns, bridge: &str) -> String {
        self.links += 1;
        let (inside, outside) = (format!("v{}a", self.links), format!("v{}b", self.links));
        let (inside_tmp, outside_tmp) = (format!("{}{inside}", self.short()), format!("{}{outside}", self.short()));
        run("ip", &["link", "add", &inside_tmp, "type", "veth", "peer", "name", &outside_tmp]);
        run("ip", &["link", "set", &inside_tmp, "netns", &host.name]);
        run("ip", &["link", "set", &outside_tmp, "netns", &hub.name]);
        run("ip", &["-n", &host.name, "link", "set", &inside_tmp, "name", &inside]);
        run("ip", &["-n", &hub.name, "link", "set", &outside_tmp, "name", &outside]);
        run("ip", &["-n", &host.name, "addr", "add", address, "dev", &inside]);
        run("ip", &["-n", &host.name, "link", "set", &inside, "up"]);
        run("ip", &["-n", &hub.name, "link", "set", &outside, "master", bridge]);
        run("ip", &["-n", &hub.name, "link", "set", &outside, "up"]);
        inside
    }

    /// A short prefix for temporary interface names in the root namespace.
    fn short(&self) -> String {
        self.prefix.chars().rev().take(6).collect::<String>().chars().rev().collect()
    }

    /// Sends `ns`'s traffic for other networks to `gateway`.
    pub fn default_route(&mut self, ns: &Ns, gateway: &str) {
        run("ip", &["-n", &ns.name, "route", "add", "default", "via", gateway]);
    }

    /// Makes `router` forward, translating what leaves through `wan` as `kind`.
    pub fn nat(&mut self, router: &Ns, wan: &str, kind: NatKind) {
        run("ip", &["netns", "exec", &router.name, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let mut rule = vec![
            "netns",
            "exec",
            &router.name,
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            wan,
            "-j",
            "MASQUERADE",
        ];
        if kind == NatKind::Symmetric {
            rule.push("--random-fully");
        }
        run("ip", &rule);
        // A home router's stateful firewall: from the WAN only replies get in.
        // Without it, a hole-punching packet that arrives before the router
        // has a mapping for it is delivered to the router itself, and the
        // conntrack entry that creates then clashes with the mapping the LAN
        // host's own packet needs, so MASQUERADE picks another port and hole
        // punching never succeeds. Dropping the packet discards its unconfirmed
        // entry, as on real routers.
        for chain in ["INPUT", "FORWARD"] {
            let ns = &router.name;
            let established = ["netns", "exec", ns, "iptables", "-A", chain, "-i", wan, "-m", "conntrack"];
            run("ip", &[&established[..], &["--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]].concat());
            run("ip", &["netns", "exec", ns, "iptables", "-A", chain, "-i", wan, "-j", "DROP"]);
        }
    }

    /// Drops every UDP packet `router` would forward (ahead of its firewall's rules).
    pub fn block_udp(&mut self, router: &Ns) {
        run("ip", &["netns", "exec", &router.name, "iptables", "-I", "FORWARD", "-p", "udp", "-j", "DROP"]);
    }

    /// Lets UDP through `router` again after [`block_udp`](Self::block_udp).
    pub fn unblock_udp(&mut self, router: &Ns) {
        run("ip", &["netns", "exec", &router.name, "iptables", "-D", "FORWARD", "-p", "udp", "-j", "DROP"]);
    }

    /// Drops each packet `router` forwards with probability `p` (ahead of its
    /// firewall's rules).
    pub fn lose_packets(&mut self, router: &Ns, p: f64) {
        let p = format!("{p}");
        run(
            "ip",
            &[
                "netns",
                "exec",
                &router.name,
                "iptables",
                "-I",
                "FORWARD",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &p,
                "-j",
                "DROP",
            ],
        );
    }

    /// Limits what `host` sends, on every link it has, to `rate` (tc's units,
    /// such as `16mbit`), with a queue of at most 50 ms: like an uplink, so a
    /// transfer takes long enough for a path change to happen under it.
    pub fn limit_upload(&mut self, host: &Ns, rate: &str) {
        for link in links(host) {
            let args = ["-n", &host.name, "qdisc", "replace", "dev", &link, "root", "tbf", "rate", rate];
            run("tc", &[&args[..], &["burst", "32kb", "latency", "50ms"]].concat());
        }
    }

    /// A command that runs `program` inside `ns`.
    pub fn command(&self, ns: &Ns, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("ip");
        command.args(["netns", "exec", &ns.name]).arg(program).kill_on_drop(true);
        command
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = StdCommand::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// The names of `host`'s links other than loopback.
fn links(host: &Ns) -> Vec<String> {
    let out = StdCommand::new("ip").args(["-n", &host.name, "-o", "link", "show"]).output().expect("ip link");
    // Lines read "2: v3a@if4: <...>".
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n != "lo")
        .collect()
}

/// The standard topology of the NAT tests.
#[derive(Debug)]
pub struct TwoLans {
    /// The lab (drop it to tear everything down).
    pub lab: Lab,
    /// The internet segment's namespace, where servers run (198.51.100.10).
    pub internet: Ns,
    /// The first NAT router (public 198.51.100.2, LAN 10.0.1.1).
    pub nat1: Ns,
    /// The second NAT router (public 198.51.100.3, LAN 10.0.2.1).
    pub nat2: Ns,
}

/// The address of the internet namespace's servers.
pub const INTERNET_SERVER_IP: &str = "198.51.100.10";

impl TwoLans {
    /// Builds the internet segment and two NATed LANs of `kind1` and `kind2`.
    pub fn build(kind1: NatKind, kind2: NatKind) -> TwoLans {
        let mut lab = Lab::new();
        let internet = lab.namespace("inet");
        lab.bridge(&internet, "br0", &format!("{INTERNET_SERVER_IP}/24"));
        let router = |lab: &mut Lab, name: &str, public: &str, lan: &str, kind: NatKind| {
            let ns = lab.namespace(name);
            let wan = lab.attach(&ns, &format!("{public}/24"), &internet, "br0");
            lab.bridge(&ns, "lan", &format!("{lan}/24"));
            lab.nat(&ns, &wan, kind);
            ns
        };
        let nat1 = router(&mut lab, "nat1", "198.51.100.2", "10.0.1.1", kind1);
        let nat2 = router(&mut lab, "nat2", "198.51.100.3", "10.0.2.1", kind2);
        TwoLans { lab, internet, nat1, nat2 }
    }

    /// Adds a host `name` on LAN 1 or 2 with the last octet `host` (2 to 254).
    pub fn host(&mut self, name: &str, lan: u8, host: u8) -> Ns {
        let ns = self.lab.namespace(name);
        self.plug(&ns, lan, host);
        ns
    }

    /// Moves `host` to LAN `lan` with the last octet `octet`, like a laptop
    /// that leaves one network and joins another: its old link goes away (and
    /// with it its address and routes), then the new one comes up.
    pub fn move_host(&mut self, host: &Ns, lan: u8, octet: u8) {
        // Every link but loopback goes.
        for name in links(host) {
            run("ip", &["-n", &host.name, "link", "del", &name]);
        }
        self.plug(host, lan, octet);
    }

    /// Connects `host` to LAN `lan` as `10.0.<lan>.<octet>` with its router as
    /// the default gateway.
    fn plug(&mut self, host: &Ns, lan: u8, octet: u8) {
        let router = if lan == 1 { self.nat1.clone() } else { self.nat2.clone() };
        self.lab.attach(host, &format!("10.0.{lan}.{octet}/24"), &router, "lan");
        self.lab.default_route(host, &format!("10.0.{lan}.1"));
    }
}
