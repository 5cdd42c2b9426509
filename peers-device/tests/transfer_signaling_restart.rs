//! A transfer by code while the signaling server is killed (SIGKILL) and started again
//! on the same port: the real `peers-signaling` binary as a process, with its SQLite
//! store in a temporary directory (sessions live in the store and survive; the
//! registrations, relays and presence of the old process do not).
//!
//! - On the server's frame relay the relay dies with the server: both sides register
//!   again, open a new relay and resume from the receiver's last verified chunk, within
//!   seconds of the restart; the file arrives intact and verified bytes are not sent again.
//!   Both statuses say `SignalingLink::Reconnecting` meanwhile, and `Registered` after.
//! - On the receiver's local socket or on WebRTC nothing goes through the server: the
//!   transfer is not disturbed.
//! - One side's signaling connection blinking (a proxy cut, the server up) costs the
//!   same: that side registers again, and the other waits for it to come back online.
//! - A server that does not come back fails both sides with a typed error once the
//!   stated give-up time has passed.
//! - A receiver that joins after the restart but before the sender registered again is
//!   seen by the sender once it does (the server tells a registering creator of its
//!   joined sessions).
//!
//! The `peers-signaling` binary must be built into the same target directory
//! (`common::signaling`).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemons::free_port;
use common::files::{hash_file, write_noise};
use common::signaling::{Proxy, SignalingProcess};
use peers_device::transfer::{
    LinkOptions, ReceiveHandle, ReceiveOptions, Received, SendHandle, SendOptions, SignalingLink, Status,
    TransferError, receive, send,
};
use peers_device::{ConnectionClass, Error};
use peers_transport_webrtc::WebRtcConfig;
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(120);

/// The most time from the server listening again to bytes verified again on the relay.
const FLOWING_AGAIN_WITHIN: Duration = Duration::from_secs(10);

/// More time for a blink under one side only: the sender may see the receiver offline
/// and wait for it to come back (at most 10 s).
const PEER_RETURN_SLACK: Duration = Duration::from_secs(10);

fn accepting(out: &Path) -> ReceiveOptions {
    ReceiveOptions { out_dir: out.to_path_buf(), decide: Arc::new(|_| Box::pin(async { true })) }
}

/// Through the server at `url`, on its relay only.
fn relay_only(url: &str) -> LinkOptions {
    let mut link = LinkOptions::new(vec![url.to_owned()]);
    link.webrtc = None;
    link.local = None;
    link
}

/// Through the server at `url`; WebRTC on loopback only, no local socket.
fn webrtc(url: &str) -> LinkOptions {
    let mut link = relay_only(url);
    link.webrtc = Some(WebRtcConfig::loopback());
    link
}

/// Through the server at `url`; a local socket on loopback, no WebRTC.
fn local_socket(url: &str) -> LinkOptions {
    let mut link = relay_only(url);
    link.local = Some(std::net::Ipv4Addr::LOCALHOST.into());
    link
}

/// The real `peers-signaling` on a free port, its store in `store`.
async fn start_server(store: &Path) -> SignalingProcess {
    let data = store.to_path_buf();
    tokio::task::spawn_blocking(move || SignalingProcess::start(free_port(), &data)).await.unwrap()
}

/// Both sides' outcomes, once both ended.
type Outcomes = (peers_device::Result<()>, peers_device::Result<Received>);

/// Runs both sides to their ends in a task of their own.
fn both_finished(sending: SendHandle, receiving: ReceiveHandle) -> tokio::task::JoinHandle<Outcomes> {
    tokio::spawn(async move { tokio::join!(sending.finished(), receiving.finished()) })
}

/// Both outcomes, within [`WAIT`].
async fn ended(finished: tokio::task::JoinHandle<Outcomes>) -> Outcomes {
    tokio::time::timeout(WAIT, finished).await.expect("the transfer hung").unwrap()
}

