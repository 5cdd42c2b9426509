//! Send and receive by code through a real signaling server on loopback: the PAKE over
//! the relay, the pinned connection, the transfer; a wrong code burns the code; a
//! receiver that stops reading, or never comes, does not leave the sender hanging.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::bytes_by_path;
use common::files::{hash_file, hashes, noise};
use peers_device::transfer::exchange::{Answer, DATA_STREAM, DataHeader, OFFER_METHOD, Offer};
use peers_device::transfer::pake::CodeRole;
use peers_device::transfer::rendezvous::{authenticate, pinned_config};
use peers_device::transfer::{
    Cursor, LinkOptions, ReceiveOptions, SendOptions, Stage, TransferCode, TransferError, receive, send,
};
use peers_device::{ConnectionClass, Error};
use peers_sdk::rpc::RemoteError;
use peers_sdk::{Connection, DeviceKeys};
use peers_signaling::{ServerConfig, SignalingClient, SignalingClientOptions, SignalingServer};
use peers_transport_webrtc::WebRtcConfig;

const WAIT: Duration = Duration::from_secs(60);

/// Through the server at `url`; WebRTC on loopback only, no local socket.
fn link(url: &str) -> LinkOptions {
    let mut link = LinkOptions::new(vec![url.to_owned()]);
    link.webrtc = Some(WebRtcConfig::loopback());
    link.local = None;
    link
}

/// Through the server at `url`, on its relay only.
fn relay_only(url: &str) -> LinkOptions {
    let mut link = LinkOptions::new(vec![url.to_owned()]);
    link.webrtc = None;
    link.local = None;
    link
}

/// Through the server at `url`; a local socket on loopback, no WebRTC.
fn local_socket(url: &str) -> LinkOptions {
    let mut link = relay_only(url);
    link.local = Some(std::net::Ipv4Addr::LOCALHOST.into());
    link
}

fn accepting(out: &Path) -> ReceiveOptions {
    ReceiveOptions { out_dir: out.to_path_buf(), decide: Arc::new(|_| Box::pin(async { true })) }
}

/// A tree of a few sizes (empty, below, at and above one chunk), nested, with an empty directory.
fn album(root: &Path) -> PathBuf {
    let album = root.join("album");
    fs::create_dir_all(album.join("raw/empty")).unwrap();
    for (i, len) in [0usize, 1, 65_535, 1 << 20, (3 << 20) + 7].into_iter().enumerate() {
        fs::write(album.join(format!("p{i}.jpg")), noise(len, i as u64)).unwrap();
        fs::write(album.join(format!("raw/r{i}.dng")), noise(len / 2 + 3, 100 + i as u64)).unwrap();
    }
    album
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_moves_by_code_over_the_relay_with_every_hash_checked() {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let url = server.url().unwrap();
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let album = album(src.path());

    let (code, sending) = send(vec![album.clone()], SendOptions::new(relay_only(&url))).await.unwrap();
    assert_eq!(sending.status.borrow().stage, Stage::WaitingForPeer);
    // The receiver types the code, in another case and with spaces.
    let typed: TransferCode = code.to_string().to_uppercase().replace('-', " ").parse().unwrap();
    let receiving = receive(typed, relay_only(&url), accepting(out.path())).await.unwrap();
    let (send_status, receive_status) = (sending.status.clone(), receiving.status.clone());
    let (sent, received) =
        tokio::time::timeout(WAIT, async { tokio::join!(sending.finished(), receiving.finished()) }).await.unwrap();
    sent.unwrap();
    let received = received.unwrap();

    assert_eq!(received.stored, ["album"]);
    assert_eq!(hashes(&out.path().join("album")), hashes(&album));
    for status in [send_status.borrow().to_owned(), receive_status.borrow().to_owned()] {
        assert_eq!(status.stage, Stage::Done);
        assert_eq!(status.class, Some(ConnectionClass::ServerRelay));
        assert_eq!(status.progress.bytes_done, received.bytes);
        assert_eq!(status.progress.bytes_total, received.bytes);
    }
    // The code is used up.
    let again = receive(code, link(&url), accepting(out.path())).await;
    assert!(again.is_err(), "a used code must not be joined again");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_fails_on_both_sides_and_burns_the_code() {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let url = server.url().unwrap();
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    fs::write(src.path().join("secret.txt"), b"for the right person only").unwrap();

    let (code, sending) = send(vec![src.path().join("secret.txt")], SendOptions::new(link(&url))).await.unwrap();
    let words: Vec<&str> = code.words().collect();
    let other = if words[1] == "zebra" { "apple" } else { "zebra" };
    let wrong: TransferCode = format!("{}-{}-{other}", code.session(), words[0]).parse().unwrap();
    let guessing = receive(wrong, link(&url), accepting(out.path())).await.unwrap();
    let (sent, guessed) =
        tokio::time::timeout(WAIT, async { tokio::join!(sending.finished(), guessing.finished()) }).await.unwrap();
    for (side, result) in [("sender", sent.map(|_| ())), ("receiver", guessed.map(|_| ()))] {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Transfer(TransferError::WrongCode)), "{side}: {err}");
        assert!(err.to_string().contains("did not match"), "{side}: {err}");
    }
    // Burnt: the right code no longer finds the session, and nothing was written.
    let err = receive(code, link(&url), accepting(out.path())).await.unwrap_err();
    assert!(err.to_string().contains("session_closed"), "{err}");
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
    server.shutdown().await;
}

