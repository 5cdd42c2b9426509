//! The whole stack against plain TCP, in the same run: `Connection` over the
//! socket.io transport (client `connect` + `Connection::connect`, the server's
//! `accept` + `Connection::accept`) beside a plain tokio `TcpStream` pair.
//!
//! For each stack, in interleaved rounds (the best round counts):
//!
//! - **connect**: from the dial until both ends hold a verified connection (for
//!   TCP: until `connect` returns, `TCP_NODELAY` set);
//! - **first echo**: connect plus one 64 B round trip;
//! - **round trips**: sequential 64 B echoes per second (ours: RPC `echo`);
//! - **stream**: N bytes written in S-byte pieces, then an acknowledgement of the
//!   end (ours: `open_stream` + `StreamWriter::write` + `finish`, which waits for
//!   the reader's handler), client → server, and server → client for 1 MiB
//!   pieces.
//!
//! The listener and the dialer each run a current-thread tokio runtime on their
//! own thread, as two processes on one machine would.
//!
//! `cargo bench -p peers-transport-socketio --bench stack`; `-- --quick` for a
//! short run. `PEERS_BENCH_ROUNDS` (default 3), `PEERS_BENCH_MIB` (MiB per stream
//! cell, default 64), `PEERS_BENCH_ECHOES` (default 10,000).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peers_sdk::rpc::RemoteError;
use peers_sdk::{CloseReason, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, TrustLevel};
use peers_transport_socketio::{ClientOptions, ServerOptions, SocketIoServer, connect};
use serde_bytes::ByteBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const PIECES: [usize; 4] = [MIB, 64 * KIB, 16 * KIB, KIB];
const ECHO: usize = 64;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Params {
    rounds: usize,
    stream_bytes: usize,
    echoes: usize,
}

impl Params {
    fn from_env() -> Params {
        let quick = std::env::args().any(|a| a == "--quick");
        Params {
            rounds: env_or("PEERS_BENCH_ROUNDS", if quick { 1 } else { 3 }),
            stream_bytes: env_or("PEERS_BENCH_MIB", if quick { 16 } else { 64 }) * MIB,
            echoes: env_or("PEERS_BENCH_ECHOES", if quick { 2_000 } else { 10_000 }),
        }
    }
}

fn random_bytes(len: usize) -> Vec<u8> {
    peers_sdk::testdata::incompressible(len, 0x5eed)
}

/// One stack's figures in one round.
#[derive(Clone, Default)]
struct Figures {
    connect: Duration,
    first_echo: Duration,
    round_trips_per_s: f64,
    /// MB/s client → server per piece size (PIECES order), then server → client, 1 MiB.
    mb_per_s: Vec<f64>,
}

impl Figures {
    fn best(rounds: &[Figures]) -> Figures {
        let mut best = rounds[0].clone();
        for r in &rounds[1..] {
            best.connect = best.connect.min(r.connect);
            best.first_echo = best.first_echo.min(r.first_echo);
            best.round_trips_per_s = best.round_trips_per_s.max(r.round_trips_per_s);
            for (b, x) in best.mb_per_s.iter_mut().zip(&r.mb_per_s) {
                *b = b.max(*x);
            }
        }
        best
    }
}

fn mb_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

// ---------------------------------------------------------------------------
// Plain TCP: op byte + two u64 parameters, then the op's traffic.

const OP_ECHO: u8 = 1;
const OP_SINK: u8 = 2;
const OP_SOURCE: u8 = 3;

async fn tcp_serve(listener: TcpListener) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else { return };
        tcp.set_nodelay(true).unwrap();
        tokio::spawn(async move {
            let mut head = [0u8; 17];
            let mut buf = vec![0u8; MIB];
            while tcp.read_exact(&mut head).await.is_ok() {
                let a = u64::from_le_bytes(head[1..9].try_into().unwrap()) as usize;
                let b = u64::from_le_bytes(head[9..17].try_into().unwrap()) as usize;
                match head[0] {
                    OP_ECHO => {
                        for _ in 0..a {
                            tcp.read_exact(&mut buf[..ECHO]).await.unwrap();
                            tcp.write_all(&buf[..ECHO]).await.unwrap();
                        }
                    }
                    OP_SINK => {
                        let mut left = a;
                        while left > 0 {
                            let n = tcp.read(&mut buf[..left.min(MIB)]).await.unwrap();
                            assert!(n > 0);
                            left -= n;
                        }
                        tcp.write_all(&(a as u64).to_le_bytes()).await.unwrap();
                    }
                    OP_SOURCE => {
                        let data = random_bytes(b);
                        let mut left = a;
                        while left > 0 {
                            let n = left.min(b);
                            tcp.write_all(&data[..n]).await.unwrap();
                            left -= n;
                        }
                    }
                    _ => return,
                }
            }
        });
    }
}

