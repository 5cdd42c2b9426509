//! P4 through the real signaling server: time from `WebRtcEndpoint::connect` to a
//! verified `Connection` between two devices on loopback, with the signals going
//! through `peers-signaling` (in process, on 127.0.0.1) and, as the baseline in the
//! same run, through in-memory signaling. Prints median and p95 of each and the
//! ratio.
//!
//! `cargo bench -p peers-device --bench connect` (`PEERS_BENCH_RUNS`, default 20).

use std::sync::Arc;
use std::time::{Duration, Instant};

use peers_device::transports::ServerSignaling;
use peers_sdk::{CloseReason, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, TrustLevel};
use peers_signaling::{ClientOptions, ServerConfig, SignalingClient, SignalingServer};
use peers_transport_webrtc::{MemorySignalingHub, Signaling, WebRtcConfig, WebRtcEndpoint};

fn trust_all(_: &DeviceInfo) -> TrustLevel {
    TrustLevel::Trusted
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// `runs` dials from `alice` to `bob` over the given signaling channels; the
/// total time of each, sorted.
async fn measure(
    runs: usize,
    alice: &Arc<DeviceKeys>,
    bob: &Arc<DeviceKeys>,
    dialing: Arc<dyn Signaling>,
    accepting: Arc<dyn Signaling>,
) -> Vec<Duration> {
    let dialer = WebRtcEndpoint::new(dialing, WebRtcConfig::loopback());
    let listener = Arc::new(WebRtcEndpoint::new(accepting, WebRtcConfig::loopback()));
    let mut totals = Vec::new();
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
        let connection = Connection::connect(
            Box::new(socket),
            ConnectionConfig::new(alice.clone(), trust_all),
            Some(bob.device_id()),
        )
        .await
        .expect("handshake");
        totals.push(started.elapsed());
        let accepted = accept.await.expect("task");
        connection.close(CloseReason::normal("bench")).await;
        accepted.closed().await;
    }
    totals.sort();
    totals
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
                let client = SignalingClient::connect(&url, &keys, ClientOptions::default()).await.expect("register");
                Arc::new(ServerSignaling::over_client(client, ttl).expect("signals")) as Arc<dyn Signaling>
            }
        };
        let (dialing, accepting) = (register(alice.clone()).await, register(bob.clone()).await);
        let through_server = measure(runs, &alice, &bob, dialing, accepting).await;
        server.shutdown().await;

        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!("P4: connect() to a verified Connection, WebRTC on loopback, {runs} runs each");
        println!();
        println!("| signaling | median ms | p95 ms | median / baseline |");
        println!("|---|---|---|---|");
        let base = percentile(&memory, 0.5);
        for (name, samples) in [("in memory (baseline)", &memory), ("peers-signaling server", &through_server)] {
            let median = percentile(samples, 0.5);
            println!(
                "| {name} | {:.1} | {:.1} | {:.2} |",
                ms(median),
                ms(percentile(samples, 0.95)),
                median.as_secs_f64() / base.as_secs_f64()
            );
        }
        println!();
        println!("target: median under 100 ms through the signaling server");
    });
}
