//! A transfer over a real `Connection` (in-memory socket): files and trees arrive
//! intact, a cut transfer resumes without sending verified bytes again, and hostile
//! senders write nothing outside the target directory.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::files::{hashes, noise};
use peers_device::transfer::exchange::{DATA_STREAM, DataHeader, OFFER_METHOD, Offer};
use peers_device::transfer::exchange::{send, send_until};
use peers_device::transfer::manifest::{DEFAULT_CHUNK_SIZE, EntryKind, MIN_CHUNK_SIZE, Manifest, ManifestEntry};
use peers_device::transfer::scan::scan;
use peers_device::transfer::{
    ReceiveOptions, ReceiverHandlers, SendEnd, TransferError, TransferProgress, expose_receiver,
};
use peers_sdk::{CloseReason, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, MemorySocket, TrustLevel};
use tokio::sync::watch;

async fn pair() -> (Connection, Connection) {
    let config = |user: &str| {
        ConnectionConfig::new(Arc::new(DeviceKeys::generate(user).unwrap()), |_: &DeviceInfo| TrustLevel::Trusted)
    };
    let (x, y) = MemorySocket::pair(64, 256 * 1024);
    let (a, b) = tokio::join!(
        Connection::connect(Box::new(x), config("sender"), None),
        Connection::accept(Box::new(y), config("receiver"))
    );
    (a.unwrap(), b.unwrap())
}

