//! The network lab the NAT tests build on behaves like the NATs it models:
//! endpoint-independent mapping keeps one public port for every destination,
//! symmetric mapping does not, and a router can block UDP.

use std::process::Stdio;

use peers_tests::netns::{INTERNET_SERVER_IP, Lab, NatKind, TwoLans};
use tokio::io::{AsyncBufReadExt, BufReader};

const PROBE: &str = env!("CARGO_BIN_EXE_udp_probe");

/// Asks both echo servers from `host`; returns the addresses they saw (or "timeout").
async fn ask(lab: &TwoLans, host: &peers_tests::netns::Ns) -> Vec<String> {
    let servers = [format!("{INTERNET_SERVER_IP}:4001"), format!("{INTERNET_SERVER_IP}:4002")];
    let output = lab.lab.command(host, PROBE).arg("ask").args(&servers).output().await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().map(|l| l.split(' ').nth(1).unwrap_or("").to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_map_like_the_kinds_they_model() {
    Lab::available().expect("the NAT tests run as root with iproute2 and iptables (.ci/run installs them)");
    let mut lab = TwoLans::build(NatKind::EndpointIndependent, NatKind::Symmetric);
    let a = lab.host("a", 1, 2);
    let b = lab.host("b", 2, 2);
    let mut echo = lab
        .lab
        .command(&lab.internet, PROBE)
        .args(["echo", &format!("{INTERNET_SERVER_IP}:4001"), &format!("{INTERNET_SERVER_IP}:4002")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = BufReader::new(echo.stdout.take().unwrap()).lines();
    assert_eq!(ready.next_line().await.unwrap().as_deref(), Some("ready"));

    // Endpoint-independent: the same public address and port for both servers.
    let seen = ask(&lab, &a).await;
    assert!(seen.iter().all(|s| s.starts_with("198.51.100.2:")), "{seen:?}");
    assert_eq!(seen[0], seen[1], "endpoint-independent mapping");

    // Symmetric: the same public address, another port per destination.
    let seen = ask(&lab, &b).await;
    assert!(seen.iter().all(|s| s.starts_with("198.51.100.3:")), "{seen:?}");
    assert_ne!(seen[0], seen[1], "symmetric mapping");

    // UDP blocked at the first router.
    let nat1 = lab.nat1.clone();
    lab.lab.block_udp(&nat1);
    assert_eq!(ask(&lab, &a).await, vec!["timeout", "timeout"]);
    echo.kill().await.unwrap();
}
