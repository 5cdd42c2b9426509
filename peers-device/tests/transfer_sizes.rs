//! The sizes the transfer is built for, over each path: one transfer of a 1 GiB file
//! beside a directory of 1,000 small files, every file's hash compared afterwards, and
//! the path the bytes took checked from the progress events:
//!
//! - over a local socket: `peers send --to` between two daemons on loopback socket.io;
//! - over WebRTC: by code, on the relay first, then WebRTC on loopback for the most of it;
//! - over the signaling server's frame relay: by code, on relays only, through several
//!   of them (each carries at most 256 MiB by the server's default), resuming on each.
//!
//! The three run one at a time: each writes its own payload (2 GiB on disk with the copy).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::bytes_by_path;
use common::cli::{Peers, command};
use common::daemons::{device_id, eventually, ok, peers, run, run_with, trusting_pair};
use common::files::{hashes, write_noise};
use peers_device::ConnectionClass;
use peers_device::transfer::{LinkOptions, ReceiveOptions, SendOptions, receive, send};
use peers_signaling::{ServerConfig, SignalingServer};
use peers_transport_webrtc::WebRtcConfig;

/// One transfer at a time (their payloads, the CPU).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The longest a transfer of this size may take in a test build on a loaded machine.
const LIMIT: Duration = Duration::from_secs(20 * 60);

/// Writes `root/payload/`: `big.bin` (1 GiB) and `small/` (1,000 files of 0 to 5,000
/// bytes in 10 directories); returns its path and its bytes.
fn payload(root: &Path) -> (PathBuf, u64) {
    let payload = root.join("payload");
    for i in 0..1000u64 {
        let dir = payload.join(format!("small/d{}", i % 10));
        fs::create_dir_all(&dir).unwrap();
        write_noise(&dir.join(format!("f{i}")), (i as usize * 37) % 5000, 100 + i);
    }
    write_noise(&payload.join("big.bin"), 1 << 30, 1);
    (payload, (1 << 30) + (0..1000u64).map(|i| (i * 37) % 5000).sum::<u64>())
}

/// Every file under `received` has the hash of its source in `sent` (1,001 files).
fn same_tree(sent: &Path, received: &Path) {
    let (want, got) = (hashes(sent), hashes(received));
    assert_eq!(got.iter().filter(|(_, hash)| hash.is_some()).count(), 1001);
    assert_eq!(got, want);
}

fn accepting(out: &Path) -> ReceiveOptions {
    ReceiveOptions { out_dir: out.to_path_buf(), decide: Arc::new(|_| Box::pin(async { true })) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_file_and_1000_small_files_move_over_the_relay() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // Request rates high enough for the test to take seconds, not minutes: the client
    // paces its relay frames to 3/4 of the budget `relay-open` names.
    let mut config = ServerConfig::in_memory();
    config.rate_limits.device_per_second = 100_000;
    config.rate_limits.device_burst = 100_000;
    config.rate_limits.ip_per_second = 400_000;
    config.rate_limits.ip_burst = 400_000;
    let server = SignalingServer::bind(config).await.unwrap();
    let url = server.url().unwrap();
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (payload, bytes) = payload(src.path());

    let mut link = LinkOptions::new(vec![url.clone()]);
    link.local = None;
    link.webrtc = None;
    let (code, sending) = send(vec![payload.clone()], SendOptions::new(link.clone())).await.unwrap();
    let receiving = receive(code, link, accepting(out.path())).await.unwrap();
    let on_sender = tokio::spawn(bytes_by_path(sending.status.clone()));
    let status = receiving.status.clone();
    let (sent, received) =
        tokio::time::timeout(LIMIT, async { tokio::join!(sending.finished(), receiving.finished()) }).await.unwrap();
    sent.unwrap();
    assert_eq!(received.unwrap().bytes, bytes);
    tokio::task::block_in_place(|| same_tree(&payload, &out.path().join("payload")));
    // The relay only, and through several: each carries at most 256 MiB, so the
    // transfer went on over new ones from the last verified chunk.
    let paths = on_sender.await.unwrap();
    assert!(paths.iter().all(|(class, _)| *class == ConnectionClass::ServerRelay), "{paths:?}");
    let last = status.borrow().progress;
    assert!(last.bytes_resumed >= 3 * (256 << 20) && last.bytes_resumed < bytes, "{last:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_file_and_1000_small_files_move_over_webrtc() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // The server's default rates: the relay carries the first few MiB until WebRTC is up.
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let url = server.url().unwrap();
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (payload, bytes) = payload(src.path());

    let mut link = LinkOptions::new(vec![url.clone()]);
    link.local = None;
    link.webrtc = Some(WebRtcConfig::loopback());
    let (code, sending) = send(vec![payload.clone()], SendOptions::new(link.clone())).await.unwrap();
    let receiving = receive(code, link, accepting(out.path())).await.unwrap();
    let on_sender = tokio::spawn(bytes_by_path(sending.status.clone()));
    let on_receiver = tokio::spawn(bytes_by_path(receiving.status.clone()));
    let (sent, received) =
        tokio::time::timeout(LIMIT, async { tokio::join!(sending.finished(), receiving.finished()) }).await.unwrap();
    sent.unwrap();
    assert_eq!(received.unwrap().bytes, bytes);
    tokio::task::block_in_place(|| same_tree(&payload, &out.path().join("payload")));
    for (side, paths) in [("sender", on_sender.await.unwrap()), ("receiver", on_receiver.await.unwrap())] {
        let classes: Vec<ConnectionClass> = paths.iter().map(|(class, _)| *class).collect();
        assert_eq!(classes, [ConnectionClass::ServerRelay, ConnectionClass::WebRtcDirect], "{side}: {paths:?}");
        // Most of it over WebRTC: the relay carried what moved before it was up.
        assert!(paths[0].1 < bytes / 2 && paths[1].1 == bytes, "{side}: {paths:?}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_file_and_1000_small_files_move_over_a_local_socket() {
    let _turn = ONE_AT_A_TIME.lock().await;
    tokio::task::spawn_blocking(|| {
        let dir = tempfile::tempdir().unwrap();
        let (a, port_a, b, port_b) = trusting_pair(dir.path());
        let inbox = dir.path().join("inbox");
        let _da = run(&a, port_a);
        let _db = run_with(&b, &["--listen", &format!("127.0.0.1:{port_b}"), "--inbox", inbox.to_str().unwrap()]);
        eventually("a to connect to b", || {
            peers(&a, &["status"]).status.success() && ok(&a, &["status"]).contains("local")
        });
        let (payload, bytes) = payload(dir.path());

        let id_b = device_id(&ok(&b, &["info"]));
        let data = a.to_str().unwrap();
        let args = ["--data-dir", data, "send", "--to", &id_b, "--json", payload.to_str().unwrap()];
        let sender = Peers::spawn(command(None, &args), std::process::Stdio::piped());
        let (out, events) = sender.finish(None, LIMIT);
        assert!(out.status.success(), "send --to: {}", String::from_utf8_lossy(&out.stderr));
        let last = events.last().unwrap();
        assert_eq!((last["event"].as_str(), last["bytes"].as_u64()), (Some("done"), Some(bytes)), "{last}");
        // Every status the sender showed names the local socket.
        let paths: Vec<&str> =
            events.iter().filter(|e| e["event"] == "status").filter_map(|e| e["path"].as_str()).collect();
        assert!(!paths.is_empty() && paths.iter().all(|p| *p == "local"), "{events:?}");
        same_tree(&payload, &inbox.join("payload"));
    })
    .await
    .unwrap();
}
