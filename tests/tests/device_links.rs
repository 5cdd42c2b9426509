//! The manager's connection rules over real transports on loopback: traffic
//! moves to a better class as it comes up (signaling-server relay, then WebRTC,
//! then a local socket.io listener) with every call made meanwhile answered;
//! eviction at the connection limit; a peer that stops answering pings is dropped
//! after the configured failures; a device never keeps a connection to itself.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use peers_device::{ConnectionClass, ManagerEvent};
use peers_tests::device::{ECHO, FreezableDevice, TestDevice, wait_until};
use peers_tests::signaling::signaling_server;

/// Callers issuing echo calls to one peer, several at once, over whichever
/// connection the manager says is active at the time of each call.
struct Callers {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<BTreeSet<String>>>,
}

impl Callers {
    fn start(caller: &TestDevice, peer: peers_sdk::DeviceId, concurrency: u64) -> Callers {
        let (stop, answered) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let tasks = (0..concurrency)
            .map(|worker| {
                let (manager, stop, answered) = (caller.manager.clone(), stop.clone(), answered.clone());
                tokio::spawn(async move {
                    let mut transports = BTreeSet::new();
                    let mut n = worker << 32;
                    while !stop.load(Ordering::Relaxed) {
                        let connection = manager.connection(&peer).expect("a connection at all times");
                        let active = format!("{:?}", connection.socket_info().transport);
                        let echoed: u64 = connection
                            .emit(ECHO, &n)
                            .await
                            .unwrap_or_else(|e| panic!("call {n} over {active} was lost: {e}"));
                        assert_eq!(echoed, n, "a call got another call's answer");
                        transports.insert(active);
                        answered.fetch_add(1, Ordering::Relaxed);
                        n += 1;
                    }
                    transports
                })
            })
            .collect();
        Callers { stop, answered, tasks }
    }

    fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Stops the callers; the transports their calls used.
    async fn finish(self) -> BTreeSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut used = BTreeSet::new();
        for task in self.tasks {
            used.extend(task.await.expect("a caller failed"));
        }
        used
    }
}

