//! Browser to Rust over WebRTC on loopback (issue 17): MB/s of a peers-js `Connection`
//! stream from a headless Chromium page to a Rust `WebRtcEndpoint`, against a raw
//! `RTCDataChannel` from the same page to a node-datachannel peer, measured in the same
//! run, and the ratio (the target is at least 0.8).
//!
//! The page (`peers-js/bench/browser-webrtc.ts`, driven by `tests/js/peers_js_bench.mjs`)
//! registers with the real signaling server, dials this program's device and completes
//! the handshake (DTLS-bound, so the AEAD is skipped, as between any browser and Rust
//! device), then alternates rounds: N MiB of random bytes to the Rust "upload" stream
//! (whose handler hashes them; every round's BLAKE3 is checked here), and the same N MiB
//! over the raw channel in 256 KiB messages under the same 4 MiB send buffer. The best
//! round of each counts.
//!
//! `cargo bench -p peers-tests --bench browser_webrtc [-- --mib 64 --rounds 3 --causes 1]`
//!
//! `--causes 1` adds two rounds per round, to test the causes of the gap: the same
//! stream to an "upload-count" handler that hashes nothing (the Rust receiver's BLAKE3),
//! and the raw channel in messages of the socket's frame size (64 KiB to the Rust side,
//! against the raw channel's 256 KiB).
//!
//! `--raw-rust 1` adds one more round per round: the raw channel from the same page to a
//! webrtc-rs peer in this program (no peers code above the library; see `raw_rust.rs`),
//! in the messages the page may send it (64 KiB: webrtc-rs names no
//! `a=max-message-size`). Beside "raw-frame" (node-datachannel, the same message size)
//! it separates the receiver's share of the gap from peers-js's.
//!
//! `--window MIB` sets the stream credit window the Rust side grants (default: the
//! SDK's, 4 MiB; transfer connections grant 16).
//!
//! `--loopback 1` runs the Rust device on `WebRtcConfig::loopback()`: loopback candidates
//! only, on our own UDP socket with 4 MiB buffers (`udp_socket_buffer`), where the
//! default scope leaves host candidates to the library's sockets with the kernel's
//! default buffers.
//!
//! Needs what `tests/tests/peers_js_chromium.rs` needs: Node.js with `npm ci` in
//! `tests/` and `peers-js/`, `npx tsc -p peers-js`, and Chromium (`$CHROMIUM_PATH`, or
//! `chromium` on `$PATH`).

use std::sync::Arc;
use std::time::Duration;

use peers_sdk::{
    CloseCode, CloseReason, Connection, ConnectionConfig, DeviceInfo, StreamReader, TrustLevel, TrustStore,
    rpc::RemoteError,
};
use peers_tests::JsClient;
use peers_tests::peers_js::{UploadMeta, expose_echo_and_upload};
use peers_tests::webrtc::{Device, signaling_server};
use peers_transport_webrtc::WebRtcConfig;
use tokio::sync::mpsc;

#[path = "browser_webrtc/raw_rust.rs"]
mod raw_rust;

const STEP: Duration = Duration::from_secs(60);

/// `--name value` from the command line, else `default`.
fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|at| args.get(at + 1))
        .map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number, not {v}")))
}

/// The best (shortest) round of one path, in ms.
#[derive(Default)]
struct Best {
    ms: Option<f64>,
    rounds: Vec<f64>,
}

impl Best {
    fn add(&mut self, ms: f64) {
        self.rounds.push(ms);
        self.ms = Some(self.ms.map_or(ms, |best| best.min(ms)));
    }

    fn mb_per_s(&self, bytes: u64) -> f64 {
        bytes as f64 / 1e6 / (self.ms.expect("at least one round") / 1e3)
    }

    /// MB/s of the median round: on a loaded machine the best round of a few is luck.
    fn median_mb_per_s(&self, bytes: u64) -> f64 {
        let mut rounds = self.rounds.clone();
        rounds.sort_by(f64::total_cmp);
        let mid = rounds.len() / 2;
        let ms = if rounds.len().is_multiple_of(2) { (rounds[mid - 1] + rounds[mid]) / 2.0 } else { rounds[mid] };
        bytes as f64 / 1e6 / (ms / 1e3)
    }
}