fn options(out: &Path, accept: bool) -> ReceiveOptions {
    ReceiveOptions { out_dir: out.to_path_buf(), decide: Arc::new(move |_| Box::pin(async move { accept })) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_and_a_file_arrive_intact_and_nothing_is_replaced() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let album = src.path().join("album");
    fs::create_dir_all(album.join("empty")).unwrap();
    for i in 0..50 {
        fs::write(album.join(format!("p{i}.jpg")), noise(i * 997, i as u64)).unwrap();
    }
    let big = src.path().join("big.bin");
    fs::write(&big, noise(5 * 1024 * 1024 + 17, 9)).unwrap();
    fs::write(out.path().join("big.bin"), b"already here").unwrap();

    let scanned = scan(&[album.clone(), big.clone()], DEFAULT_CHUNK_SIZE).unwrap();
    let (a, b) = pair().await;
    let mut handle = expose_receiver(&b, options(out.path(), true));
    let (progress, _) = watch::channel(TransferProgress::default());
    send(&a, &scanned, Duration::from_secs(10), &progress).await.unwrap();
    let received = handle.finished().await.unwrap();

    assert_eq!(received.stored, ["album", "big (1).bin"]);
    assert_eq!(fs::read(out.path().join("big.bin")).unwrap(), b"already here");
    assert_eq!(fs::read(out.path().join("big (1).bin")).unwrap(), fs::read(&big).unwrap());
    assert_eq!(hashes(&out.path().join("album")), hashes(&album));
    assert!(out.path().join("album/empty").is_dir());
    assert_eq!(handle.progress.borrow().bytes_done, scanned.manifest.total_size());
    assert_eq!(progress.borrow().bytes_done, scanned.manifest.total_size());
    let hidden: Vec<_> = fs::read_dir(out.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "staging left behind: {hidden:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_transfer_resumes_without_sending_verified_bytes_again() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = src.path().join("video.mp4");
    fs::write(&file, noise(12 * 1024 * 1024, 3)).unwrap();
    let scanned = scan(std::slice::from_ref(&file), MIN_CHUNK_SIZE * 16).unwrap();
    let total = scanned.manifest.total_size();

    // First attempt: the connection drops once the receiver has verified a third.
    let (a, b) = pair().await;
    let mut first = expose_receiver(&b, options(out.path(), true));
    let (progress, _) = watch::channel(TransferProgress::default());
    let cutter = {
        let (a, mut verified) = (a.clone(), first.progress.clone());
        tokio::spawn(async move {
            let _ = verified.wait_for(|p| p.bytes_done >= total / 3).await;
            a.close(CloseReason::normal("cable pulled")).await;
        })
    };
    assert!(send(&a, &scanned, Duration::from_secs(10), &progress).await.is_err());
    cutter.await.unwrap();
    assert!(first.finished().await.is_err());
    let verified = first.progress.borrow().bytes_done;
    assert!(verified > 0 && verified < total, "verified {verified} of {total}");
    assert!(!out.path().join("video.mp4").exists(), "partial data presented as complete");

    // Second attempt on a new connection: starts where the receiver stopped.
    let (a, b) = pair().await;
    let mut second = expose_receiver(&b, options(out.path(), true));
    let (progress, _) = watch::channel(TransferProgress::default());
    send(&a, &scanned, Duration::from_secs(10), &progress).await.unwrap();
    second.finished().await.unwrap();
    assert_eq!(progress.borrow().bytes_resumed, verified);
    assert_eq!(fs::read(out.path().join("video.mp4")).unwrap(), fs::read(&file).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_transfer_goes_on_over_another_connection_without_sending_a_byte_twice() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = src.path().join("video.mp4");
    fs::write(&file, noise(12 * 1024 * 1024, 4)).unwrap();
    let scanned = scan(std::slice::from_ref(&file), MIN_CHUNK_SIZE * 16).unwrap();
    let total = scanned.manifest.total_size();
    let handlers = ReceiverHandlers::new(options(out.path(), true));

    // On the first connection, the sender pauses once the receiver has verified a third.
    let (a, b) = pair().await;
    let first = handlers.expose(&b);
    let (pause_tx, pause) = watch::channel(false);
    let pauser = {
        let mut verified = handlers.progress();
        tokio::spawn(async move {
            let _ = verified.wait_for(|p| p.bytes_done >= total / 3).await;
            pause_tx.send_replace(true);
        })
    };
    let (progress, _) = watch::channel(TransferProgress::default());
    let sent = send_until(&a, &scanned, Duration::from_secs(10), &progress, &pause).await.unwrap();
    pauser.await.unwrap();
    assert_eq!(sent, SendEnd::Paused);
    let paused_at = progress.borrow().bytes_done;
    assert!(paused_at >= total / 3 && paused_at < total, "paused at {paused_at} of {total}");
    // Everything the stream carried is verified; nothing is presented yet.
    assert_eq!(handlers.progress().borrow().bytes_done, paused_at);
    assert!(first.outcome.borrow().is_none(), "a pause is no outcome");
    assert!(!out.path().join("video.mp4").exists());

    // A second connection (another path) carries the rest, from the pause on.
    let (a, b) = pair().await;
    let mut second = handlers.expose(&b);
    let (progress, _) = watch::channel(TransferProgress::default());
    assert_eq!(send_until(&a, &scanned, Duration::from_secs(10), &progress, &pause).await.unwrap(), SendEnd::Paused);
    let (_, go_on) = watch::channel(false);
    let (progress, _) = watch::channel(TransferProgress::default());
    assert_eq!(send_until(&a, &scanned, Duration::from_secs(10), &progress, &go_on).await.unwrap(), SendEnd::Complete);
    second.finished().await.unwrap();
    assert_eq!(progress.borrow().bytes_resumed, paused_at, "verified bytes were sent again");
    assert_eq!(fs::read(out.path().join("video.mp4")).unwrap(), fs::read(&file).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_offer_sends_nothing() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    fs::write(src.path().join("x"), b"x").unwrap();
    let scanned = scan(&[src.path().join("x")], DEFAULT_CHUNK_SIZE).unwrap();
    let (a, b) = pair().await;
    let _handle = expose_receiver(&b, options(out.path(), false));
    let (progress, _) = watch::channel(TransferProgress::default());
    let err = send(&a, &scanned, Duration::from_secs(10), &progress).await.unwrap_err();
    assert!(matches!(err, peers_device::Error::Transfer(TransferError::Declined(_))), "{err}");
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_senders_write_nothing_outside_or_complete() {
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("inbox");
    let (a, b) = pair().await;
    let mut handle = expose_receiver(&b, options(&target, true));

    // A manifest naming a path outside the target is refused before anything is written.
    for path in ["../escape", "/etc/evil", "a/../../b"] {
        let manifest = Manifest {
            chunk_size: MIN_CHUNK_SIZE,
            entries: vec![ManifestEntry { path: path.into(), kind: EntryKind::Dir }],
        };
        let err = a.emit::<_, serde_json::Value>(OFFER_METHOD, &Offer { manifest }).await.unwrap_err();
        assert!(err.to_string().contains("unsafe path"), "{path}: {err}");
    }
    assert!(!target.exists() && !out.path().join("escape").exists());

    // Bytes that do not match the manifest: the chunk is refused and nothing is presented.
    let honest = noise(100_000, 1);
    let chunks = honest.chunks(MIN_CHUNK_SIZE as usize).map(|c| *blake3::hash(c).as_bytes()).collect();
    let manifest = Manifest {
        chunk_size: MIN_CHUNK_SIZE,
        entries: vec![ManifestEntry {
            path: "doc.pdf".into(),
            kind: EntryKind::File { size: 100_000, executable: false, chunks },
        }],
    };
    let digest = manifest.digest().to_vec();
    let answer: peers_device::transfer::exchange::Answer =
        a.emit(OFFER_METHOD, &Offer { manifest: manifest.clone() }).await.unwrap();
    let peers_device::transfer::exchange::Answer::Accept { from } = answer else { panic!("{answer:?}") };
    let mut writer = a.open_stream(DATA_STREAM, &DataHeader { digest, from }).await.unwrap();
    let mut forged = honest.clone();
    forged[50_000] ^= 0xff;
    writer.write(&forged).await.unwrap();
    let err = writer.finish().await.unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(handle.finished().await.unwrap_err().contains("does not match"));
    assert!(!target.join("doc.pdf").exists());
    // The staging holds the three chunks before the forged one, verified, and not a
    // byte of the forged chunk or of those received after it (the receiver takes in
    // the next chunk while it writes the one before).
    let verified = 3 * MIN_CHUNK_SIZE as usize;
    assert_eq!(peers_device::transfer::staged_bytes(&target, &manifest), Some(verified as u64));
    let staged: Vec<_> = fs::read_dir(&target).unwrap().map(|e| e.unwrap().path()).collect();
    let [staging] = &staged[..] else { panic!("{staged:?}") };
    assert_eq!(fs::read(staging.join("data/doc.pdf")).unwrap(), honest[..verified]);
}
