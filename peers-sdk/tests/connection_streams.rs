//! Streams over a `Connection`: large payloads with progress and backpressure.

use std::sync::Arc;
use std::time::Duration;

use peers_sdk::rpc::{RemoteError, RemoteErrorCode};
use peers_sdk::{CloseReason, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, Error, MemorySocket, TrustLevel};
use tokio::sync::{Notify, oneshot};

const WINDOW: u64 = 1024 * 1024;

fn config(user: &str) -> ConnectionConfig {
    let keys = Arc::new(DeviceKeys::generate(user).unwrap());
    let mut config = ConnectionConfig::new(keys, |_: &DeviceInfo| TrustLevel::Trusted);
    config.stream_window = WINDOW;
    config
}

async fn pair() -> (Connection, Connection) {
    let (x, y) = MemorySocket::pair(64, 64 * 1024);
    let (a, b) = tokio::join!(
        Connection::connect(Box::new(x), config("alice"), None),
        Connection::accept(Box::new(y), config("bob"))
    );
    (a.unwrap(), b.unwrap())
}

fn data(len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_stream_arrives_intact_with_progress_on_both_sides() {
    let (a, b) = pair().await;
    let (got_tx, got_rx) = oneshot::channel();
    let got_tx = std::sync::Mutex::new(Some(got_tx));
    b.expose_stream("file", move |name: String, mut reader| {
        let tx = got_tx.lock().unwrap().take();
        async move {
            let mut received = Vec::new();
            while let Some(piece) = reader.next().await.map_err(RemoteError::handler)? {
                received.extend_from_slice(&piece);
            }
            assert_eq!(reader.progress().transferred, received.len() as u64);
            tx.unwrap().send((name, received)).unwrap();
            Ok(())
        }
    });
    let payload = data(20 * 1024 * 1024 + 123);
    let mut writer = a.open_stream("file", "photo.raw").await.unwrap();
    let progress = writer.watch_progress();
    for piece in payload.chunks(3 * 1024 * 1024 + 7) {
        writer.write(piece).await.unwrap();
    }
    let sent = writer.progress();
    writer.finish().await.unwrap();
    let (name, received) = got_rx.await.unwrap();
    assert_eq!(name, "photo.raw");
    assert!(received == payload, "stream content differs");
    assert_eq!(sent.transferred, payload.len() as u64);
    let seen = *progress.borrow();
    assert!(seen.consumed + WINDOW / 2 >= payload.len() as u64, "consumed progress lags: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_holds_the_writer_to_one_window() {
    let (a, b) = pair().await;
    let go = Arc::new(Notify::new());
    let gate = go.clone();
    b.expose_stream("slow", move |(): (), mut reader| {
        let gate = gate.clone();
        async move {
            gate.notified().await;
            let mut total = 0;
            while let Some(piece) = reader.next().await.map_err(RemoteError::handler)? {
                total += piece.len();
            }
            assert_eq!(total, 16 * 1024 * 1024);
            Ok(())
        }
    });
    let mut writer = a.open_stream("slow", &()).await.unwrap();
    let mut progress = writer.watch_progress();
    let payload = data(16 * 1024 * 1024);
    let task = tokio::spawn(async move {
        writer.write(&payload).await.unwrap();
        writer.finish().await
    });
    // Once the writer has started, give it ample time to overrun the window.
    tokio::time::timeout(Duration::from_secs(10), progress.wait_for(|p| p.transferred > 0)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stalled = progress.borrow().transferred;
    assert!(stalled <= WINDOW, "writer sent {stalled} bytes to a reader that reads nothing (window {WINDOW})");
    go.notify_one();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn the_receivers_verdict_reaches_the_sender() {
    let (a, b) = pair().await;
    b.expose_stream("reject", |(): (), _reader| async { Err(RemoteError::handler("quota exceeded")) });
    let writer = a.open_stream("reject", &()).await.unwrap();
    let err = writer.finish().await.unwrap_err();
    assert!(matches!(&err, Error::Remote(e) if e.message == "quota exceeded"), "{err}");

    let writer = a.open_stream("nobody-home", &()).await.unwrap();
    let err = writer.finish().await.unwrap_err();
    assert!(matches!(&err, Error::Remote(e) if e.code == RemoteErrorCode::UnknownMethod), "{err}");
}

#[tokio::test]
async fn an_abandoned_stream_fails_the_reader() {
    let (a, b) = pair().await;
    let (tx, rx) = oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    b.expose_stream("partial", move |(): (), mut reader| {
        let tx = tx.lock().unwrap().take().unwrap();
        async move {
            let mut outcome = Ok(0usize);
            loop {
                match reader.next().await {
                    Ok(Some(piece)) => *outcome.as_mut().unwrap() += piece.len(),
                    Ok(None) => break,
                    Err(e) => {
                        outcome = Err(e.to_string());
                        break;
                    }
                }
            }
            tx.send(outcome).unwrap();
            Ok(())
        }
    });
    let mut writer = a.open_stream("partial", &()).await.unwrap();
    writer.write(&data(1000)).await.unwrap();
    drop(writer);
    let outcome = tokio::time::timeout(Duration::from_secs(5), rx).await.unwrap().unwrap();
    assert!(outcome.as_ref().is_err_and(|e| e.contains("abandoned")), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_connection_fails_a_blocked_writer_at_once() {
    let (a, b) = pair().await;
    b.expose_stream("never-read", |(): (), _reader| std::future::pending::<Result<(), RemoteError>>());
    let mut writer = a.open_stream("never-read", &()).await.unwrap();
    let task = tokio::spawn(async move { writer.write(&data(8 * 1024 * 1024)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.close(CloseReason::normal("going away")).await;
    let result = tokio::time::timeout(Duration::from_secs(5), task).await.expect("writer hung").unwrap();
    assert!(matches!(result, Err(Error::Closed { .. })), "{result:?}");
}

/// Issue 13: every incoming stream runs in one of the handler slots it shares
/// with calls and counts against `max_incoming_streams`; beyond either limit a
/// stream is refused with `Busy`, and refusing many grows nothing.
#[tokio::test]
async fn streams_beyond_the_limits_are_refused_busy_and_grow_nothing() {
    // (max_incoming_streams, max_concurrent_handlers): each limit binding in turn.
    for (streams, slots) in [(2, 64), (64, 2)] {
        let (x, y) = MemorySocket::pair(64, 64 * 1024);
        let mut limited = config("bob");
        limited.max_incoming_streams = streams;
        limited.max_concurrent_handlers = slots;
        let (a, b) = tokio::join!(
            Connection::connect(Box::new(x), config("alice"), None),
            Connection::accept(Box::new(y), limited)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let gate = release.clone();
        b.expose_stream("held", move |(): (), _reader| {
            let gate = gate.clone();
            async move {
                let _ = gate.acquire().await;
                Ok(())
            }
        });
        let admitted = streams.min(slots);
        let mut held = Vec::new();
        for _ in 0..admitted {
            let mut writer = a.open_stream("held", &()).await.unwrap();
            writer.write(b"x").await.unwrap();
            writer.flush().await.unwrap();
            held.push(writer);
        }
        let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();
        for _ in 0..500 {
            let writer = a.open_stream("held", &()).await.unwrap();
            let err = writer.finish().await.unwrap_err();
            assert!(matches!(&err, Error::Remote(e) if e.code == RemoteErrorCode::Busy), "{err}");
        }
        let after = tokio::runtime::Handle::current().metrics().num_alive_tasks();
        assert!(after <= tasks + 2, "refused streams left tasks behind: {tasks} before, {after} after");
        // The admitted streams still work once released.
        release.add_permits(admitted);
        for writer in held {
            writer.finish().await.unwrap();
        }
    }
}