fn main() {
    let mib = arg("--mib", 64);
    let rounds = arg("--rounds", 3);
    let causes = arg("--causes", 0) == 1;
    let raw_rust = arg("--raw-rust", 0) == 1;
    let window = arg("--window", 0) as u64;
    let config = if arg("--loopback", 0) == 1 { WebRtcConfig::loopback() } else { WebRtcConfig::default() };
    assert!(mib > 0 && rounds > 0, "--mib and --rounds must be positive");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    runtime.block_on(run(mib, rounds, causes, raw_rust, window, config));
}

/// The "upload-count" stream: counts the bytes and hashes nothing; sends the count.
fn expose_count(connection: &Connection, counts: &mpsc::UnboundedSender<u64>) {
    let counts = counts.clone();
    connection.expose_stream("upload-count", move |_: UploadMeta, mut reader: StreamReader| {
        let counts = counts.clone();
        async move {
            let mut received = 0u64;
            while let Some(piece) = reader.next().await.map_err(RemoteError::handler)? {
                received += piece.len() as u64;
            }
            let _ = counts.send(received);
            Ok(())
        }
    });
}

async fn run(mib: usize, rounds: usize, causes: bool, raw_rust: bool, window_mib: u64, webrtc: WebRtcConfig) {
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let rust = Device::register(&url, "rust", webrtc).await;
    let rust_id = rust.id().to_string();
    let bytes = (mib as u64) << 20;
    // Port 0: no raw webrtc-rs peer.
    let raw_rust_port = if raw_rust { raw_rust::listen(bytes).await } else { 0 };
    let mut browser = JsClient::spawn(
        "peers_js_bench.mjs",
        &[
            &url,
            &rust_id,
            &mib.to_string(),
            &rounds.to_string(),
            if causes { "1" } else { "0" },
            &raw_rust_port.to_string(),
        ],
    );

    let identity = browser.expect_event("identity", STEP).await;
    let page = DeviceInfo::from_share_code(identity["share_code"].as_str().expect("share code"))
        .expect("the page's share code parses");
    let socket = tokio::time::timeout(STEP, rust.endpoint.accept())
        .await
        .expect("the page dials over WebRTC in time")
        .expect("accept");
    let trust = TrustStore::new(TrustLevel::Unknown);
    trust.set(page.device_id, TrustLevel::Trusted);
    let (uploads_tx, mut uploads) = mpsc::unbounded_channel();
    let (counts_tx, mut counts) = mpsc::unbounded_channel();
    let mut config = ConnectionConfig::new(Arc::clone(&rust.keys), trust).with_setup(move |connection| {
        expose_echo_and_upload(connection, &uploads_tx);
        expose_count(connection, &counts_tx);
    });
    if window_mib > 0 {
        config.stream_window = window_mib << 20;
    }
    let window = config.stream_window;
    let connection = tokio::time::timeout(STEP, Connection::accept(Box::new(socket), config))
        .await
        .expect("handshake in time")
        .expect("the page completes the handshake");
    let encrypted = connection.is_encrypted();

    let ready = browser.expect_event("ready", STEP).await;
    assert_eq!(ready["bytes"].as_u64(), Some(bytes), "{ready}");
    // A round at 1 MB/s is far below anything worth measuring.
    let round_limit = Duration::from_secs(30 + bytes / 1_000_000);
    let (mut ours, mut raw) = (Best::default(), Best::default());
    let (mut ours_count, mut raw_frame, mut rust_raw) = (Best::default(), Best::default(), Best::default());
    let per_round = 2 + if causes { 2 } else { 0 } + usize::from(raw_rust);
    for _ in 0..per_round * rounds {
        let round = browser.expect_event("round", round_limit).await;
        assert_eq!(round["bytes"].as_u64(), Some(bytes), "{round}");
        let ms = round["ms"].as_f64().unwrap_or_else(|| panic!("{round}"));
        match round["path"].as_str() {
            Some("peers") => {
                let upload = uploads.recv().await.expect("the upload handler reports");
                assert_eq!((upload.declared, upload.received), (bytes, bytes), "every byte arrived");
                assert_eq!(upload.blake3, ready["blake3"].as_str().expect("blake3"), "the bytes the page sent");
                ours.add(ms);
            }
            Some("raw") => raw.add(ms),
            Some("peers-count") => {
                assert_eq!(counts.recv().await, Some(bytes), "every byte arrived");
                ours_count.add(ms);
            }
            Some("raw-frame") => raw_frame.add(ms),
            Some("raw-rust") => rust_raw.add(ms),
            _ => panic!("a round of an unknown path: {round}"),
        }
        eprintln!("{round}");
    }
    browser.expect_event("rounds", STEP).await;
    connection.close(CloseReason::new(CloseCode::Normal, "bench done")).await;
    browser.expect_event("finished", STEP).await;
    let (status, stderr) = browser.wait(STEP).await;
    assert!(status.success(), "driver failed: {stderr}");
    server.shutdown().await;

    let (ours_mb, raw_mb) = (ours.mb_per_s(bytes), raw.mb_per_s(bytes));
    println!();
    println!(
        "browser to Rust over WebRTC on loopback: {mib} MiB per round, best of {rounds}; raw messages of {} bytes, \
         the socket's frames up to {} bytes; the Rust side's stream window {} MiB; AEAD {}",
        ready["raw_message"],
        ready["frame_size"],
        window >> 20,
        if encrypted { "on" } else { "off (DTLS-bound)" }
    );
    println!("| path | MB/s | rounds (ms) |");
    println!("|---|---:|---|");
    let list = |b: &Best| {
        let rounds = b.rounds.iter().map(|ms| format!("{ms:.0}")).collect::<Vec<_>>().join(", ");
        format!("{rounds} (median {:.1} MB/s)", b.median_mb_per_s(bytes))
    };
    println!("| peers-js `Connection` stream, Chromium → Rust `WebRtcEndpoint` | {ours_mb:.1} | {} |", list(&ours));
    println!("| raw `RTCDataChannel`, Chromium → node-datachannel | {raw_mb:.1} | {} |", list(&raw));
    println!(
        "| ratio (target ≥ 0.8) | {:.2} | medians: {:.2} |",
        ours_mb / raw_mb,
        ours.median_mb_per_s(bytes) / raw.median_mb_per_s(bytes)
    );
    if causes {
        let (count_mb, frame_mb) = (ours_count.mb_per_s(bytes), raw_frame.mb_per_s(bytes));
        println!("| peers-js stream to a handler that hashes nothing | {count_mb:.1} | {} |", list(&ours_count));
        println!(
            "| raw `RTCDataChannel` in messages of {} bytes | {frame_mb:.1} | {} |",
            ready["frame_size"],
            list(&raw_frame)
        );
        println!(
            "| ratio without the hash / ratio against raw frame-size messages | {:.2} / {:.2} | |",
            count_mb / raw_mb,
            ours_mb / frame_mb
        );
    }
    if raw_rust {
        let rust_mb = rust_raw.mb_per_s(bytes);
        println!(
            "| raw `RTCDataChannel`, Chromium → webrtc-rs, messages of {} bytes | {rust_mb:.1} | {} |",
            ready["raw_rust_message"],
            list(&rust_raw)
        );
        let rust_median = rust_raw.median_mb_per_s(bytes);
        println!(
            "| ratio raw webrtc-rs / raw node-datachannel; stream / raw webrtc-rs | {:.2} / {:.2} | medians: {:.2} / {:.2} |",
            rust_mb / raw_mb,
            ours_mb / rust_mb,
            rust_median / raw.median_mb_per_s(bytes),
            ours.median_mb_per_s(bytes) / rust_median
        );
    }
}