fn head(op: u8, a: usize, b: usize) -> [u8; 17] {
    let mut head = [0u8; 17];
    head[0] = op;
    head[1..9].copy_from_slice(&(a as u64).to_le_bytes());
    head[9..17].copy_from_slice(&(b as u64).to_le_bytes());
    head
}

async fn tcp_round(addr: SocketAddr, params: &Params, data: &[u8]) -> Figures {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let connect = started.elapsed();
    let mut buf = vec![0u8; MIB];
    tcp.write_all(&head(OP_ECHO, params.echoes + 1, 0)).await.unwrap();
    tcp.write_all(&data[..ECHO]).await.unwrap();
    tcp.read_exact(&mut buf[..ECHO]).await.unwrap();
    let first_echo = started.elapsed();
    let t = Instant::now();
    for _ in 0..params.echoes {
        tcp.write_all(&data[..ECHO]).await.unwrap();
        tcp.read_exact(&mut buf[..ECHO]).await.unwrap();
    }
    let round_trips_per_s = params.echoes as f64 / t.elapsed().as_secs_f64();
    let mut rates = Vec::new();
    for piece in PIECES {
        let t = Instant::now();
        tcp.write_all(&head(OP_SINK, params.stream_bytes, 0)).await.unwrap();
        let mut left = params.stream_bytes;
        while left > 0 {
            let n = left.min(piece);
            tcp.write_all(&data[..n]).await.unwrap();
            left -= n;
        }
        tcp.read_exact(&mut buf[..8]).await.unwrap();
        rates.push(mb_per_s(params.stream_bytes, t.elapsed()));
    }
    let t = Instant::now();
    tcp.write_all(&head(OP_SOURCE, params.stream_bytes, MIB)).await.unwrap();
    let mut left = params.stream_bytes;
    while left > 0 {
        let n = tcp.read(&mut buf[..left.min(MIB)]).await.unwrap();
        assert!(n > 0);
        left -= n;
    }
    rates.push(mb_per_s(params.stream_bytes, t.elapsed()));
    Figures { connect, first_echo, round_trips_per_s, mb_per_s: rates }
}

// ---------------------------------------------------------------------------
// Ours: Connection over socket.io.

fn trust_all(_: &DeviceInfo) -> TrustLevel {
    TrustLevel::Trusted
}

/// Handlers both ends expose: `echo`, a `sink` stream that reads to the end, and
/// `source(total, piece)`, which streams `total` bytes back in `piece` writes.
fn expose(connection: &Connection, data: Arc<Vec<u8>>) {
    connection.expose_rpc("echo", |data: ByteBuf| async move { Ok::<_, RemoteError>(data) });
    connection.expose_stream("sink", |(): (), mut reader: peers_sdk::StreamReader| async move {
        while reader
            .next()
            .await
            .map_err(|e| RemoteError::new(peers_sdk::rpc::RemoteErrorCode::Internal, e.to_string()))?
            .is_some()
        {}
        Ok(())
    });
    let weak = connection.clone();
    connection.expose_rpc("source", move |(total, piece): (usize, usize)| {
        let (connection, data) = (weak.clone(), data.clone());
        async move {
            let internal =
                |e: peers_sdk::Error| RemoteError::new(peers_sdk::rpc::RemoteErrorCode::Internal, e.to_string());
            write_stream(&connection, &data, total, piece).await.map_err(internal)?;
            Ok::<_, RemoteError>(())
        }
    });
}

async fn write_stream(connection: &Connection, data: &[u8], total: usize, piece: usize) -> peers_sdk::Result<()> {
    let mut writer = connection.open_stream("sink", &()).await?;
    let mut left = total;
    while left > 0 {
        let n = left.min(piece);
        writer.write(&data[..n]).await?;
        left -= n;
    }
    writer.finish().await
}

async fn ours_serve(server: SocketIoServer, keys: Arc<DeviceKeys>, data: Arc<Vec<u8>>) {
    while let Some(socket) = server.accept().await {
        let (keys, data) = (keys.clone(), data.clone());
        tokio::spawn(async move {
            let connection =
                Connection::accept(Box::new(socket), ConnectionConfig::new(keys, trust_all)).await.unwrap();
            expose(&connection, data);
            connection.closed().await;
        });
    }
}

