//! P4: time from `connect()` to a verified `Connection` over WebRTC on loopback:
//! signaling (in memory here; the server adds its own latency), ICE, DTLS, SCTP,
//! the data channel, then our handshake and the responder's `Ready`.
//!
//! 20 runs (`PEERS_BENCH_RUNS`), one pair of long-lived endpoints; each run dials,
//! accepts and authenticates, then closes. Prints median and p95 of the total and
//! of its two parts (socket open, handshake).
//!
//! `cargo bench -p peers-transport-webrtc --all-features --bench webrtc_connect`

use std::sync::Arc;
use std::time::{Duration, Instant};

use peers_sdk::{CloseReason, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, TrustLevel};
use peers_transport_webrtc::{MemorySignalingHub, WebRtcConfig, WebRtcEndpoint};

fn trust_all(_: &DeviceInfo) -> TrustLevel {
    TrustLevel::Trusted
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let runs: usize = std::env::var("PEERS_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let hub = MemorySignalingHub::new();
        let alice = Arc::new(DeviceKeys::generate("alice").expect("keys"));
        let bob = Arc::new(DeviceKeys::generate("bob").expect("keys"));
        let dialer = WebRtcEndpoint::new(Arc::new(hub.join(alice.device_id())), WebRtcConfig::loopback());
        let listener = Arc::new(WebRtcEndpoint::new(Arc::new(hub.join(bob.device_id())), WebRtcConfig::loopback()));
        let (mut opens, mut handshakes, mut totals) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let accepting = {
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
            let accepted = accepting.await.expect("task");
            opens.push(opened);
            handshakes.push(total - opened);
            totals.push(total);
            connection.close(CloseReason::normal("bench")).await;
            accepted.closed().await;
        }
        println!("P4: connect() to verified Connection, webrtc on loopback, in-memory signaling, {runs} runs");
        println!();
        println!("| part | median ms | p95 ms |");
        println!("|---|---|---|");
        for (name, mut samples) in [("data channel open", opens), ("handshake + Ready", handshakes), ("total", totals)]
        {
            samples.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!("| {name} | {:.1} | {:.1} |", ms(percentile(&samples, 0.5)), ms(percentile(&samples, 0.95)));
        }
    });
}
