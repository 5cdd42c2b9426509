//! `Connection::idle`, `in_flight` and `last_received`: what a connection
//! manager drains on and checks liveness with.

use std::sync::Arc;
use std::time::{Duration, Instant};

use peers_sdk::rpc::RemoteError;
use peers_sdk::{
    CloseCode, CloseReason, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, MemorySocket, TrustLevel,
};
use tokio::sync::Notify;

fn config(user: &str) -> ConnectionConfig {
    let keys = Arc::new(DeviceKeys::generate(user).unwrap());
    ConnectionConfig::new(keys, |_: &DeviceInfo| TrustLevel::Trusted)
}

async fn pair() -> (Connection, Connection) {
    let (x, y) = MemorySocket::pair(64, 64 * 1024);
    let (a, b) = tokio::join!(
        Connection::connect(Box::new(x), config("alice"), None),
        Connection::accept(Box::new(y), config("bob"))
    );
    (a.unwrap(), b.unwrap())
}

/// Whether `idle()` completes within a short grace.
async fn idles(connection: &Connection) -> bool {
    tokio::time::timeout(Duration::from_millis(200), connection.idle()).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_waits_for_calls_and_streams_in_flight_and_completes_when_they_end() {
    let (a, b) = pair().await;
    assert!(idles(&a).await, "nothing in flight");
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    b.expose_rpc("slow", move |(): ()| {
        let gate = gate.clone();
        async move {
            gate.notified().await;
            Ok::<_, RemoteError>(())
        }
    });
    let caller = a.clone();
    let call = tokio::spawn(async move { caller.emit::<_, ()>("slow", &()).await });
    tokio::time::timeout(Duration::from_secs(5), async {
        while a.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert!(!idles(&a).await, "a call is in flight");
    let waiting = tokio::spawn({
        let a = a.clone();
        async move { a.idle().await }
    });
    release.notify_one();
    call.await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("idle after the reply").unwrap();

    // An open outgoing stream counts until its writer is finished.
    b.expose_stream("sink", |(): (), mut reader: peers_sdk::StreamReader| async move {
        while let Ok(Some(_)) = reader.next().await {}
        Ok::<_, RemoteError>(())
    });
    let mut writer = a.open_stream("sink", &()).await.unwrap();
    writer.write(b"some bytes").await.unwrap();
    assert_eq!(a.in_flight(), 1);
    assert!(!idles(&a).await, "a stream is open");
    writer.finish().await.unwrap();
    assert!(idles(&a).await, "the stream ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_received_moves_with_every_frame_and_idle_ends_at_close() {
    let (a, b) = pair().await;
    b.expose_rpc("echo", |x: u32| async move { Ok::<_, RemoteError>(x) });
    let before = a.last_received();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let sent = Instant::now();
    let _: u32 = a.emit("echo", &7).await.unwrap();
    assert!(a.last_received() >= sent, "the reply counts as hearing the peer");
    assert!(a.last_received() > before);

    // A call that never gets an answer: closing ends the wait.
    b.expose_rpc("never", |(): ()| async { std::future::pending::<Result<(), RemoteError>>().await });
    let caller = a.clone();
    let _call = tokio::spawn(async move { caller.emit::<_, ()>("never", &()).await });
    tokio::time::timeout(Duration::from_secs(5), async {
        while a.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert!(!idles(&a).await);
    a.close(CloseReason::new(CloseCode::Normal, "done")).await;
    assert!(idles(&a).await, "a closed connection has nothing in flight");
}
