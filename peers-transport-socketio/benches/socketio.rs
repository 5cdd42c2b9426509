//! The socket.io transport against socket.io without our stack, in the same run.
//!
//! **P1, throughput of 1 MiB messages**, each direction:
//!
//! - *raw*: socketioxide and `rust_socketio` alone, on a namespace of the same
//!   server (same engine, limits and `TCP_NODELAY`), 1 MiB binary events.
//!   Client → server: `emit` in a loop (it waits for the WebSocket write).
//!   Server → client: `emit` with at most 4 MiB unacknowledged (the client acks
//!   each message), the same bound our receive window sets; `rust_socketio` would
//!   split binary messages at 0x1e, so these payloads hold none.
//! - *SocketIoSocket*: our socket, 1 MiB frames, `send` in a loop, `recv` on the
//!   other side (credit flow control, escaping towards the client).
//! - *Connection*: RPCs `sink(1 MiB)` with 8 calls in flight over our socket: the
//!   whole stack (MessagePack, framing, AEAD, credit), once with each transport
//!   cipher: the one negotiated by default (AES-256-GCM on a CPU with AES
//!   instructions) and ChaCha20-Poly1305 forced by `ConnectionConfig::with_ciphers`.
//! - *Connection over MemorySocket*: the same RPCs without socket.io, the ceiling
//!   the stack itself sets on this machine, with each cipher.
//!
//! **P2, small RPCs**: round trips per second of a tiny value, one caller calling
//! in sequence and 32 callers at once. Baseline: a `rust_socketio` text event that
//! the server echoes (`"ping"` → `"pong"`, matched by id).
//!
//! Everything runs in one process on a multi-thread tokio runtime with 2 workers
//! (the machine's cores), both ends included. Each cell runs for the budget, rows
//! are interleaved in 3 rounds and the best round counts, so a busy machine slows
//! every row alike; the ratios are the figures to watch.
//!
//! `cargo bench -p peers-transport-socketio --bench socketio`; shorter: append
//! `-- --quick`, or set `PEERS_BENCH_SECONDS` to the seconds spent on each cell
//! (default 1.5).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use peers_sdk::conformance::connect_trusting_with;
use peers_sdk::handshake::TransportCipher;
use peers_sdk::rpc::RemoteError;
use peers_sdk::{Connection, MemorySocket, Socket};
use peers_transport_socketio::{ClientOptions, FrameLimits, ServerOptions, SocketIoServer, SocketIoSocket, connect};
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_bytes::ByteBuf;
use serde_json::{Value, json};
use socketioxide::extract::{Data, SocketRef};
use socketioxide::{SendError, SocketError};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;

const MIB: usize = 1 << 20;
const ROUNDS: usize = 3;
/// Connection RPCs in flight in P1.
const PIPELINE: usize = 8;
/// Raw server → client: bytes sent but not acknowledged, like our receive window.
const RAW_WINDOW: u64 = 4 * MIB as u64;
/// Concurrent callers in P2.
const CALLERS: usize = 32;
/// Namespace of the raw baseline on our server's socket.io instance.
const RAW_NAMESPACE: &str = "/raw";

