//! Faults across the NAT lab: the signaling deployment loses an instance.
//! (Faults on a single link, a dropped transport and corrupted bytes, are in
//! `fault_transport.rs`; a signaling server killed with messages queued is in
//! peers-signaling's `signaling_restart.rs`.)

use std::time::{Duration, Instant};

use peers_tests::nat::{Scenario, SignalingSetup};
use peers_tests::netns::NatKind;

const GROUP: &str = "notes";
const LIMIT: Duration = Duration::from_secs(30);

fn direct(line: &str) -> bool {
    line.contains("webrtc-direct") && line.contains(" yes ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_signaling_instance_moves_devices_to_the_other_and_signaling_continues() {
    let kinds = (NatKind::EndpointIndependent, NatKind::EndpointIndependent);
    let mut s = Scenario::start_with(kinds, SignalingSetup::RedisPair).await;
    let a = s.device("a", 1, 2).await;
    let b = s.device("b", 2, 2).await;
    s.trust_all(GROUP, &[vec![], vec![]]).await;
    s.run(a, GROUP, &[]);
    s.run(b, GROUP, &[]);
    s.wait_status(b, LIMIT, direct).await.unwrap_or_else(|status| panic!("no direct connection:\n{status}"));

    // Both devices are registered on the first instance; it dies.
    s.kill_signaling(0).await;
    let killed = Instant::now();
    // b restarts: it can only find a again through the second instance, which
    // must relay its WebRTC offer, answer and candidates to a (who moved there).
    s.daemons[b].kill().await;
    s.daemons[a].ok(&["put", GROUP, "after", "the first instance died"]).await;
    s.run(b, GROUP, &[]);
    let (took, status) =
        s.wait_status(b, LIMIT, direct).await.unwrap_or_else(|status| panic!("no reconnection:\n{status}"));
    assert!(
        s.wait_value(b, GROUP, "after", "the first instance died", LIMIT).await,
        "the change never arrived after the failover"
    );
    eprintln!("direct again {took:?} after b restarted ({:?} after the kill)\n{status}", killed.elapsed());
}
