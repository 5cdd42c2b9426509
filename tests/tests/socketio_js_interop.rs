//! Our socket.io server against the standard JavaScript client (`socket.io-client`
//! 4.x, driven by `tests/js/socketio_client.mjs`): the JavaScript side performs our
//! hello, exchanges binary and base64 frames both ways under credit flow control,
//! and closes with a reason, over WebSocket and over HTTP long-polling.

use std::time::Duration;

use bytes::Bytes;
use peers_sdk::socket::{ClosedBy, Locality, TransportKind};
use peers_sdk::{CloseCode, CloseReason, Socket};
use peers_tests::JsClient;
use peers_transport_socketio::{FrameLimits, ServerOptions, SocketIoServer, SocketIoSocket};
use serde_json::Value;

const DRIVER: &str = "socketio_client.mjs";
const STEP: Duration = Duration::from_secs(10);
/// The `maxFrame` the driver announces.
const JS_MAX_FRAME: usize = 256 * 1024 + 4096;

/// The bytes both sides agree on (the driver's `pattern`): 0x1e and 0x1d occur
/// every few bytes, so any record-separator mangling shows.
fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (seed.wrapping_mul(131).wrapping_add(j * 7).wrapping_add(j >> 8) & 0xff) as u8).collect()
}

/// A frame for the driver to check and echo: (seed, length) then the pattern.
fn server_frame(seed: u32, len: usize) -> Bytes {
    let mut frame = pattern(seed as usize, len);
    frame[..4].copy_from_slice(&seed.to_le_bytes());
    frame[4..8].copy_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
    Bytes::from(frame)
}

/// `--send` for the driver.
fn plan_arg(plan: &[(usize, char)]) -> String {
    plan.iter().map(|(size, kind)| format!("{size}:{kind}")).collect::<Vec<_>>().join(",")
}

/// What socket.io-client dials: the origin only (the path of its URL would name
/// the namespace; the request path is an option, `/socket.io` by default).
fn origin(server: &SocketIoServer) -> String {
    format!("http://{}", server.local_addr())
}

async fn recv(socket: &SocketIoSocket) -> Bytes {
    tokio::time::timeout(STEP, socket.recv()).await.expect("no frame in time").expect("socket closed early")
}

/// Checks the server's hello as the driver saw it: our defaults, raw binary.
fn check_server_hello(event: &Value, transport: &str) {
    let hello = &event["hello"];
    let limits = FrameLimits::default();
    assert_eq!(hello["v"], 1, "{event}");
    assert_eq!(hello["maxFrame"], limits.max_frame_size as u64, "{event}");
    assert_eq!(hello["window"]["frames"], limits.recv_window_frames, "{event}");
    assert_eq!(hello["window"]["bytes"], limits.recv_window_bytes, "{event}");
    assert_ne!(hello["escapeRecordSeparators"], true, "the server asks nothing of a JS client: {event}");
    assert_eq!(event["transport"], transport, "{event}");
}

/// Receives the driver's frames and checks each against the plan.
async fn receive_plan(accepted: &SocketIoSocket, plan: &[(usize, char)]) {
    for (i, (size, kind)) in plan.iter().enumerate() {
        let frame = recv(accepted).await;
        assert_eq!(frame.len(), *size, "frame {i} ({kind}) has the wrong size");
        assert!(frame[..] == pattern(i, *size)[..], "frame {i} ({size} bytes, {kind}) arrived damaged");
    }
}