async fn ours_round(url: &str, keys: &Arc<DeviceKeys>, params: &Params, data: &Arc<Vec<u8>>) -> Figures {
    let started = Instant::now();
    let socket = connect(url, ClientOptions::default()).await.unwrap();
    let connection =
        Connection::connect(Box::new(socket), ConnectionConfig::new(keys.clone(), trust_all), None).await.unwrap();
    let connect = started.elapsed();
    expose(&connection, data.clone());
    let ping = ByteBuf::from(data[..ECHO].to_vec());
    let _: ByteBuf = connection.emit("echo", &ping).await.unwrap();
    let first_echo = started.elapsed();
    let t = Instant::now();
    for _ in 0..params.echoes {
        let _: ByteBuf = connection.emit("echo", &ping).await.unwrap();
    }
    let round_trips_per_s = params.echoes as f64 / t.elapsed().as_secs_f64();
    let mut rates = Vec::new();
    for piece in PIECES {
        let t = Instant::now();
        write_stream(&connection, data, params.stream_bytes, piece).await.unwrap();
        rates.push(mb_per_s(params.stream_bytes, t.elapsed()));
    }
    let t = Instant::now();
    connection
        .emit_with_timeout::<_, ()>("source", &(params.stream_bytes, MIB), Duration::from_secs(120))
        .await
        .unwrap();
    rates.push(mb_per_s(params.stream_bytes, t.elapsed()));
    connection.close(CloseReason::normal("done")).await;
    Figures { connect, first_echo, round_trips_per_s, mb_per_s: rates }
}

// ---------------------------------------------------------------------------

fn main() {
    let params = Params::from_env();
    let data = Arc::new(random_bytes(MIB));
    let bob = Arc::new(DeviceKeys::generate("bob").unwrap());
    let alice = Arc::new(DeviceKeys::generate("alice").unwrap());

    let (addrs_tx, addrs_rx) = oneshot::channel();
    let listener_data = data.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
            let _ = addrs_tx.send((tcp.local_addr().unwrap(), server.url()));
            tokio::join!(tcp_serve(tcp), ours_serve(server, bob, listener_data));
        });
    });
    let (tcp_addr, url) = addrs_rx.blocking_recv().unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (mut tcp, mut ours) = (Vec::new(), Vec::new());
    runtime.block_on(async {
        // Warm-up: the first dial of each pays for lazy set-up on both ends.
        let warm = Params { rounds: 1, stream_bytes: MIB, echoes: 10 };
        tcp_round(tcp_addr, &warm, &data).await;
        ours_round(&url, &alice, &warm, &data).await;
        for _ in 0..params.rounds {
            tcp.push(tcp_round(tcp_addr, &params, &data).await);
            ours.push(ours_round(&url, &alice, &params, &data).await);
        }
    });
    print_table(&params, &Figures::best(&tcp), &Figures::best(&ours));
}

fn print_table(params: &Params, tcp: &Figures, ours: &Figures) {
    let line = "-".repeat(96);
    println!(
        "stack benchmark: best of {} interleaved rounds; listener and dialer on their own current-thread runtimes; {} MiB per stream cell; {} echoes",
        params.rounds,
        params.stream_bytes / MIB,
        params.echoes
    );
    println!("{line}");
    println!("{:<44}{:>14}{:>14}{:>12}{:>12}", "figure", "plain TCP", "ours", "ours/TCP", "ours/1MiB");
    println!("{line}");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{:<44}{:>14.3}{:>14.3}{:>12.1}",
        "connect, ms",
        ms(tcp.connect),
        ms(ours.connect),
        ms(ours.connect) / ms(tcp.connect)
    );
    println!(
        "{:<44}{:>14.3}{:>14.3}{:>12.1}",
        "connect + first 64 B echo, ms",
        ms(tcp.first_echo),
        ms(ours.first_echo),
        ms(ours.first_echo) / ms(tcp.first_echo)
    );
    println!(
        "{:<44}{:>14.0}{:>14.0}{:>12.2}",
        "64 B round trips/s",
        tcp.round_trips_per_s,
        ours.round_trips_per_s,
        ours.round_trips_per_s / tcp.round_trips_per_s
    );
    let names = ["MB/s, 1 MiB writes", "MB/s, 64 KiB writes", "MB/s, 16 KiB writes", "MB/s, 1 KiB writes"];
    for (i, name) in names.iter().enumerate() {
        println!(
            "{:<44}{:>14.0}{:>14.0}{:>12.2}{:>12.2}",
            format!("client -> server, {name}"),
            tcp.mb_per_s[i],
            ours.mb_per_s[i],
            ours.mb_per_s[i] / tcp.mb_per_s[i],
            ours.mb_per_s[i] / ours.mb_per_s[0]
        );
    }
    println!(
        "{:<44}{:>14.0}{:>14.0}{:>12.2}",
        "server -> client, MB/s, 1 MiB writes",
        tcp.mb_per_s[4],
        ours.mb_per_s[4],
        ours.mb_per_s[4] / tcp.mb_per_s[4]
    );
    println!("{line}");
    println!(
        "targets: connect + first echo < 3 ms; 16 KiB writes >= 0.8 and 1 KiB writes >= 0.3 of 1 MiB writes (ours/1MiB)"
    );
}
