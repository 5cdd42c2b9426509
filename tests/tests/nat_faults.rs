//! Faults across the NAT lab: the signaling deployment loses an instance; a
//! WebRTC path dies silently mid-session (failover within 5 s); a member drops
//! off the network without a word (the others keep syncing); and a restart
//! storm of the signaling server with a device cut off and another killed.
//! (Faults on a single link, a dropped transport and corrupted bytes, are in
//! `fault_transport.rs`; a signaling server killed with messages queued is in
//! peers-signaling's `signaling_restart.rs`.)

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use peers_device::GroupId;
use peers_device::sync::{EngineOptions, SqliteSyncEngine};
use peers_tests::nat::{Scenario, SignalingSetup, workspace_binary};
use peers_tests::netns::NatKind;
use tokio::sync::watch;

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

/// Active connections in a `peers status` table (a line with a class and "yes").
fn active_links(status: &str) -> usize {
    let classes = ["local", "webrtc-direct", "webrtc-relayed", "internet", "server-relay"];
    status.lines().filter(|l| l.contains(" yes ") && classes.iter().any(|c| l.contains(c))).count()
}

/// Polls device `index`'s status until it has `links` active connections;
/// returns how long that took, or the last status.
async fn wait_mesh(s: &Scenario, index: usize, links: usize, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < limit {
        let out = s.daemons[index].cli(&["status"]).await;
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if active_links(&last) >= links {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_cut_on_a_webrtc_link_moves_traffic_to_the_next_path_within_5_s() {
    let kinds = (NatKind::EndpointIndependent, NatKind::EndpointIndependent);
    let mut s = Scenario::start(kinds).await;
    let a = s.device("a", 1, 2).await;
    let b = s.device("b", 2, 2).await;
    s.trust_all(GROUP, &[vec![], vec![]]).await;
    s.run(a, GROUP, &[]);
    s.run(b, GROUP, &[]);
    s.wait_status(b, LIMIT, direct).await.unwrap_or_else(|status| panic!("no direct connection:\n{status}"));
    s.daemons[a].ok(&["put", GROUP, "before", "the cut"]).await;
    assert!(s.wait_value(b, GROUP, "before", "the cut", LIMIT).await, "no sync before the cut");

    // UDP dies at a's NAT without a word to anyone (TURN is UDP too: the next
    // path is the signaling server's relay, over TCP).
    let nat1 = s.lab.nat1.clone();
    s.lab.lab.block_udp(&nat1);
    let cut = Instant::now();
    s.daemons[a].ok(&["put", GROUP, "at", "the cut"]).await;
    let arrived = s.wait_value(b, GROUP, "at", "the cut", Duration::from_secs(5).saturating_sub(cut.elapsed())).await;
    let took = cut.elapsed();
    let relayed = |l: &str| l.contains("server-relay") && l.contains(" yes ");
    let (_, status) = s.wait_status(b, LIMIT, relayed).await.unwrap_or_else(|status| panic!("no relay:\n{status}"));
    assert!(arrived, "the value written at the cut did not arrive within 5 s\n{status}");
    let (_, status_a) = s.wait_status(a, LIMIT, relayed).await.unwrap_or_else(|status| panic!("no relay:\n{status}"));
    assert!(status_a.contains("went silent"), "a's status does not say why it left WebRTC:\n{status_a}");
    eprintln!("failover: the value written at the cut arrived after {took:?}\n{status}");
}

/// Devices a and c on LAN 1 and b on LAN 2 (full-cone NATs), trusting each other in
/// [`GROUP`], running, and connected to each other.
async fn three_in_a_mesh(setup: SignalingSetup) -> (Scenario, [usize; 3]) {
    let kinds = (NatKind::EndpointIndependent, NatKind::EndpointIndependent);
    let mut s = Scenario::start_with(kinds, setup).await;
    let devices = [s.device("a", 1, 2).await, s.device("b", 2, 2).await, s.device("c", 1, 3).await];
    s.trust_all(GROUP, &[vec![], vec![], vec![]]).await;
    for device in devices {
        s.run(device, GROUP, &[]);
    }
    for device in devices {
        wait_mesh(&s, device, 2, LIMIT).await.unwrap_or_else(|status| panic!("no full mesh:\n{status}"));
    }
    (s, devices)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_drops_off_silently_does_not_stall_the_other_two() {
    let (s, [a, b, c]) = three_in_a_mesh(SignalingSetup::Single).await;
    // c's network goes, with no close to anyone; a writes 10 values a second.
    s.isolate(c, true);
    let start = Instant::now();
    let writes = 60u32;
    let writer = async {
        for i in 0..writes {
            s.daemons[a].ok(&["put", GROUP, "tick", &i.to_string()]).await;
            tokio::time::sleep_until((start + Duration::from_millis(100) * (i + 1)).into()).await;
        }
    };
    // b's view: when each new value showed up.
    let reader = async {
        let (mut seen, mut changes) = (None::<u32>, vec![start]);
        let deadline = start + Duration::from_millis(100) * writes + Duration::from_secs(5);
        while Instant::now() < deadline && seen != Some(writes - 1) {
            let out = s.daemons[b].cli(&["get", GROUP, "tick"]).await;
            let value = String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().ok();
            if value.is_some() && value != seen {
                seen = value;
                changes.push(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (seen, changes)
    };
    let ((), (seen, changes)) = tokio::join!(writer, reader);
    let gap = changes.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    assert_eq!(seen, Some(writes - 1), "b never got a's last value");
    assert!(gap <= Duration::from_secs(1), "b saw no new value for {gap:?} while c was silent");
    eprintln!("silent member: longest gap at b {gap:?} over {} values seen", changes.len() - 1);
}

/// Writes `prefix-NNNN` keys on a device's daemon, one every 100 ms, until
/// `stop`, skipping slots while `paused` (its daemon is down: what `peers put`
/// does then is the CLI's business, not this test's); returns the keys whose
/// `peers put` succeeded.
async fn write_steadily(
    data: PathBuf,
    prefix: String,
    stop: watch::Receiver<bool>,
    paused: Arc<AtomicBool>,
) -> Vec<String> {
    let start = Instant::now();
    let mut accepted = Vec::new();
    for i in 0u32.. {
        if *stop.borrow() {
            break;
        }
        if paused.load(Ordering::SeqCst) {
            tokio::time::sleep_until((start + Duration::from_millis(100) * (i + 1)).into()).await;
            continue;
        }
        let key = format!("{prefix}-{i:04}");
        let out = tokio::process::Command::new(workspace_binary("peers"))
            .arg("--data-dir")
            .arg(&data)
            .args(["put", GROUP, &key, &i.to_string()])
            .output()
            .await
            .expect("peers put");
        if out.status.success() {
            accepted.push(key);
        }
        tokio::time::sleep_until((start + Duration::from_millis(100) * (i + 1)).into()).await;
    }
    accepted
}

/// Asserts that every device in `devices` shows a registration with the
/// signaling server made after `restarted`, within 5 s of it.
async fn registered_again(s: &Scenario, devices: &[usize], restarted: Instant, round: usize) {
    for &device in devices {
        loop {
            let out = s.daemons[device].cli(&["status"]).await;
            let status = String::from_utf8_lossy(&out.stdout).into_owned();
            // "signaling <url> registered for <N>s": a registration at most as old as the restart.
            let fresh = status.lines().any(|l| {
                l.starts_with("signaling ")
                    && l.split(" registered for ")
                        .nth(1)
                        .and_then(|rest| rest.split('s').next())
                        .and_then(|secs| secs.parse::<u64>().ok())
                        .is_some_and(|secs| secs <= restarted.elapsed().as_secs())
            });
            if fresh {
                break;
            }
            assert!(
                restarted.elapsed() < Duration::from_secs(5),
                "restart {round}: device {device} not registered again within 5 s\n{status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_storm_loses_nothing_and_everything_reconnects_in_seconds() {
    let (mut s, [a, b, c]) = three_in_a_mesh(SignalingSetup::Sqlite).await;
    let names = ["a", "b", "c"];
    let (stop, stopped) = watch::channel(false);
    let paused: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::default()).collect();
    let writers: Vec<_> = [a, b, c]
        .iter()
        .map(|&d| {
            let (data, prefix) = (s.daemons[d].data.clone(), names[d].to_owned());
            tokio::spawn(write_steadily(data, prefix, stopped.clone(), paused[d].clone()))
        })
        .collect();

    // The faults, on one clock: the server killed (SIGKILL) and restarted at
    // once 5 times in 48 s; c cut off the network for 20 s; b killed and
    // restarted.
    let start = Instant::now();
    let at = |secs: u64| tokio::time::sleep_until((start + Duration::from_secs(secs)).into());
    let mut round = 0;
    let mut restart = async |s: &mut Scenario, online: &[usize]| {
        round += 1;
        s.kill_signaling(0).await;
        s.restart_signaling(0).await;
        registered_again(s, online, Instant::now(), round).await;
    };
    at(3).await;
    restart(&mut s, &[a, b, c]).await;
    at(8).await;
    s.isolate(c, true);
    at(15).await;
    restart(&mut s, &[a, b]).await;
    at(20).await;
    paused[b].store(true, Ordering::SeqCst);
    s.daemons[b].kill().await;
    at(21).await;
    s.run(b, GROUP, &[]);
    s.wait_status(b, LIMIT, |l| l.starts_with("device ")).await.unwrap_or_else(|e| panic!("b did not start: {e}"));
    paused[b].store(false, Ordering::SeqCst);
    at(27).await;
    restart(&mut s, &[a, b]).await;
    at(28).await;
    s.isolate(c, false);
    at(39).await;
    restart(&mut s, &[a, b, c]).await;
    at(51).await;
    restart(&mut s, &[a, b, c]).await;
    let last_fault = Instant::now();

    // The full mesh within 10 s of the last fault.
    for device in [a, b, c] {
        let left = Duration::from_secs(10).saturating_sub(last_fault.elapsed());
        wait_mesh(&s, device, 2, left).await.unwrap_or_else(|status| panic!("no full mesh 10 s after:\n{status}"));
    }
    eprintln!("storm: full mesh {:?} after the last fault", last_fault.elapsed());
    let _ = stop.send(true);
    let mut accepted = Vec::new();
    for writer in writers {
        accepted.push(writer.await.expect("writer"));
    }
    let total: usize = accepted.iter().map(Vec::len).sum();
    assert!(total > 3 * 400, "only {total} writes were accepted");

    // Every device ends with every accepted value.
    for keys in &accepted {
        let last = keys.last().expect("a writer's keys");
        let value = last.rsplit('-').next().and_then(|n| n.parse::<u32>().ok()).expect("counter").to_string();
        for device in [a, b, c] {
            assert!(s.wait_value(device, GROUP, last, &value, LIMIT).await, "device {device} never got {last}");
        }
    }
    let mut ids = Vec::new();
    for device in [a, b, c] {
        let info = s.daemons[device].ok(&["info"]).await;
        let id = info.lines().find_map(|l| l.strip_prefix("device ")).expect("device id").trim().to_owned();
        ids.push(id.parse::<peers_sdk::DeviceId>().expect("device id"));
        s.daemons[device].kill().await;
    }
    for device in [a, b, c] {
        let path = s.daemons[device].data.join("groups").join(format!("{GROUP}.sqlite3"));
        let group = GroupId::new(GROUP).expect("group");
        let engine = SqliteSyncEngine::open(path, group, ids[device], EngineOptions::default()).await.expect("open");
        let held: HashMap<String, Vec<u8>> = engine.snapshot().await.expect("snapshot").into_iter().collect();
        for key in accepted.iter().flatten() {
            let counter = key.rsplit('-').next().and_then(|n| n.parse::<u32>().ok()).expect("counter").to_string();
            assert_eq!(held.get(key).map(Vec::as_slice), Some(counter.as_bytes()), "device {device} lacks {key}");
        }
    }
    eprintln!("storm: {total} values on every device");
}