fn cell_budget() -> Duration {
    if std::env::args().any(|a| a == "--quick") {
        return Duration::from_millis(250);
    }
    let seconds = std::env::var("PEERS_BENCH_SECONDS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(1.5);
    Duration::from_secs_f64(seconds.max(0.01))
}

fn random_bytes(len: usize) -> Vec<u8> {
    peers_sdk::testdata::incompressible(len, 0x5eed)
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

// ---------------------------------------------------------------------------
// The raw baseline: socketioxide handlers and a rust_socketio client.

/// What the raw server's handlers, the raw client's callbacks and the bench share.
#[derive(Default)]
struct RawShared {
    /// Bytes of "b" events the server received.
    server_received: AtomicU64,
    server_received_changed: Notify,
    /// Bytes of "b" events the client received.
    client_received: AtomicU64,
    /// What the client acknowledged (cumulative bytes).
    acked: AtomicU64,
    acked_changed: Notify,
    /// The client's "fin" callback: the value it carried.
    fin: Mutex<Option<mpsc::UnboundedSender<u64>>>,
    /// Client → server pings waiting for their pong, by id.
    pongs: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    next_ping: AtomicU64,
    /// Server → client pings: ids of the pongs the server got.
    server_pongs: Mutex<Option<mpsc::UnboundedSender<u64>>>,
}

struct RawPair {
    client: Client,
    server: SocketRef,
    shared: Arc<RawShared>,
    fin: tokio::sync::Mutex<mpsc::UnboundedReceiver<u64>>,
    server_pongs: tokio::sync::Mutex<mpsc::UnboundedReceiver<u64>>,
}

type Done = Pin<Box<dyn Future<Output = ()> + Send>>;

fn number(payload: &Payload) -> u64 {
    match payload {
        Payload::Text(values) => values.first().and_then(Value::as_u64).expect("a number"),
        other => panic!("expected a number, got {other:?}"),
    }
}

async fn raw_pair(server: &SocketIoServer) -> RawPair {
    let shared = Arc::new(RawShared::default());
    let (fin_tx, fin_rx) = mpsc::unbounded_channel();
    let (pong_tx, pong_rx) = mpsc::unbounded_channel();
    *shared.fin.lock().unwrap() = Some(fin_tx);
    *shared.server_pongs.lock().unwrap() = Some(pong_tx);

    let (socket_tx, mut socket_rx) = mpsc::unbounded_channel();
    let on_server = shared.clone();
    server.socket_io().ns(RAW_NAMESPACE, async move |socket: SocketRef| {
        let shared = on_server.clone();
        socket.on("b", {
            let shared = shared.clone();
            async move |Data(frame): Data<Bytes>| {
                shared.server_received.fetch_add(frame.len() as u64, Ordering::AcqRel);
                shared.server_received_changed.notify_waiters();
            }
        });
        // The client's end marker, with what it sent: answer once all of it is
        // counted (socketioxide runs handlers as separate tasks).
        socket.on("fin", {
            let shared = shared.clone();
            async move |socket: SocketRef, Data(sent): Data<u64>| {
                loop {
                    let changed = shared.server_received_changed.notified();
                    if shared.server_received.load(Ordering::Acquire) >= sent {
                        break;
                    }
                    changed.await;
                }
                let received = shared.server_received.swap(0, Ordering::AcqRel);
                socket.emit("fin", &received).unwrap();
            }
        });
        socket.on("ack", {
            let shared = shared.clone();
            async move |Data(total): Data<u64>| {
                shared.acked.fetch_max(total, Ordering::AcqRel);
                shared.acked_changed.notify_waiters();
            }
        });
        socket.on("ping", async move |socket: SocketRef, Data(id): Data<u64>| {
            socket.emit("pong", &id).unwrap();
        });
        socket.on("pong", {
            let shared = shared.clone();
            async move |Data(id): Data<u64>| {
                if let Some(tx) = &*shared.server_pongs.lock().unwrap() {
                    let _ = tx.send(id);
                }
            }
        });
        let _ = socket_tx.send(socket);
    });

    let on_b = shared.clone();
    let on_fin = shared.clone();
    let on_pong = shared.clone();
    let client = ClientBuilder::new(server.url())
        .namespace(RAW_NAMESPACE)
        .transport_type(TransportType::Websocket)
        .reconnect(false)
        .on("b", move |payload: Payload, client: Client| -> Done {
            let shared = on_b.clone();
            Box::pin(async move {
                let Payload::Binary(frame) = payload else { panic!("expected binary") };
                let total = shared.client_received.fetch_add(frame.len() as u64, Ordering::AcqRel) + frame.len() as u64;
                client.emit("ack", Payload::Text(vec![json!(total)])).await.unwrap();
            })
        })
        .on("fin", move |payload: Payload, _: Client| -> Done {
            if let Some(tx) = &*on_fin.fin.lock().unwrap() {
                let _ = tx.send(number(&payload));
            }
            Box::pin(std::future::ready(()))
        })
        .on("pong", move |payload: Payload, _: Client| -> Done {
            if let Some(waiter) = on_pong.pongs.lock().unwrap().remove(&number(&payload)) {
                let _ = waiter.send(());
            }
            Box::pin(std::future::ready(()))
        })
        .on("ping", move |payload: Payload, client: Client| -> Done {
            Box::pin(async move {
                client.emit("pong", payload).await.unwrap();
            })
        })
        .connect()
        .await
        .expect("raw client connects");
    let server = socket_rx.recv().await.expect("raw server socket");
    RawPair {
        client,
        server,
        shared,
        fin: tokio::sync::Mutex::new(fin_rx),
        server_pongs: tokio::sync::Mutex::new(pong_rx),
    }
}

impl RawPair {
    async fn wait_fin(&self) -> u64 {
        self.fin.lock().await.recv().await.expect("fin")
    }

    /// Client → server, 1 MiB binary events; MB/s received by the server.
    async fn upload(&self, payload: &Bytes, budget: Duration) -> f64 {
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < budget {
            self.client.emit("b", Payload::Binary(payload.clone())).await.unwrap();
            sent += payload.len() as u64;
        }
        self.client.emit("fin", Payload::Text(vec![json!(sent)])).await.unwrap();
        let received = self.wait_fin().await;
        assert_eq!(received, sent, "raw upload lost bytes");
        mb_per_s(received, start.elapsed())
    }

    /// Server → client, 1 MiB binary events with at most [`RAW_WINDOW`] bytes
    /// unacknowledged; MB/s received by the client.
    async fn download(&self, payload: &Bytes, budget: Duration) -> f64 {
        let shared = &self.shared;
        let base = shared.client_received.load(Ordering::Acquire);
        let start = Instant::now();
        let mut sent = base;
        while start.elapsed() < budget {
            loop {
                let changed = shared.acked_changed.notified();
                if sent - shared.acked.load(Ordering::Acquire) + payload.len() as u64 <= RAW_WINDOW {
                    break;
                }
                changed.await;
            }
            self.emit_waiting("b", payload).await;
            sent += payload.len() as u64;
        }
        self.emit_waiting("fin", &sent).await;
        let at_fin = self.wait_fin().await;
        assert_eq!(at_fin, sent);
        let received = shared.client_received.load(Ordering::Acquire) - base;
        assert_eq!(received, sent - base, "raw download lost bytes");
        mb_per_s(received, start.elapsed())
    }

    /// socketioxide's emit never waits; when its buffer is full, wait a little.
    async fn emit_waiting<T: serde::Serialize + ?Sized>(&self, event: &'static str, data: &T) {
        loop {
            match self.server.emit(event, data) {
                Ok(()) => return,
                Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(err) => panic!("raw emit failed: {err}"),
            }
        }
    }

    /// `callers` tasks each pinging the server in sequence; round trips/s.
    async fn client_pings(self: &Arc<Self>, callers: usize, budget: Duration) -> f64 {
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for _ in 0..callers {
            let pair = self.clone();
            tasks.spawn(async move {
                let mut calls = 0u64;
                while start.elapsed() < budget {
                    let id = pair.shared.next_ping.fetch_add(1, Ordering::Relaxed);
                    let (tx, rx) = oneshot::channel();
                    pair.shared.pongs.lock().unwrap().insert(id, tx);
                    pair.client.emit("ping", Payload::Text(vec![json!(id)])).await.unwrap();
                    rx.await.expect("pong");
                    calls += 1;
                }
                calls
            });
        }
        let calls: u64 = tasks.join_all().await.into_iter().sum();
        calls as f64 / start.elapsed().as_secs_f64()
    }

    /// The server pinging the client in sequence; round trips/s.
    async fn server_pings(&self, budget: Duration) -> f64 {
        let mut pongs = self.server_pongs.lock().await;
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < budget {
            self.emit_waiting("ping", &calls).await;
            assert_eq!(pongs.recv().await, Some(calls));
            calls += 1;
        }
        calls as f64 / start.elapsed().as_secs_f64()
    }
}

// ---------------------------------------------------------------------------
// Our stack.

/// Sends 1 MiB frames from `from` to `to` for `budget`; MB/s received.
async fn socket_rate(from: &Arc<SocketIoSocket>, to: &Arc<SocketIoSocket>, frame: &Bytes, budget: Duration) -> f64 {
    let start = Instant::now();
    let sender = tokio::spawn({
        let (from, frame) = (from.clone(), frame.clone());
        async move {
            while start.elapsed() < budget {
                from.send(frame.clone()).await.unwrap();
            }
            // The end marker: one byte.
            from.send(Bytes::from_static(b"!")).await.unwrap();
        }
    });
    let mut received = 0u64;
    loop {
        let frame = to.recv().await.unwrap();
        if frame.len() == 1 {
            break;
        }
        received += frame.len() as u64;
    }
    sender.await.unwrap();
    mb_per_s(received, start.elapsed())
}

/// `sink(payload)` with [`PIPELINE`] calls in flight for `budget`; MB/s delivered.
async fn rpc_rate(caller: &Connection, payload: &Arc<Vec<u8>>, budget: Duration) -> f64 {
    let mut calls = JoinSet::new();
    let start = Instant::now();
    let spawn = |calls: &mut JoinSet<_>| {
        let (caller, payload) = (caller.clone(), payload.clone());
        calls.spawn(async move { caller.emit::<_, u32>("sink", serde_bytes::Bytes::new(&payload)).await });
    };
    for _ in 0..PIPELINE {
        spawn(&mut calls);
    }
    let mut delivered = 0u64;
    while let Some(done) = calls.join_next().await {
        let len = done.unwrap().unwrap() as usize;
        assert_eq!(len, payload.len());
        delivered += len as u64;
        if start.elapsed() < budget {
            spawn(&mut calls);
        }
    }
    mb_per_s(delivered, start.elapsed())
}

/// `callers` tasks each calling `add1` in sequence; calls/s.
async fn call_rate(caller: &Connection, callers: usize, budget: Duration) -> f64 {
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..callers {
        let caller = caller.clone();
        tasks.spawn(async move {
            let mut calls = 0u64;
            while start.elapsed() < budget {
                assert_eq!(caller.emit::<_, u64>("add1", &calls).await.unwrap(), calls + 1);
                calls += 1;
            }
            calls
        });
    }
    let calls: u64 = tasks.join_all().await.into_iter().sum();
    calls as f64 / start.elapsed().as_secs_f64()
}

/// A connection pair over `dialed` / `accepted` sealing with the first of
/// `ciphers`, each side exposing `sink` and `add1`.
async fn connection_pair(
    dialed: Box<dyn Socket>,
    accepted: Box<dyn Socket>,
    ciphers: &[TransportCipher],
) -> (Connection, Connection) {
    let (dialer, listener) = connect_trusting_with(dialed, accepted, ciphers).await;
    for side in [&dialer, &listener] {
        assert_eq!(side.cipher(), ciphers.first().copied());
        side.expose_rpc("sink", |data: ByteBuf| async move { Ok::<_, RemoteError>(data.len() as u32) });
        side.expose_rpc("add1", |x: u64| async move { Ok::<_, RemoteError>(x + 1) });
    }
    (dialer, listener)
}

async fn socket_pair(server: &SocketIoServer) -> (SocketIoSocket, SocketIoSocket) {
    let url = server.url();
    let (dialed, accepted) = tokio::join!(connect(&url, ClientOptions::default()), server.accept());
    (dialed.unwrap(), accepted.unwrap())
}

// ---------------------------------------------------------------------------

/// One measured row: its label and the best figure over the rounds.
struct Row {
    label: String,
    direction: &'static str,
    best: f64,
}

fn main() {
    let budget = cell_budget();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run(budget));
}

async fn run(budget: Duration) {
    let started = Instant::now();
    let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
    let raw = Arc::new(raw_pair(&server).await);
    let (client_socket, server_socket) = socket_pair(&server).await;
    let (client_socket, server_socket) = (Arc::new(client_socket), Arc::new(server_socket));
    // The default negotiation (AES-256-GCM first where the CPU has AES), then
    // ChaCha20-Poly1305 only.
    let cipher_lists = [TransportCipher::preferred(), vec![TransportCipher::ChaCha20Poly1305]];
    let mut pairs = Vec::new();
    let mut memory_pairs = Vec::new();
    for ciphers in &cipher_lists {
        let (dialed, accepted) = socket_pair(&server).await;
        pairs.push(connection_pair(Box::new(dialed), Box::new(accepted), ciphers).await);
        let (near, far) = MemorySocket::pair(64, FrameLimits::default().max_frame_size);
        memory_pairs.push(connection_pair(Box::new(near), Box::new(far), ciphers).await);
    }
    let (alice, bob) = pairs[0].clone();

    let random = random_bytes(MIB);
    let payload = Arc::new(random.clone());
    let frame = Bytes::from(random.clone());
    // rust_socketio splits incoming binary messages at 0x1e.
    let raw_download_payload =
        Bytes::from(random.iter().map(|&b| if b == 0x1e { 0x1f } else { b }).collect::<Vec<_>>());

    let c2s = "client → server";
    let s2c = "server → client";
    let row = |label: &str, direction: &'static str| Row { label: label.to_owned(), direction, best: 0.0 };
    let mut p1 = vec![
        row("raw: socketioxide + rust_socketio, binary events", c2s),
        row("raw: socketioxide + rust_socketio, binary events", s2c),
        row("SocketIoSocket frames (credit, escaping)", c2s),
        row("SocketIoSocket frames (credit, escaping)", s2c),
    ];
    for (dialer, _) in &pairs {
        let cipher = dialer.cipher().map_or_else(|| "no AEAD".into(), |c| c.to_string());
        p1.push(row(&format!("Connection RPC, 8 in flight, {cipher}"), c2s));
        p1.push(row(&format!("Connection RPC, 8 in flight, {cipher}"), s2c));
    }
    for (dialer, _) in &memory_pairs {
        let cipher = dialer.cipher().map_or_else(|| "no AEAD".into(), |c| c.to_string());
        p1.push(row(&format!("Connection over MemorySocket, {cipher}"), "in process"));
    }
    let mut p2 = [
        row("raw: rust_socketio text event echo, 1 caller", c2s),
        row("raw: rust_socketio text event echo, 32 callers", c2s),
        row("raw: rust_socketio text event echo, 1 caller", s2c),
        row("Connection emit(add1), 1 caller", c2s),
        row("Connection emit(add1), 32 callers", c2s),
        row("Connection emit(add1), 1 caller", s2c),
    ];

    for _ in 0..ROUNDS {
        let mut figures = vec![
            raw.upload(&frame, budget).await,
            raw.download(&raw_download_payload, budget).await,
            socket_rate(&client_socket, &server_socket, &frame, budget).await,
            socket_rate(&server_socket, &client_socket, &frame, budget).await,
        ];
        for (dialer, listener) in &pairs {
            figures.push(rpc_rate(dialer, &payload, budget).await);
            figures.push(rpc_rate(listener, &payload, budget).await);
        }
        for (dialer, _) in &memory_pairs {
            figures.push(rpc_rate(dialer, &payload, budget).await);
        }
        for (row, figure) in p1.iter_mut().zip(figures) {
            row.best = row.best.max(figure);
        }
        let figures = [
            raw.client_pings(1, budget).await,
            raw.client_pings(CALLERS, budget).await,
            raw.server_pings(budget).await,
            call_rate(&alice, 1, budget).await,
            call_rate(&alice, CALLERS, budget).await,
            call_rate(&bob, 1, budget).await,
        ];
        for (row, figure) in p2.iter_mut().zip(figures) {
            row.best = row.best.max(figure);
        }
    }

    println!(
        "socket.io benchmark: {budget:?} per cell, best of {ROUNDS} interleaved rounds, \
         multi-thread runtime (2 workers), loopback, both ends in one process"
    );
    let line = "-".repeat(104);
    println!("\nP1: throughput, 1 MiB messages of random bytes");
    println!("{line}");
    println!("{:<60} {:<16} {:>10} {:>8}", "path", "direction", "MB/s", "/raw");
    println!("{line}");
    let raw_of =
        |direction: &str| p1.iter().find(|r| r.label.starts_with("raw") && r.direction == direction).map(|r| r.best);
    for row in &p1 {
        let ratio = raw_of(row.direction).map_or_else(|| "-".into(), |raw| format!("{:.2}", row.best / raw));
        println!("{:<60} {:<16} {:>10.0} {:>8}", row.label, row.direction, row.best, ratio);
    }
    println!("{line}");
    println!("target: Connection / raw >= 0.7 and >= 580 MB/s");

    println!("\nP2: small RPC round trips (a u64 there and back)");
    println!("{line}");
    println!("{:<60} {:<16} {:>10} {:>8} {:>6}", "path", "direction", "calls/s", "µs/call", "/raw");
    println!("{line}");
    for (i, row) in p2.iter().enumerate() {
        // Each Connection row against the raw row of the same shape.
        let raw = if i < 3 { row.best } else { p2[i - 3].best };
        let per_call = 1e6 / row.best * if row.label.contains("32") { CALLERS as f64 } else { 1.0 };
        println!(
            "{:<60} {:<16} {:>10.0} {:>8.1} {:>6.2}",
            row.label,
            row.direction,
            row.best,
            per_call,
            row.best / raw
        );
    }
    println!("{line}");
    println!("target: >= 5,000 calls/s. µs/call: the time each caller waits for one call.");
    println!("\ntotal bench time: {:.1} s", started.elapsed().as_secs_f64());
    server.shutdown().await;
}