/// Waits until both sides use a connection of `class`, while `callers` keep
/// getting answers, then waits for some more answers on it.
async fn wait_both_on(a: &TestDevice, b: &TestDevice, class: ConnectionClass, callers: &[&Callers]) {
    wait_until(&format!("both sides on {class}"), || {
        a.active_class(&b.id()) == Some(class) && b.active_class(&a.id()) == Some(class)
    })
    .await;
    let before: Vec<u64> = callers.iter().map(|c| c.answered()).collect();
    wait_until(&format!("calls answered on {class}"), || {
        callers.iter().zip(&before).all(|(c, before)| c.answered() >= before + 20)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_ends_on_the_better_class_and_every_call_made_during_the_switches_completes() {
    let server = signaling_server().await;
    let url = server.url().unwrap();
    let (mut a, mut b) = (TestDevice::new("a"), TestDevice::new("b"));
    a.go_online(&url).await;
    b.go_online(&url).await;

    // b answers signals and relay requests only from devices it trusts.
    b.manager.keep_connected(a.id());
    // The signaling server's relay first: the class that always works.
    a.dial_through_relay();
    a.manager.keep_connected(b.id());
    wait_until("a relayed connection", || {
        a.manager.connection(&b.id()).is_some() && b.manager.connection(&a.id()).is_some()
    })
    .await;
    let (from_a, from_b) = (Callers::start(&a, b.id(), 4), Callers::start(&b, a.id(), 4));
    wait_both_on(&a, &b, ConnectionClass::ServerRelay, &[&from_a, &from_b]).await;
    // Then WebRTC, signaled through the server, comes up and takes over.
    a.dial_webrtc();
    wait_both_on(&a, &b, ConnectionClass::WebRtcDirect, &[&from_a, &from_b]).await;
    // Then b starts listening on the LAN (loopback here): the local class wins.
    let url_b = b.listen().await;
    a.keep_dialing(b.id(), &url_b);
    wait_both_on(&a, &b, ConnectionClass::Local, &[&from_a, &from_b]).await;

    let (used_a, used_b) = (from_a.finish().await, from_b.finish().await);
    let every: BTreeSet<String> = ["Relay", "WebRtc", "SocketIo"].map(String::from).into();
    assert_eq!(used_a, every, "a's calls did not span every connection");
    assert_eq!(used_b, every, "b's calls did not span every connection");
    // Each side recorded both upgrades, and the superseded connections closed.
    for (device, peer) in [(&a, &b), (&b, &a)] {
        let switches: Vec<(ConnectionClass, ConnectionClass)> = device
            .history()
            .into_iter()
            .filter_map(|e| match e {
                ManagerEvent::Switched { from, to, .. } => Some((from, to)),
                _ => None,
            })
            .collect();
        use ConnectionClass::*;
        assert_eq!(switches, [(ServerRelay, WebRtcDirect), (WebRtcDirect, Local)]);
        wait_until("the superseded connections to close", || {
            device.manager.status().connections.iter().filter(|c| c.device == peer.id()).count() == 1
        })
        .await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_the_least_preferred_connection_is_evicted() {
    let server = signaling_server().await;
    let url = server.url().unwrap();
    let mut hub = TestDevice::with("hub", |c| c.max_connections = 3);
    hub.go_online(&url).await;
    let hub_url = hub.listen().await;
    let mut peers = Vec::new();
    for name in ["relayed", "webrtc", "local", "newcomer", "late-relayed"] {
        let mut peer = TestDevice::new(name);
        peer.go_online(&url).await;
        peers.push(peer);
    }
    let [relayed, webrtc, local, newcomer, late] = &peers[..] else { unreachable!() };
    // Devices answer signals and relay requests only from devices they trust
    // (none of them has a dialer: wanting a device does not dial it here).
    for peer in &peers {
        hub.manager.keep_connected(peer.id());
        peer.manager.keep_connected(hub.id());
    }
    // And so does the server, once the hub's allow list names them.
    hub.sync_allow().await;

    // Three connections, one of each class: the limit.
    assert_eq!(relayed.relay_once(hub.id()).await.unwrap(), hub.id());
    assert_eq!(webrtc.webrtc_once(hub.id()).await.unwrap(), hub.id());
    assert_eq!(local.dial_once(&hub_url, Some(hub.id())).await.unwrap(), hub.id());
    wait_until("the hub to hold three connections", || hub.manager.status().connections.len() == 3).await;
    assert_eq!(hub.active_class(&relayed.id()), Some(ConnectionClass::ServerRelay));
    assert_eq!(hub.active_class(&webrtc.id()), Some(ConnectionClass::WebRtcDirect));

    // A fourth device arrives on a local connection: the relayed one, the least
    // preferred, is evicted, and its device sees why.
    let mut closed = relayed.manager.events();
    assert_eq!(newcomer.dial_once(&hub_url, Some(hub.id())).await.unwrap(), hub.id());
    wait_until("the relayed device to be evicted", || hub.manager.connection(&relayed.id()).is_none()).await;
    let held: BTreeSet<_> = hub.manager.status().connections.iter().map(|c| c.device).collect();
    assert_eq!(held, [webrtc.id(), local.id(), newcomer.id()].into());
    assert!(
        hub.history().contains(&ManagerEvent::Evicted { device: relayed.id(), class: ConnectionClass::ServerRelay })
    );
    let reason = tokio::time::timeout(peers_tests::device::WAIT, async {
        loop {
            if let Ok(ManagerEvent::Closed { reason, .. }) = closed.recv().await {
                return reason;
            }
        }
    })
    .await
    .expect("the evicted device saw its connection close");
    assert!(reason.contains("evicted"), "{reason}");

    // A newcomer worse than every connection held is refused.
    // (Its own handshake may finish before the hub refuses it; the hub closes it then.)
    let _ = late.relay_once(hub.id()).await;
    wait_until("the hub to record the refusal", || {
        hub.history().contains(&ManagerEvent::Evicted { device: late.id(), class: ConnectionClass::ServerRelay })
    })
    .await;
    wait_until("the refused device to see its connection closed", || late.manager.connection(&hub.id()).is_none())
        .await;
    let held_after: BTreeSet<_> = hub.manager.status().connections.iter().map(|c| c.device).collect();
    assert_eq!(held_after, held);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_pings_is_dropped_after_the_configured_failures() {
    const FAILURES: u32 = 3;
    let (interval, timeout) = (Duration::from_millis(100), Duration::from_millis(600));
    let near = TestDevice::with("near", |c| {
        c.health.ping_interval = interval;
        c.health.ping_timeout = timeout;
        c.health.max_failures = FAILURES;
        // The error rate then counts failures among the last three pings.
        c.health.window = FAILURES as usize;
    });
    let far = FreezableDevice::start("far").await;
    near.dial_once(&far.url, Some(far.id())).await.unwrap();
    wait_until("pings to be answered", || {
        near.manager.status().active(&far.id()).is_some_and(|c| c.latency.is_some() && c.error_rate == 0.0)
    })
    .await;

    // The far device stops running (its socket stays open, as a stopped process's does).
    far.freeze().await;
    let frozen_at = Instant::now();
    let (mut two_failed_seen, mut all_failed_since) = (false, None);
    wait_until("the silent peer to be dropped", || match near.manager.status().active(&far.id()) {
        Some(link) => {
            let failed = (link.error_rate * f64::from(FAILURES)).round() as u32;
            two_failed_seen |= failed == FAILURES - 1;
            if failed == FAILURES {
                all_failed_since.get_or_insert_with(Instant::now);
            }
            false
        }
        None => true,
    })
    .await;
    let (elapsed, lingered) = (frozen_at.elapsed(), all_failed_since.map(|at| at.elapsed()));
    far.thaw();

    // Two failures were tolerated; the third dropped it, before a fourth ping could
    // have failed; each failure took a ping timeout.
    assert!(two_failed_seen, "never seen connected with {} failed pings", FAILURES - 1);
    // (A fourth ping would fail a whole ping cycle later; closing takes a moment.)
    let cycle = interval + timeout;
    assert!(lingered.is_none_or(|l| l < cycle / 2), "kept {lingered:?} after {FAILURES} failures");
    assert!(elapsed >= timeout * FAILURES, "dropped after {elapsed:?}, before {FAILURES} ping timeouts");
    let reason = near.history().into_iter().find_map(|e| match e {
        ManagerEvent::Closed { device, reason, .. } if device == far.id() => Some(reason),
        _ => None,
    });
    assert!(reason.as_deref().is_some_and(|r| r.contains(&format!("{FAILURES} pings"))), "{reason:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_refuses_a_connection_to_itself() {
    let mut a = TestDevice::new("a");
    let url = a.listen().await;
    // Dialing its own listener, expecting itself, is refused before any socket.
    let expected_self = a.dial_once(&url, Some(a.id())).await;
    assert!(matches!(expected_self, Err(peers_device::Error::SelfConnection)), "{expected_self:?}");
    // Dialing it without expecting anyone: the handshake reveals itself, refused.
    let unexpected = a.dial_once(&url, None).await;
    assert!(unexpected.is_err(), "{unexpected:?}");
    // A clone of this device (same keys, another manager) is refused as well.
    let twin = peers_device::ConnectionManager::new(peers_tests::device::config(&a.keys, |_| {}));
    let socket = peers_transport_socketio::connect(&url, Default::default()).await.unwrap();
    let from_twin = twin.dial(Box::new(socket), None).await;
    assert!(from_twin.is_err(), "{from_twin:?}");
    // And keeping itself connected does nothing: no dial is even tried.
    a.keep_dialing(a.id(), &url);
    // Nothing was kept, and a still accepts other devices on the same listener.
    let other = TestDevice::new("other");
    assert_eq!(other.dial_once(&url, Some(a.id())).await.unwrap(), a.id());
    let held: Vec<_> = a.manager.status().connections.iter().map(|c| c.device).collect();
    assert_eq!(held, [other.id()]);
    let about_itself = a.history().into_iter().find(|e| {
        matches!(e, ManagerEvent::Connected { device, .. } | ManagerEvent::DialFailed { device, .. } if *device == a.id())
    });
    assert_eq!(about_itself, None);
    assert!(twin.status().connections.is_empty());
}
