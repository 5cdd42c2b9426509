//! The NAT matrix: devices on real (namespaced) LANs behind real NATs connect
//! through the real signaling server, end on the class the network allows, and
//! sync a group. Scenario letters follow the issue: a) same LAN, b) both NATs
//! endpoint-independent, c) both symmetric, d) UDP blocked at one NAT.

use std::time::Duration;

use peers_tests::nat::Scenario;
use peers_tests::netns::NatKind;

const GROUP: &str = "notes";
const LIMIT: Duration = Duration::from_secs(30);

/// Writes on device 0 and checks device 1 gets it.
async fn syncs(scenario: &Scenario) {
    scenario.daemons[0].ok(&["put", GROUP, "hello", "across the lab"]).await;
    assert!(scenario.wait_value(1, GROUP, "hello", "across the lab", LIMIT).await, "the change never arrived");
}

fn active(class: &'static str) -> impl Fn(&str) -> bool {
    move |line: &str| line.contains(class) && line.contains(" yes ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_lan_connects_over_a_local_socket() {
    let mut s = Scenario::start((NatKind::EndpointIndependent, NatKind::EndpointIndependent)).await;
    let a = s.device("a", 1, 2).await;
    let b = s.device("b", 1, 3).await;
    s.trust_all(GROUP, &[vec!["http://10.0.1.2:7700".into()], vec!["http://10.0.1.3:7700".into()]]).await;
    s.run(a, GROUP, &["--listen", "10.0.1.2:7700"]);
    s.run(b, GROUP, &["--listen", "10.0.1.3:7700"]);
    let (took, status) = s.wait_status(b, LIMIT, active("local")).await.unwrap_or_else(|status| panic!("{status}"));
    eprintln!("a) local in {took:?}\n{status}");
    syncs(&s).await;
}

/// Two devices on different LANs behind NATs of `kinds`, run with no direct
/// listener; waits for `class` on device 1 and checks the group syncs.
async fn across_nats(letter: &str, kinds: (NatKind, NatKind), class: &'static str) {
    let mut s = Scenario::start(kinds).await;
    let a = s.device("a", 1, 2).await;
    let b = s.device("b", 2, 2).await;
    s.trust_all(GROUP, &[vec![], vec![]]).await;
    s.run(a, GROUP, &[]);
    s.run(b, GROUP, &[]);
    let (took, status) =
        s.wait_status(b, LIMIT, active(class)).await.unwrap_or_else(|status| panic!("no {class}:\n{status}"));
    eprintln!("{letter}) {class} in {took:?}\n{status}");
    syncs(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_endpoint_independent_nats_connect_directly_over_webrtc() {
    across_nats("b", (NatKind::EndpointIndependent, NatKind::EndpointIndependent), "webrtc-direct").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_symmetric_nats_connect_over_turn() {
    across_nats("c", (NatKind::Symmetric, NatKind::Symmetric), "webrtc-relayed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_udp_blocked_falls_back_to_the_servers_relay() {
    let mut s = Scenario::start((NatKind::EndpointIndependent, NatKind::EndpointIndependent)).await;
    let a = s.device("a", 1, 2).await;
    let b = s.device("b", 2, 2).await;
    let nat1 = s.lab.nat1.clone();
    s.lab.lab.block_udp(&nat1);
    s.trust_all(GROUP, &[vec![], vec![]]).await;
    s.run(a, GROUP, &[]);
    s.run(b, GROUP, &[]);
    let (took, status) = s
        .wait_status(b, Duration::from_secs(15), active("server-relay"))
        .await
        .unwrap_or_else(|status| panic!("no relay within 15 s:\n{status}"));
    eprintln!("d) server-relay in {took:?}\n{status}");
    syncs(&s).await;
}