/// Sends `sizes` as checkable frames and, at the same time, receives the echoes;
/// then "done", and the driver's summary.
async fn echo_round(accepted: &SocketIoSocket, sizes: &[usize]) {
    let frames: Vec<Bytes> = sizes.iter().enumerate().map(|(i, &len)| server_frame(1000 + i as u32, len)).collect();
    let send_all = async {
        for frame in &frames {
            tokio::time::timeout(STEP, accepted.send(frame.clone())).await.expect("send stalled").unwrap();
        }
        accepted.send(Bytes::from_static(b"done")).await.unwrap();
    };
    let check_echoes = async {
        for (i, frame) in frames.iter().enumerate() {
            let echo = recv(accepted).await;
            assert!(echo == frame, "echo {i} ({} bytes) differs from what was sent", frame.len());
        }
        let summary: Value = serde_json::from_slice(&recv(accepted).await).expect("the summary frame is JSON");
        assert_eq!(summary["echoed"], frames.len(), "{summary}");
        assert_eq!(summary["echoedBytes"], sizes.iter().sum::<usize>(), "{summary}");
    };
    tokio::join!(send_all, check_echoes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_client_exchanges_frames_over_websocket_and_closes_with_a_reason() {
    let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
    // More than the server's 4 MiB window in total, so the driver must wait for
    // credit; text frames up to 200 KB, binary up to the maximum frame.
    let max = FrameLimits::default().max_frame_size;
    let plan = [
        (1, 't'),
        (8, 'b'),
        (1000, 't'),
        (4096, 'b'),
        (65_536, 't'),
        (200_000, 't'),
        (300_000, 'b'),
        (1 << 20, 'b'),
        (max, 'b'),
        (1 << 20, 'b'),
        (max, 'b'),
        (7, 'b'),
    ];
    let mut js = JsClient::spawn(DRIVER, &[&origin(&server), "--transport", "websocket", "--send", &plan_arg(&plan)]);
    check_server_hello(&js.expect_event("server_hello", STEP).await, "websocket");

    let accepted = tokio::time::timeout(STEP, server.accept()).await.expect("no socket accepted").unwrap();
    let info = accepted.info();
    assert_eq!(info.transport, TransportKind::SocketIo);
    assert_eq!(info.locality, Locality::Loopback);
    assert_eq!(info.max_frame_size, JS_MAX_FRAME, "the smaller of the two hellos' maxFrame");

    receive_plan(&accepted, &plan).await;
    assert_eq!(js.expect_event("sent", STEP).await["frames"], plan.len());

    // Several times the driver's window of 4 frames / 2 × 260 KiB: our sends wait
    // for its grants.
    let sizes = [8, 100, 30_000, 65_536, 200_000, JS_MAX_FRAME, 9, JS_MAX_FRAME, 12_345, JS_MAX_FRAME, 64, 8];
    echo_round(&accepted, &sizes).await;

    let reason = tokio::time::timeout(STEP, accepted.closed()).await.expect("the driver's close never arrived");
    assert_eq!((reason.code, reason.by), (CloseCode::Normal, ClosedBy::Remote), "{reason}");
    assert_eq!(reason.message, "js client done");
    assert!(accepted.recv().await.is_err(), "nothing after the close");

    js.expect_event("close_sent", STEP).await;
    let (status, stderr) = js.wait(STEP).await;
    assert!(status.success(), "driver failed: {status}\n{stderr}");
    // The close notice frees the connection slot.
    drop(accepted);
    wait_until(|| server.acceptor().connections() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_client_over_long_polling_hears_why_the_server_closes() {
    let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
    let max = FrameLimits::default().max_frame_size;
    let plan = [(16, 'b'), (70_000, 't'), (max, 'b'), (3, 't')];
    let mut js = JsClient::spawn(
        DRIVER,
        &[&origin(&server), "--transport", "polling", "--send", &plan_arg(&plan), "--close-by", "server"],
    );
    check_server_hello(&js.expect_event("server_hello", STEP).await, "polling");
    let accepted = tokio::time::timeout(STEP, server.accept()).await.expect("no socket accepted").unwrap();
    receive_plan(&accepted, &plan).await;
    echo_round(&accepted, &[8, 5000, JS_MAX_FRAME, 100]).await;

    // A frame sent just before the close still arrives first.
    accepted.send(server_frame(7, 64)).await.unwrap();
    accepted.close(CloseReason::new(CloseCode::GoingAway, "rust server says goodbye")).await;
    let reason = accepted.closed().await;
    assert_eq!((reason.code, reason.by), (CloseCode::GoingAway, ClosedBy::Local), "{reason}");

    let notice = js.expect_event("close_received", STEP).await;
    assert_eq!(notice["notice"]["code"], "GoingAway", "{notice}");
    assert_eq!(notice["notice"]["message"], "rust server says goodbye", "{notice}");
    assert_eq!(notice["framesReceived"], 4 + 1 + 1, "the echoed frames, \"done\" and the last frame: {notice}");
    let (status, stderr) = js.wait(STEP).await;
    assert!(status.success(), "driver failed: {status}\n{stderr}");
}

async fn wait_until(mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {STEP:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
