//! A larger transfer by code over the signaling server's relay: a 256 MiB file and
//! 1,000 small files in one go, every file's hash compared. It is more than one relay
//! may carry (256 MiB by the server's default), so it also moves to a second relay
//! mid-way and resumes.

mod common;

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use common::files::{hashes, write_noise};
use peers_device::transfer::{LinkOptions, ReceiveOptions, SendOptions, receive, send};
use peers_signaling::{ServerConfig, SignalingServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_file_and_1000_small_files_move_over_the_relay() {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let url = server.url().unwrap();
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let payload = src.path().join("payload");
    let small = payload.join("small");
    fs::create_dir_all(&small).unwrap();
    write_noise(&payload.join("big.bin"), 256 << 20, 1);
    for i in 0..1000u64 {
        let dir = small.join(format!("d{}", i % 10));
        fs::create_dir_all(&dir).unwrap();
        write_noise(&dir.join(format!("f{i}")), (i as usize * 37) % 5000, 100 + i);
    }

    // The relay only: this test is about relays ending under a transfer.
    let mut link = LinkOptions::new(vec![url.clone()]);
    link.webrtc = None;
    let (code, sending) = send(vec![payload.clone()], SendOptions::new(link.clone())).await.unwrap();
    let options = ReceiveOptions { out_dir: out.path().to_path_buf(), decide: Arc::new(|_| Box::pin(async { true })) };
    let receiving = receive(code, link, options).await.unwrap();
    let status = receiving.status.clone();
    let (sent, received) = tokio::time::timeout(Duration::from_secs(900), async {
        tokio::join!(sending.finished(), receiving.finished())
    })
    .await
    .expect("the transfer did not end within 15 minutes");
    sent.unwrap();
    let received = received.unwrap();
    assert_eq!(
        received.bytes,
        fs::metadata(payload.join("big.bin")).unwrap().len() + { (0..1000u64).map(|i| (i * 37) % 5000).sum::<u64>() }
    );
    let (want, got) =
        tokio::task::spawn_blocking(move || (hashes(&payload), hashes(&out.path().join("payload")))).await.unwrap();
    // The server's relay carries at most 256 MiB: the transfer went on over a new relay,
    // from the last verified chunk, with nothing verified sent again.
    let last = status.borrow().progress;
    assert!(last.bytes_resumed > 0 && last.bytes_resumed < received.bytes, "{last:?}");
    assert_eq!(got.iter().filter(|(_, hash)| hash.is_some()).count(), 1001);
    assert_eq!(got, want);
    server.shutdown().await;
}
