//! A conformance suite that any [`Socket`](crate::Socket) implementation must pass
//! (feature `test-utils`).
//!
//! Each check takes a fresh connected pair and panics with a clear message when
//! the socket breaks the [`Socket`](crate::Socket) contract. The [`socket_conformance_tests!`](crate::socket_conformance_tests)
//! macro turns a pair factory into one `#[tokio::test]` per check:
//!
//! ```
//! async fn pair() -> (peers_sdk::BoxSocket, peers_sdk::BoxSocket) {
//!     // A transport would dial and accept here.
//!     let (a, b) = peers_sdk::MemorySocket::pair(64, 64 * 1024);
//!     (Box::new(a), Box::new(b))
//! }
//! peers_sdk::socket_conformance_tests!(pair);
//! # fn main() {}
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;

use crate::rpc::RemoteError;
use crate::socket::{BoxSocket, CloseCode, CloseReason, ClosedBy, SocketState};
use crate::{Connection, ConnectionConfig, DeviceInfo, DeviceKeys, Error, TrustLevel};

/// How long a check waits for something that should happen promptly.
const PROMPT: Duration = Duration::from_secs(10);

fn frame(seq: u32, len: usize) -> Bytes {
    let mut data = vec![0u8; len.max(4)];
    data[..4].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in data.iter_mut().enumerate().skip(4) {
        *b = (i as u32).wrapping_mul(31).wrapping_add(seq) as u8;
    }
    Bytes::from(data)
}

async fn recv(socket: &BoxSocket) -> Bytes {
    tokio::time::timeout(PROMPT, socket.recv()).await.expect("recv timed out").expect("recv failed")
}

/// Frames arrive whole, in order, exactly once, in both directions at once.
pub async fn ordered_and_reliable(a: BoxSocket, b: BoxSocket) {
    let (a, b) = (Arc::new(a), Arc::new(b));
    let count = 500u32;
    let max = a.info().max_frame_size.min(b.info().max_frame_size).min(8 * 1024);
    let send = |from: Arc<BoxSocket>| {
        tokio::spawn(async move {
            for seq in 0..count {
                from.send(frame(seq, 4 + (seq as usize * 37) % max.saturating_sub(4).max(1))).await.unwrap();
            }
        })
    };
    let (sa, sb) = (send(a.clone()), send(b.clone()));
    for seq in 0..count {
        let expected = frame(seq, 4 + (seq as usize * 37) % max.saturating_sub(4).max(1));
        assert_eq!(recv(&b).await, expected, "a→b frame {seq} wrong or out of order");
        assert_eq!(recv(&a).await, expected, "b→a frame {seq} wrong or out of order");
    }
    sa.await.unwrap();
    sb.await.unwrap();
}

/// Each frame arrives as sent: not merged with its neighbours, not split.
pub async fn message_boundaries(a: BoxSocket, b: BoxSocket) {
    let sizes = [1usize, 2, 3, 7, 64, 1000, 4096, 65_000];
    let max = a.info().max_frame_size;
    let sizes: Vec<usize> = sizes.into_iter().filter(|&s| s <= max).collect();
    for (i, &size) in sizes.iter().enumerate() {
        a.send(Bytes::from(vec![i as u8; size])).await.unwrap();
    }
    for (i, &size) in sizes.iter().enumerate() {
        let got = recv(&b).await;
        assert_eq!(got.len(), size, "frame {i} has the wrong length: boundaries not kept");
        assert!(got.iter().all(|&x| x == i as u8), "frame {i} carries another frame's bytes");
    }
}

/// A frame of exactly `max_frame_size` arrives; one byte more is refused with
/// `FrameTooLarge` and the socket stays usable.
pub async fn maximum_frame_size(a: BoxSocket, b: BoxSocket) {
    let max = a.info().max_frame_size;
    let err = a.send(Bytes::from(vec![1u8; max + 1])).await.expect_err("oversized frame was accepted");
    assert!(matches!(err, Error::FrameTooLarge { size, max: m } if size == max + 1 && m == max), "got {err}");
    let big = frame(9, max);
    a.send(big.clone()).await.unwrap();
    assert_eq!(recv(&b).await, big, "maximum-size frame damaged");
    a.send(frame(10, 8)).await.unwrap();
    assert_eq!(recv(&b).await, frame(10, 8), "socket unusable after a refused frame");
}

