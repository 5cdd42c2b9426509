//! `Connection` RPC behaviour over the in-memory pair: what a user of the API sees.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use peers_sdk::rpc::{RemoteError, RemoteErrorCode};
use peers_sdk::{
    CloseCode, CloseReason, Connection, ConnectionConfig, ConnectionState, DeviceInfo, DeviceKeys, Error, MemorySocket,
    TrustLevel,
};
use serde_bytes::ByteBuf;

fn config(user: &str) -> ConnectionConfig {
    let keys = Arc::new(DeviceKeys::generate(user).unwrap());
    ConnectionConfig::new(keys, |_: &DeviceInfo| TrustLevel::Trusted)
}

async fn pair_with(a: ConnectionConfig, b: ConnectionConfig) -> (Connection, Connection) {
    let (x, y) = MemorySocket::pair(64, 64 * 1024);
    let (dialer, listener) =
        tokio::join!(Connection::connect(Box::new(x), a, None), Connection::accept(Box::new(y), b));
    (dialer.unwrap(), listener.unwrap())
}

async fn pair() -> (Connection, Connection) {
    pair_with(config("alice"), config("bob")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_message_arrives_intact_both_ways() {
    let (a, b) = pair().await;
    let handler = |data: ByteBuf| async move {
        let sum: u64 = data.iter().map(|&x| u64::from(x)).sum();
        Ok::<_, RemoteError>((data, sum))
    };
    a.expose_rpc("echo", handler);
    b.expose_rpc("echo", handler);
    let payload: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let expected_sum: u64 = payload.iter().map(|&x| u64::from(x)).sum();
    let payload = ByteBuf::from(payload);
    let (back, sum): (ByteBuf, u64) = a.emit("echo", &payload).await.unwrap();
    assert_eq!(sum, expected_sum);
    assert!(back == payload, "16 MiB echo came back different");
    let (back, _): (ByteBuf, u64) = b.emit("echo", &payload).await.unwrap();
    assert!(back == payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_each_get_their_own_reply() {
    let (a, b) = pair().await;
    b.expose_rpc("square", |x: u64| async move {
        // Finish out of order on purpose.
        tokio::time::sleep(Duration::from_micros((x * 7919) % 3000)).await;
        Ok::<_, RemoteError>(x * x)
    });
    let mut calls = tokio::task::JoinSet::new();
    for x in 0..1000u64 {
        let a = a.clone();
        calls.spawn(async move { (x, a.emit::<_, u64>("square", &x).await) });
    }
    let mut seen = 0;
    while let Some(done) = calls.join_next().await {
        let (x, result) = done.unwrap();
        assert_eq!(result.unwrap(), x * x, "call {x} got another call's reply");
        seen += 1;
    }
    assert_eq!(seen, 1000);
    assert_eq!(a.pending_calls(), 0);
}

#[tokio::test]
async fn remote_errors_come_back_as_values() {
    let (a, b) = pair().await;
    b.expose_rpc("fail", |(): ()| async { Err::<(), _>(RemoteError::handler("disk full")) });
    b.expose_rpc("panic", |(): ()| async {
        if true {
            panic!("handler bug");
        }
        Ok::<(), RemoteError>(())
    });
    let err = a.emit::<_, ()>("fail", &()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Remote(e) if e.code == RemoteErrorCode::Handler && e.message == "disk full"),
        "{err}"
    );
    let err = a.emit::<_, ()>("panic", &()).await.unwrap_err();
    assert!(matches!(&err, Error::Remote(e) if e.code == RemoteErrorCode::Internal), "{err}");
    let err = a.emit::<_, ()>("missing", &()).await.unwrap_err();
    assert!(matches!(&err, Error::Remote(e) if e.code == RemoteErrorCode::UnknownMethod), "{err}");
    b.expose_rpc("ok", |(): ()| async { Ok::<_, RemoteError>(1u8) });
    assert_eq!(a.emit::<_, u8>("ok", &()).await.unwrap(), 1, "connection unusable after remote errors");
    b.remove_rpc("ok");
    assert!(matches!(a.emit::<_, u8>("ok", &()).await, Err(Error::Remote(_))));
}

#[tokio::test]
async fn timed_out_calls_leave_nothing_behind_and_late_replies_are_dropped() {
    let (a, b) = pair().await;
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    b.expose_rpc("slow", move |(): ()| {
        let gate = gate.clone();
        async move {
            gate.notified().await;
            Ok::<_, RemoteError>(1u8)
        }
    });
    for _ in 0..20 {
        let err = a.emit_with_timeout::<_, u8>("slow", &(), Duration::from_millis(20)).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
    }
    assert_eq!(a.pending_calls(), 0, "timed-out calls leaked callbacks");
    release.notify_waiters();
    tokio::time::sleep(Duration::from_millis(50)).await;
    b.expose_rpc("fast", |(): ()| async { Ok::<_, RemoteError>(2u8) });
    assert_eq!(a.emit::<_, u8>("fast", &()).await.unwrap(), 2, "late replies disturbed the connection");
    assert_eq!(a.state(), ConnectionState::Verified);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_calls_fail_at_once_when_the_peer_closes() {
    let (a, b) = pair().await;
    b.expose_rpc("never", |(): ()| std::future::pending::<Result<(), RemoteError>>());
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let a = a.clone();
        calls.spawn(async move { a.emit_with_timeout::<_, ()>("never", &(), Duration::from_secs(60)).await });
    }
    while a.pending_calls() < 50 {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    b.close(CloseReason::new(CloseCode::Normal, "shutting down")).await;
    while let Some(done) = calls.join_next().await {
        let err = done.unwrap().unwrap_err();
        assert!(
            matches!(&err, Error::Closed { reason } if reason.message == "shutting down" && reason.code == CloseCode::Normal),
            "{err}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(2), "pending calls waited {:?}", started.elapsed());
    assert_eq!(a.pending_calls(), 0);
    assert!(matches!(a.state(), ConnectionState::Closed(_)));
    assert!(matches!(a.emit::<_, ()>("never", &()).await, Err(Error::Closed { .. })));
}

#[tokio::test]
async fn calls_in_flight_are_capped() {
    let mut cfg = config("alice");
    cfg.max_calls_in_flight = 4;
    let (a, b) = pair_with(cfg, config("bob")).await;
    b.expose_rpc("never", |(): ()| std::future::pending::<Result<(), RemoteError>>());
    let mut calls = Vec::new();
    for _ in 0..4 {
        let a = a.clone();
        calls.push(tokio::spawn(async move { a.emit::<_, ()>("never", &()).await }));
    }
    while a.pending_calls() < 4 {
        tokio::task::yield_now().await;
    }
    let err = a.emit::<_, ()>("never", &()).await.unwrap_err();
    assert!(matches!(err, Error::TooManyCallsInFlight { max: 4 }), "{err}");
    a.close(CloseReason::normal("done")).await;
    for call in calls {
        assert!(matches!(call.await.unwrap(), Err(Error::Closed { .. })));
    }
}

#[tokio::test]
async fn lifecycle_events_and_drop_closes_the_connection() {
    let (a, b) = pair().await;
    let mut events = b.watch_state();
    assert_eq!(*events.borrow_and_update(), ConnectionState::Verified);
    assert!(a.trust() >= TrustLevel::Known);
    assert_eq!(a.session_id(), b.session_id());
    assert!(a.is_encrypted(), "memory pair has no bound encryption: our AEAD must be on");
    drop(a);
    events.changed().await.unwrap();
    match &*events.borrow() {
        ConnectionState::Closed(reason) => assert_eq!(reason.code, CloseCode::GoingAway),
        other => panic!("expected closed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_does_not_block_other_calls() {
    let (a, b) = pair().await;
    let count = Arc::new(AtomicUsize::new(0));
    b.expose_rpc("block", |(): ()| std::future::pending::<Result<(), RemoteError>>());
    let counter = count.clone();
    b.expose_rpc("tick", move |(): ()| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, RemoteError>(()) }
    });
    let blocked = a.clone();
    let _stuck = tokio::spawn(async move { blocked.emit::<_, ()>("block", &()).await });
    for _ in 0..100 {
        a.emit::<_, ()>("tick", &()).await.unwrap();
    }
    assert_eq!(count.load(Ordering::SeqCst), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_still_running_are_cancelled_when_the_connection_closes() {
    struct DropFlag(Arc<AtomicUsize>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let (a, b) = pair().await;
    let started = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (s, d) = (started.clone(), dropped.clone());
    b.expose_rpc("hang", move |(): ()| {
        s.fetch_add(1, Ordering::SeqCst);
        let flag = DropFlag(d.clone());
        async move {
            let _flag = flag;
            std::future::pending::<Result<(), RemoteError>>().await
        }
    });
    let mut calls = Vec::new();
    for _ in 0..10 {
        let a = a.clone();
        calls.push(tokio::spawn(async move { a.emit::<_, ()>("hang", &()).await }));
    }
    while started.load(Ordering::SeqCst) < 10 {
        tokio::task::yield_now().await;
    }
    a.close(CloseReason::normal("bye")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while dropped.load(Ordering::SeqCst) < 10 {
        assert!(Instant::now() < deadline, "handlers outlived the connection");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for call in calls {
        assert!(matches!(call.await.unwrap(), Err(Error::Closed { .. })));
    }
}

/// Handlers installed by the config's set-up answer the first call each side
/// makes the moment its `connect` or `accept` returns, stream handlers included
/// (a handler registered after `accept` returns can miss that call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_handlers_answer_the_first_call_on_both_sides() {
    let with_handlers = |user: &str| {
        config(user).with_setup(|connection| {
            let peer = connection.remote().user_id.clone();
            connection.expose_rpc("who", move |(): ()| {
                let peer = peer.clone();
                async move { Ok::<_, RemoteError>(peer) }
            });
            connection.expose_stream("sink", |(): (), mut reader: peers_sdk::StreamReader| async move {
                while reader.next().await.map_err(RemoteError::handler)?.is_some() {}
                Ok(())
            });
        })
    };
    for _ in 0..50 {
        let (x, y) = MemorySocket::pair(64, 64 * 1024);
        let (a, b) = tokio::join!(
            async {
                let a = Connection::connect(Box::new(x), with_handlers("alice"), None).await.unwrap();
                let who: String = a.emit("who", &()).await.unwrap();
                (a, who)
            },
            async {
                let b = Connection::accept(Box::new(y), with_handlers("bob")).await.unwrap();
                // The accepting side's first act is a stream, then a call.
                let mut writer = b.open_stream("sink", &()).await.unwrap();
                writer.write(b"first").await.unwrap();
                writer.finish().await.unwrap();
                let who: String = b.emit("who", &()).await.unwrap();
                (b, who)
            },
        );
        assert_eq!((a.1.as_str(), b.1.as_str()), ("alice", "bob"));
    }
}