/// Joins `code`'s session and authenticates like a real receiver, accepts the offer,
/// then never reads the data (a receiver that vanished without closing anything).
async fn frozen_receiver(url: &str, code: &TransferCode) -> (SignalingClient, Connection) {
    let keys = Arc::new(DeviceKeys::generate("frozen").unwrap());
    let client = SignalingClient::connect(url, &keys, SignalingClientOptions::default()).await.unwrap();
    let joined = client.join_session(&code.session().to_string()).await.unwrap();
    let relay = client.open_relay(&joined.sender, WAIT).await.unwrap();
    let info = keys.info(vec![]).unwrap();
    let peer = authenticate(&relay, code, CodeRole::Joiner, &info, WAIT).await.unwrap();
    let config = pinned_config(keys, peer).with_setup(|conn| {
        conn.expose_rpc(OFFER_METHOD, |_: Offer| async {
            Ok::<_, RemoteError>(Answer::Accept { from: Cursor::START })
        });
        conn.expose_stream(DATA_STREAM, |_: DataHeader, reader| async move {
            let _held = reader;
            std::future::pending::<Result<(), RemoteError>>().await
        });
    });
    let conn = Connection::accept(Box::new(relay), config).await.unwrap();
    (client, conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_stops_reading_fails_the_sender_after_the_stall_timeout() {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let url = server.url().unwrap();
    let src = tempfile::tempdir().unwrap();
    // More than the stream's and the relay's windows together, so the sender blocks.
    fs::write(src.path().join("big.bin"), noise(24 << 20, 5)).unwrap();
    let mut options = SendOptions::new(link(&url));
    options.link.stall_timeout = Duration::from_secs(3);
    // No waiting for the receiver to come back with the code (see cli_transfer for that).
    options.rejoin_wait = Duration::ZERO;
    let (code, sending) = send(vec![src.path().join("big.bin")], options).await.unwrap();
    let status = sending.status.clone();
    let (_client, _conn) = frozen_receiver(&url, &code).await;
    let err = tokio::time::timeout(WAIT, sending.finished()).await.expect("the sender hung").unwrap_err();
    assert!(matches!(err, Error::Transfer(TransferError::Stalled(_))), "{err}");
    let done = status.borrow().progress;
    assert!(done.bytes_done > 0 && done.bytes_done < done.bytes_total, "{done:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_nobody_uses_expires_and_the_sender_says_so() {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let url = server.url().unwrap();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("x"), b"x").unwrap();
    let mut options = SendOptions::new(link(&url));
    options.code_ttl = Duration::from_secs(2);
    let (_code, sending) = send(vec![src.path().join("x")], options).await.unwrap();
    let err = tokio::time::timeout(WAIT, sending.finished()).await.expect("the sender hung").unwrap_err();
    assert!(matches!(err, Error::Transfer(TransferError::TimedOut { .. })), "{err}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_offer_is_reported_on_both_sides_and_writes_nothing() {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let url = server.url().unwrap();
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    fs::write(src.path().join("unwanted.iso"), noise(100_000, 7)).unwrap();
    let (code, sending) = send(vec![src.path().join("unwanted.iso")], SendOptions::new(link(&url))).await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(None));
    let record = seen.clone();
    let options = ReceiveOptions {
        out_dir: out.path().to_path_buf(),
        decide: Arc::new(move |manifest| {
            *record.lock().unwrap() = Some((manifest.entries[0].path.clone(), manifest.total_size()));
            Box::pin(async { false })
        }),
    };
    let receiving = receive(code, link(&url), options).await.unwrap();
    let (sent, received) =
        tokio::time::timeout(WAIT, async { tokio::join!(sending.finished(), receiving.finished()) }).await.unwrap();
    assert!(matches!(sent.unwrap_err(), Error::Transfer(TransferError::Declined(_))));
    assert!(matches!(received.unwrap_err(), Error::Transfer(TransferError::Declined(_))));
    assert_eq!(*seen.lock().unwrap(), Some(("unwanted.iso".to_owned(), 100_000)));
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_larger_than_one_relay_moves_on_to_new_relays_and_asks_once() {
    let mut config = ServerConfig::in_memory();
    config.relay.max_bytes = 3 << 20;
    let server = SignalingServer::bind(config).await.unwrap();
    let url = server.url().unwrap();
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = src.path().join("video.mp4");
    fs::write(&file, noise(10 << 20, 11)).unwrap();
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = asked.clone();
    let options = ReceiveOptions {
        out_dir: out.path().to_path_buf(),
        decide: Arc::new(move |_| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async { true })
        }),
    };
    let mut send_options = SendOptions::new(relay_only(&url));
    send_options.chunk_size = 256 << 10;
    let (code, sending) = send(vec![file.clone()], send_options).await.unwrap();
    let receiving = receive(code, relay_only(&url), options).await.unwrap();
    let status = receiving.status.clone();
    let (sent, received) =
        tokio::time::timeout(WAIT, async { tokio::join!(sending.finished(), receiving.finished()) }).await.unwrap();
    sent.unwrap();
    received.unwrap();
    assert_eq!(fs::read(out.path().join("video.mp4")).unwrap(), fs::read(&file).unwrap());
    // 10 MiB through relays of 3 MiB: at least three new relays, the last one resumed
    // from verified bytes, and the person asked once.
    let last = status.borrow().progress;
    assert!(last.bytes_resumed >= 7 << 20, "{last:?}");
    assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 1);
    server.shutdown().await;
}

/// Sends 16 MiB by code through `make_link` links and checks that it started on the relay,
/// went on over `better` half-way without resending what was verified, and arrived intact.
/// Returns false, with the file checked, when `better` was up before the first chunk
/// left (on loopback the local dial sometimes wins that race), so nothing moved on the
/// relay and there was no move to check.
async fn moves_mid_way(make_link: fn(&str) -> LinkOptions, better: ConnectionClass) -> bool {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let url = server.url().unwrap();
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = src.path().join("film.mkv");
    // Long enough on the relay for the better path to come up mid-way (a second or two).
    fs::write(&file, noise(16 << 20, 21)).unwrap();
    let mut options = SendOptions::new(make_link(&url));
    options.chunk_size = 256 << 10;
    let (code, sending) = send(vec![file.clone()], options).await.unwrap();
    let receiving = receive(code, make_link(&url), accepting(out.path())).await.unwrap();
    let on_sender = tokio::spawn(bytes_by_path(sending.status.clone()));
    let on_receiver = tokio::spawn(bytes_by_path(receiving.status.clone()));
    let (send_status, receive_status) = (sending.status.clone(), receiving.status.clone());
    // WebRTC's SCTP is slow in a debug build (well under 1 MB/s here): a bound, not a figure.
    let (sent, received) =
        tokio::time::timeout(WAIT * 3, async { tokio::join!(sending.finished(), receiving.finished()) }).await.unwrap();
    sent.unwrap();
    let received = received.unwrap();
    assert_eq!(received.bytes, 16 << 20);
    assert_eq!(hash_file(&out.path().join("film.mkv")), hash_file(&file));

    let (on_sender, on_receiver) = (on_sender.await.unwrap(), on_receiver.await.unwrap());
    if [&on_sender, &on_receiver].iter().any(|paths| paths.first() == Some(&(ConnectionClass::ServerRelay, 0))) {
        eprintln!("{better:?} was up before the first chunk: {on_sender:?} / {on_receiver:?}");
        server.shutdown().await;
        return false;
    }
    for (side, paths, status) in [("sender", on_sender, send_status), ("receiver", on_receiver, receive_status)] {
        let classes: Vec<ConnectionClass> = paths.iter().map(|(class, _)| *class).collect();
        assert_eq!(classes, [ConnectionClass::ServerRelay, better], "{side}: {paths:?}");
        let on_relay = paths[0].1;
        assert!(on_relay > 0 && on_relay < received.bytes, "{side}: no bytes moved on the relay: {paths:?}");
        let last = *status.borrow();
        assert_eq!(last.class, Some(better));
        assert_eq!(last.progress.bytes_done, received.bytes);
        if side == "sender" {
            // The attempt over the better path started exactly where the relay stopped:
            // verified bytes were not sent again.
            assert!(last.progress.bytes_resumed > 0 && last.progress.bytes_resumed <= on_relay, "{last:?}");
        }
    }
    server.shutdown().await;
    true
}

/// Runs [`moves_mid_way`] until a transfer really started on the relay (at most three
/// times: a better path that always wins the race fails the test).
async fn moves_mid_way_once_started_on_the_relay(make_link: fn(&str) -> LinkOptions, better: ConnectionClass) {
    for _ in 0..3 {
        if moves_mid_way(make_link, better).await {
            return;
        }
    }
    panic!("in three transfers {better:?} was always up before the first chunk: no move mid-way to check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_that_starts_on_the_relay_goes_on_over_webrtc_without_resending() {
    moves_mid_way_once_started_on_the_relay(link, ConnectionClass::WebRtcDirect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_that_starts_on_the_relay_goes_on_over_the_receivers_local_socket_without_resending() {
    moves_mid_way_once_started_on_the_relay(local_socket, ConnectionClass::Local).await;
}