/// A sender facing a reader that does not read is held back instead of buffering
/// without bound; once the reader reads, everything arrives in order.
pub async fn backpressure(a: BoxSocket, b: BoxSocket) {
    let a = Arc::new(a);
    let size = a.info().max_frame_size.min(16 * 1024);
    let limit_bytes = 256 * 1024 * 1024;
    let total = (limit_bytes / size) as u32;
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (a, sent) = (a.clone(), sent.clone());
        tokio::spawn(async move {
            for seq in 0..total {
                a.send(frame(seq, size)).await.unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // Wait until the sender stalls: no progress for half a second.
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = sent.load(Ordering::SeqCst);
        if now == last || now == total as usize {
            break;
        }
        last = now;
    }
    let stalled_at = sent.load(Ordering::SeqCst);
    assert!(
        stalled_at < total as usize,
        "sender pushed {} MiB into a socket nobody reads: no backpressure",
        limit_bytes / (1024 * 1024)
    );
    // Drain a little and check the sender moves again, then stop it.
    for seq in 0..(stalled_at as u32 + 8).min(total) {
        assert_eq!(recv(&b).await, frame(seq, size), "frame {seq} lost or reordered under backpressure");
    }
    sender.abort();
}

/// A close is seen by both sides with the closer's reason; frames sent before
/// it still arrive.
pub async fn close_seen_by_both_sides(a: BoxSocket, b: BoxSocket) {
    a.send(frame(1, 16)).await.unwrap();
    a.close(CloseReason::new(CloseCode::Normal, "conformance done")).await;
    assert_eq!(recv(&b).await, frame(1, 16), "frame sent before close was lost");
    let remote = tokio::time::timeout(PROMPT, b.closed()).await.expect("peer never saw the close");
    assert_eq!(remote.code, CloseCode::Normal);
    assert_eq!(remote.message, "conformance done");
    assert_eq!(remote.by, ClosedBy::Remote);
    match a.state() {
        SocketState::Closed(local) => assert_eq!(local.by, ClosedBy::Local),
        SocketState::Open => panic!("closing side still open"),
    }
    assert!(matches!(b.state(), SocketState::Closed(_)));
}

/// After a close, sends and receives fail cleanly on both sides.
pub async fn send_after_close_fails(a: BoxSocket, b: BoxSocket) {
    a.close(CloseReason::new(CloseCode::GoingAway, "leaving")).await;
    tokio::time::timeout(PROMPT, b.closed()).await.expect("peer never saw the close");
    for (side, socket) in [("closer", &a), ("peer", &b)] {
        let err = socket.send(frame(1, 8)).await.expect_err("send after close succeeded");
        assert!(matches!(err, Error::Closed { .. }), "{side}: send after close gave {err}");
        let err = tokio::time::timeout(PROMPT, socket.recv()).await.expect("recv hung").expect_err("recv after close");
        assert!(matches!(err, Error::Closed { .. }), "{side}: recv after close gave {err}");
    }
    a.close(CloseReason::normal("twice")).await;
}

/// Connects two fresh devices that trust each other over a socket pair: "alice"
/// dials over `dialer` expecting "bob", who accepts over `acceptor`. Panics if the
/// handshake fails or either side authenticated someone else.
pub async fn connect_trusting(dialer: BoxSocket, acceptor: BoxSocket) -> (Connection, Connection) {
    connect_trusting_with(dialer, acceptor, &crate::handshake::TransportCipher::preferred()).await
}

/// [`connect_trusting`] with both sides accepting only `ciphers` for the transport
/// frames (see [`ConnectionConfig::with_ciphers`]).
pub async fn connect_trusting_with(
    dialer: BoxSocket,
    acceptor: BoxSocket,
    ciphers: &[crate::handshake::TransportCipher],
) -> (Connection, Connection) {
    let alice = Arc::new(DeviceKeys::generate("alice").unwrap());
    let bob = Arc::new(DeviceKeys::generate("bob").unwrap());
    let trust = |_: &DeviceInfo| TrustLevel::Trusted;
    let config = |keys| ConnectionConfig::new(keys, trust).with_ciphers(ciphers.iter().copied());
    let (dialed, accepted) = tokio::join!(
        Connection::connect(dialer, config(alice.clone()), Some(bob.device_id())),
        Connection::accept(acceptor, config(bob.clone())),
    );
    let (dialed, accepted) = (dialed.expect("connect failed"), accepted.expect("accept failed"));
    assert_eq!(dialed.remote().device_id, bob.device_id());
    assert_eq!(accepted.remote().device_id, alice.device_id());
    (dialed, accepted)
}

/// A full handshake and RPCs both ways run over the socket.
pub async fn handshake_and_rpc(a: BoxSocket, b: BoxSocket) {
    let (dialer, listener) = connect_trusting(a, b).await;
    dialer.expose_rpc("whoami", |(): ()| async { Ok::<_, RemoteError>("alice".to_string()) });
    listener.expose_rpc("echo", |data: serde_bytes::ByteBuf| async move { Ok::<_, RemoteError>(data) });
    let payload = serde_bytes::ByteBuf::from(vec![7u8; 300_000]);
    let echoed: serde_bytes::ByteBuf = dialer.emit("echo", &payload).await.expect("echo failed");
    assert_eq!(echoed, payload);
    let name: String = listener.emit("whoami", &()).await.expect("whoami failed");
    assert_eq!(name, "alice");
    dialer.close(CloseReason::normal("bye")).await;
    let reason = tokio::time::timeout(PROMPT, listener.closed()).await.expect("peer never saw the close");
    assert_eq!(reason.message, "bye");
}

/// Generates the conformance tests for a transport: every check runs twice,
/// in module `dialer_side` with the dialing socket as `a` and in module
/// `acceptor_side` with the roles swapped. `$factory` is the name of an async fn
/// in the calling module that returns a fresh `(dialer, acceptor)` pair of
/// `BoxSocket`s.
#[macro_export]
macro_rules! socket_conformance_tests {
    ($factory:ident) => {
        mod dialer_side {
            async fn pair() -> ($crate::BoxSocket, $crate::BoxSocket) {
                super::$factory().await
            }
            $crate::socket_conformance_tests!(@checks false);
        }
        mod acceptor_side {
            async fn pair() -> ($crate::BoxSocket, $crate::BoxSocket) {
                super::$factory().await
            }
            $crate::socket_conformance_tests!(@checks true);
        }
    };
    (@checks $swap:literal) => {
        $crate::socket_conformance_tests!(@one $swap;
            ordered_and_reliable, message_boundaries, maximum_frame_size, backpressure,
            close_seen_by_both_sides, send_after_close_fails, handshake_and_rpc);
    };
    (@one $swap:literal; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (dialer, acceptor) = pair().await;
                let (a, b) = if $swap { (acceptor, dialer) } else { (dialer, acceptor) };
                $crate::conformance::$check(a, b).await;
            }
        )*
    };
}
