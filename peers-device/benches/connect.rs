//! P4: time from `WebRtcEndpoint::connect` to a verified `Connection` between two
//! devices on loopback (signaling, ICE, DTLS, SCTP, the data channel, then our
//! handshake and the responder's `Ready`), with the signals going through
//! `peers-signaling` (in process, on 127.0.0.1) and, as the baseline in the same
//! run, through in-memory signaling. Prints median and p95 of the total and of its
//! two parts (channel open, handshake), and the ratio of the medians.
//!
//! `cargo bench -p peers-device --bench connect` (`PEERS_BENCH_RUNS`, default 20).

use std::sync::Arc;
use std::time::{Duration, Instant};

use peers_device::transports::ServerSignaling;
use peers_sdk::{CloseReason, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, TrustLevel};
use peers_signaling::{ServerConfig, SignalingClient, SignalingClientOptions, SignalingServer};
use peers_transport_webrtc::{MemorySignalingHub, Signaling, WebRtcConfig, WebRtcEndpoint};

fn trust_all(_: &DeviceInfo) -> TrustLevel {
    TrustLevel::Trusted
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Sorted samples of one signaling path: channel open, handshake, total.
struct Samples {
    open: Vec<Duration>,
    handshake: Vec<Duration>,
    total: Vec<Duration>,
}

/// `runs` dials from `alice` to `bob` over the given signaling channels.
async fn measure(
    runs: usize,
    alice: &Arc<DeviceKeys>,
    bob: &Arc<DeviceKeys>,
    dialing: Arc<dyn Signaling>,
    accepting: Arc<dyn Signaling>,
) -> Samples {
    let dialer = WebRtcEndpoint::new(dialing, WebRtcConfig::loopback());
    let listener = Arc::new(WebRtcEndpoint::new(accepting, WebRtcConfig::loopback()));
    let mut samples = Samples { open: Vec::new(), handshake: Vec::new(), total: Vec::new() };
    for _ in 0..runs {
        let accept = {
            let (listener, bob) = (listener.clone(), bob.clone());
            tokio::spawn(async move {
                let socket = listener.accept().await.expect("accept");
                Connection::accept(Box::new(socket), ConnectionConfig::new(bob, trust_all)).await.expect("accept")
            })
        };
        let started = Instant::now();
        let socket = dialer.connect(bob.device_id()).await.expect("dial");
        let opened = started.elapsed();
        let connection = Connection::connect(
            Box::new(socket),
            ConnectionConfig::new(alice.clone(), trust_all),
            Some(bob.device_id()),
        )
        .await
        .expect("handshake");
        let total = started.elapsed();
        samples.open.push(opened);
        samples.handshake.push(total - opened);
        samples.total.push(total);
        let accepted = accept.await.expect("task");
        connection.close(CloseReason::normal("bench")).await;
        accepted.closed().await;
    }
    for list in [&mut samples.open, &mut samples.handshake, &mut samples.total] {
        list.sort();
    }
    samples
}

fn main() {
    let runs: usize = std::env::var("PEERS_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let alice = Arc::new(DeviceKeys::generate("alice").expect("keys"));
        let bob = Arc::new(DeviceKeys::generate("bob").expect("keys"));

        let hub = MemorySignalingHub::new();
        let memory =
            measure(runs, &alice, &bob, Arc::new(hub.join(alice.device_id())), Arc::new(hub.join(bob.device_id())))
                .await;

        let server = SignalingServer::bind(ServerConfig::in_memory()).await.expect("signaling server");
        let url = server.url().expect("url");
        let ttl = WebRtcConfig::loopback().connect_timeout;
        let register = |keys: Arc<DeviceKeys>| {
            let url = url.clone();
            async move {
                let client =
                    SignalingClient::connect(&url, &keys, SignalingClientOptions::default()).await.expect("register");
                Arc::new(ServerSignaling::over_client(client, ttl).expect("signals")) as Arc<dyn Signaling>
            }
        };
        let (dialing, accepting) = (register(alice.clone()).await, register(bob.clone()).await);
        let through_server = measure(runs, &alice, &bob, dialing, accepting).await;
        server.shutdown().await;

        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!("P4: connect() to a verified Connection, WebRTC on loopback, {runs} runs each");
        println!();
        println!("| signaling | part | median ms | p95 ms | median / baseline |");
        println!("|---|---|---|---|---|");
        for (name, samples) in [("in memory (baseline)", &memory), ("peers-signaling server", &through_server)] {
            let parts = [
                ("channel open", &samples.open, &memory.open),
                ("handshake + Ready", &samples.handshake, &memory.handshake),
                ("total", &samples.total, &memory.total),
            ];
            for (part, list, base) in parts {
                let median = percentile(list, 0.5);
                println!(
                    "| {name} | {part} | {:.1} | {:.1} | {:.2} |",
                    ms(median),
                    ms(percentile(list, 0.95)),
                    median.as_secs_f64() / percentile(base, 0.5).as_secs_f64()
                );
            }
        }
        println!();
        println!("target: median under 100 ms through the signaling server");
    });
}