/// Both sides succeeded and `file` arrived in `out` byte for byte.
fn arrived_intact(sent: peers_device::Result<()>, received: peers_device::Result<Received>, file: &Path, out: &Path) {
    sent.unwrap_or_else(|e| panic!("sender: {e}"));
    let received = received.unwrap_or_else(|e| panic!("receiver: {e}"));
    assert_eq!(received.bytes, std::fs::metadata(file).unwrap().len());
    assert_eq!(hash_file(&out.join(file.file_name().unwrap())), hash_file(file));
}

/// Waits until `status` satisfies `check`; the status then.
async fn wait_status(status: &mut watch::Receiver<Status>, check: impl Fn(&Status) -> bool) -> Status {
    *tokio::time::timeout(WAIT, status.wait_for(|s| check(s)))
        .await
        .expect("status never reached")
        .expect("the transfer ended before its status got there")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_transfer_resumes_within_seconds_when_the_signaling_server_restarts() {
    resumes_on_a_new_relay_after_a_restart(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_transfer_resumes_when_the_signaling_server_comes_back_after_three_seconds() {
    resumes_on_a_new_relay_after_a_restart(Duration::from_secs(3)).await;
}

/// Sends 32 MiB on the relay, kills the server after 4 MiB, starts it again after
/// `down`; checks that bytes move again within seconds and nothing verified is resent.
async fn resumes_on_a_new_relay_after_a_restart(down: Duration) {
    let store = tempfile::tempdir().unwrap();
    let server = start_server(store.path()).await;
    let url = server.url();
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = src.path().join("backup.tar");
    let total = 32u64 << 20;
    write_noise(&file, total as usize, 41);
    let mut options = SendOptions::new(relay_only(&url));
    options.chunk_size = 256 << 10;
    let (code, sending) = send(vec![file.clone()], options).await.unwrap();
    let receiving = receive(code, relay_only(&url), accepting(out.path())).await.unwrap();
    let (send_status, mut receive_status) = (sending.status.clone(), receiving.status.clone());
    let finished = both_finished(sending, receiving);

    // Some bytes verified on the relay, then the server dies and comes back.
    let before = wait_status(&mut receive_status, |s| s.progress.bytes_done >= 4 << 20).await;
    assert_eq!(before.class, Some(ConnectionClass::ServerRelay));
    let reconnecting = [send_status.clone(), receive_status.clone()].map(|mut status| {
        tokio::spawn(async move { status.wait_for(|s| s.signaling == SignalingLink::Reconnecting).await.is_ok() })
    });
    let killed_at = Instant::now();
    let (server, restarted) = server.kill_and_restart(down).await;
    let verified = receive_status.borrow().progress.bytes_done;
    assert!(verified < total, "the transfer ended before the server was killed: make it larger");
    eprintln!("killed at {before:?} verified; restarted {:?} after the kill", restarted - killed_at);

    let flowing = tokio::time::timeout(
        FLOWING_AGAIN_WITHIN,
        receive_status.wait_for(|s| s.progress.bytes_done > verified || s.progress.bytes_done == total),
    )
    .await
    .is_ok_and(|seen| seen.is_ok());
    let flowing_after = restarted.elapsed();
    if !flowing {
        let (receiver_saw, sender_saw) = (*receive_status.borrow(), *send_status.borrow());
        let ended = match finished.is_finished() {
            true => {
                let (sent, received) = finished.await.unwrap();
                format!("sender: {:?}; receiver: {:?}", sent.err(), received.err())
            }
            false => "still running".into(),
        };
        panic!(
            "no byte verified within {FLOWING_AGAIN_WITHIN:?} of the restart \
             (receiver: {receiver_saw:?}, sender: {sender_saw:?}); the transfer: {ended}"
        );
    }
    eprintln!("bytes verified again {flowing_after:?} after the restart");
    for (side, saw) in ["sender", "receiver"].into_iter().zip(reconnecting) {
        assert!(saw.await.unwrap(), "the {side}'s status never said it was registering again");
    }
    for (side, status) in [("sender", &send_status), ("receiver", &receive_status)] {
        assert_eq!(status.borrow().signaling, SignalingLink::Registered, "the {side} is registered again");
    }

    let (sent, received) = ended(finished).await;
    sent.unwrap_or_else(|e| panic!("sender: {e} (flowing again after {flowing_after:?})"));
    let received = received.unwrap_or_else(|e| panic!("receiver: {e}"));
    assert_eq!(received.bytes, total);
    assert_eq!(hash_file(&out.path().join("backup.tar")), hash_file(&file));
    // The last attempt started at the receiver's resume point: at least what it had
    // verified when the server died (a few chunks in flight on the dead relay are sent
    // again, nothing verified is).
    let last = send_status.borrow().progress;
    assert!(last.bytes_resumed >= verified, "verified {verified} before the kill, resumed from {last:?}");
    assert_eq!(last.bytes_done, total);
    drop(server);
}

/// Sends `total` bytes through `make_link` links, kills and restarts the server once the
/// transfer moved to `better`, and checks that it finished there, intact.
async fn undisturbed(make_link: fn(&str) -> LinkOptions, better: ConnectionClass, total: u64) {
    let store = tempfile::tempdir().unwrap();
    let server = start_server(store.path()).await;
    let url = server.url();
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = src.path().join("photos.zip");
    write_noise(&file, total as usize, 42);
    let mut options = SendOptions::new(make_link(&url));
    options.chunk_size = 256 << 10;
    let (code, sending) = send(vec![file.clone()], options).await.unwrap();
    let receiving = receive(code, make_link(&url), accepting(out.path())).await.unwrap();
    let (send_status, mut receive_status) = (sending.status.clone(), receiving.status.clone());
    let finished = both_finished(sending, receiving);

    let moved = wait_status(&mut receive_status, |s| s.class == Some(better)).await;
    let (server, _) = server.kill_and_restart(Duration::ZERO).await;
    let verified = receive_status.borrow().progress.bytes_done;
    assert!(verified < total, "the transfer ended before the server was killed: make it larger");
    eprintln!("killed at {moved:?}");

    let (sent, received) = ended(finished).await;
    arrived_intact(sent, received, &file, out.path());
    let last = *send_status.borrow();
    assert_eq!(last.class, Some(better));
    assert_eq!(last.progress.bytes_done, total);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_on_the_local_socket_is_not_disturbed_by_a_signaling_restart() {
    undisturbed(local_socket, ConnectionClass::Local, 64 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_on_webrtc_is_not_disturbed_by_a_signaling_restart() {
    // Large enough that the relay alone (paced to about 7.5 MiB/s) cannot finish it
    // before WebRTC is up on a loaded machine (16 MiB once did).
    undisturbed(webrtc, ConnectionClass::WebRtcDirect, 48 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signaling_server_that_stays_away_fails_both_sides_with_a_typed_error_after_the_give_up_time() {
    let store = tempfile::tempdir().unwrap();
    let mut server = start_server(store.path()).await;
    let url = server.url();
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = src.path().join("backup.tar");
    write_noise(&file, 32 << 20, 43);
    let give_up = Duration::from_secs(2);
    let link = |url: &str| {
        let mut link = relay_only(url);
        link.reconnect_give_up = give_up;
        link
    };
    let mut options = SendOptions::new(link(&url));
    options.chunk_size = 256 << 10;
    let (code, sending) = send(vec![file.clone()], options).await.unwrap();
    let receiving = receive(code, link(&url), accepting(out.path())).await.unwrap();
    let mut receive_status = receiving.status.clone();
    let finished = both_finished(sending, receiving);

    wait_status(&mut receive_status, |s| s.progress.bytes_done >= 4 << 20).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let killed = Instant::now();
    let (sent, received) = ended(finished).await;
    let ended_after = killed.elapsed();
    let sent = sent.expect_err("the sender finished without the server");
    let received = received.expect_err("the receiver finished without the server");
    for (side, err) in [("sender", sent), ("receiver", received)] {
        assert!(matches!(err, Error::Transfer(TransferError::SignalingLost { .. })), "{side}: {err}");
    }
    eprintln!("both ended {ended_after:?} after the kill");
    assert!(ended_after < give_up + Duration::from_secs(10), "ended {ended_after:?} after the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_transfer_resumes_when_only_the_receivers_signaling_connection_blinks() {
    resumes_after_a_blink(Blink::Receiver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_transfer_resumes_when_only_the_senders_signaling_connection_blinks() {
    resumes_after_a_blink(Blink::Sender).await;
}

/// Whose signaling connection goes through the proxy that is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blink {
    Sender,
    Receiver,
}

/// Sends 32 MiB on the relay with one side's signaling connection through a proxy, cuts
/// it after 4 MiB (the server stays up), and checks that the transfer resumes within
/// seconds and arrives intact.
async fn resumes_after_a_blink(blink: Blink) {
    let store = tempfile::tempdir().unwrap();
    let server = start_server(store.path()).await;
    let proxy = Proxy::start(server.port).await;
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = src.path().join("backup.tar");
    let total = 32u64 << 20;
    write_noise(&file, total as usize, 44);
    let through_proxy = format!("http://127.0.0.1:{}", proxy.port);
    let url = |side| if side == blink { through_proxy.clone() } else { server.url() };
    let mut options = SendOptions::new(relay_only(&url(Blink::Sender)));
    options.chunk_size = 256 << 10;
    options.rejoin_wait = Duration::ZERO;
    let (code, sending) = send(vec![file.clone()], options).await.unwrap();
    let receiving = receive(code, relay_only(&url(Blink::Receiver)), accepting(out.path())).await.unwrap();
    let (send_status, mut receive_status) = (sending.status.clone(), receiving.status.clone());
    let finished = both_finished(sending, receiving);

    wait_status(&mut receive_status, |s| s.progress.bytes_done >= 4 << 20).await;
    proxy.cut();
    let cut = Instant::now();
    let verified = receive_status.borrow().progress.bytes_done;
    assert!(verified < total, "the transfer ended before the cut: make it larger");
    let flowing = tokio::time::timeout(
        FLOWING_AGAIN_WITHIN + PEER_RETURN_SLACK,
        receive_status.wait_for(|s| s.progress.bytes_done > verified || s.progress.bytes_done == total),
    )
    .await
    .is_ok_and(|seen| seen.is_ok());
    assert!(flowing, "no byte verified within seconds of the blink: {:?}", *receive_status.borrow());
    eprintln!("bytes verified again {:?} after the {blink:?}'s blink", cut.elapsed());

    let (sent, received) = ended(finished).await;
    arrived_intact(sent, received, &file, out.path());
    let last = send_status.borrow().progress;
    assert!(last.bytes_resumed >= verified, "verified {verified} before the blink, resumed from {last:?}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_joins_before_the_sender_registered_again_after_a_restart_is_seen() {
    let store = tempfile::tempdir().unwrap();
    let server = start_server(store.path()).await;
    let url = server.url();
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = src.path().join("notes.tar");
    write_noise(&file, 8 << 20, 45);
    // The sender registers again 3 to 6 s after its connection drops.
    let reconnect_after = Duration::from_secs(6);
    let mut sender_link = relay_only(&url);
    sender_link.reconnect.initial = reconnect_after;
    sender_link.reconnect.max = reconnect_after;
    let (code, sending) = send(vec![file.clone()], SendOptions::new(sender_link)).await.unwrap();

    let killed = Instant::now();
    let (server, _) = server.kill_and_restart(Duration::ZERO).await;
    let receiving = receive(code, relay_only(&url), accepting(out.path())).await.unwrap();
    let joined_after = killed.elapsed();
    eprintln!("the receiver joined {joined_after:?} after the kill");
    assert!(
        joined_after < reconnect_after / 2,
        "joined {joined_after:?} after the kill: the sender may be back already"
    );

    let (sent, received) = ended(both_finished(sending, receiving)).await;
    arrived_intact(sent, received, &file, out.path());
    drop(server);
}
