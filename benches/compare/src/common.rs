//! What every stack does, and the byte-stream protocol the stream stacks share.
//!
//! A round: connect (until both ends are authenticated), one 64 B echo, `echoes`
//! sequential 64 B echoes, then `stream_bytes` written client → server in pieces of
//! each size in [`PIECES`] with an 8-byte acknowledgement at the end, and the same
//! server → client in 1 MiB pieces.
//!
//! The stream stacks (TCP, quinn, iroh, libp2p) run it over one bidirectional byte
//! stream: a 17-byte head (op, two u64 parameters) and then the op's traffic.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const KIB: usize = 1 << 10;
pub const MIB: usize = 1 << 20;
/// The write sizes measured client → server.
pub const PIECES: [usize; 4] = [MIB, 64 * KIB, 16 * KIB, KIB];
/// The size of one echo.
pub const ECHO: usize = 64;

const OP_ECHO: u8 = 1;
const OP_SINK: u8 = 2;
const OP_SOURCE: u8 = 3;

/// How much each round moves.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Params {
    pub echoes: usize,
    pub stream_bytes: usize,
}

/// One stack's figures in one round.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Figures {
    pub connect_ms: f64,
    pub first_echo_ms: f64,
    pub round_trips_per_s: f64,
    /// MB/s client → server for each of [`PIECES`], then server → client in 1 MiB pieces.
    pub mb_per_s: Vec<f64>,
}

impl Figures {
    /// The best of several rounds, figure by figure.
    pub fn best(rounds: &[Figures]) -> Figures {
        let mut best = rounds[0].clone();
        for r in &rounds[1..] {
            best.connect_ms = best.connect_ms.min(r.connect_ms);
            best.first_echo_ms = best.first_echo_ms.min(r.first_echo_ms);
            best.round_trips_per_s = best.round_trips_per_s.max(r.round_trips_per_s);
            for (b, x) in best.mb_per_s.iter_mut().zip(&r.mb_per_s) {
                *b = b.max(*x);
            }
        }
        best
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn mb_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

/// The 1 MiB of random bytes (no compressor shrinks them) every stack echoes and
/// streams, made once per process before anything is timed: making them costs
/// about a millisecond, which would otherwise land in whichever figure ran first
/// (the listener's connect, the dialer's first echo).
pub fn test_data() -> &'static [u8] {
    static DATA: std::sync::LazyLock<Vec<u8>> =
        std::sync::LazyLock::new(|| peers_sdk::testdata::incompressible(MIB, 0x5eed));
    &DATA
}

/// A current-thread runtime, as each end of a two-process setup would have.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// Runs `listen` on its own thread and runtime, and returns what it sends back
/// once it is ready (its address).
pub fn spawn_listener<A, F, Fut>(listen: F) -> A
where
    A: Send + 'static,
    F: FnOnce(tokio::sync::oneshot::Sender<A>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    test_data();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || runtime().block_on(listen(tx)));
    rx.blocking_recv().expect("the listener failed to start")
}

fn head(op: u8, a: usize, b: usize) -> [u8; 17] {
    let mut head = [0u8; 17];
    head[0] = op;
    head[1..9].copy_from_slice(&(a as u64).to_le_bytes());
    head[9..17].copy_from_slice(&(b as u64).to_le_bytes());
    head
}

/// The listener's side of the byte-stream protocol, until the stream ends.
pub async fn serve_stream<R, W>(mut rx: R, mut tx: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let data = test_data();
    let mut head = [0u8; 17];
    let mut buf = vec![0u8; MIB];
    while rx.read_exact(&mut head).await.is_ok() {
        let a = u64::from_le_bytes(head[1..9].try_into().unwrap()) as usize;
        let b = u64::from_le_bytes(head[9..17].try_into().unwrap()) as usize;
        let ok = match head[0] {
            OP_ECHO => echo_back(&mut rx, &mut tx, &mut buf, a).await,
            OP_SINK => sink(&mut rx, &mut tx, &mut buf, a).await,
            OP_SOURCE => write_pieces(&mut tx, data, a, b).await,
            _ => return,
        };
        if ok.is_err() {
            return;
        }
    }
}

async fn echo_back<R, W>(rx: &mut R, tx: &mut W, buf: &mut [u8], count: usize) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    for _ in 0..count {
        rx.read_exact(&mut buf[..ECHO]).await?;
        tx.write_all(&buf[..ECHO]).await?;
        tx.flush().await?;
    }
    Ok(())
}

async fn sink<R, W>(rx: &mut R, tx: &mut W, buf: &mut [u8], total: usize) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    read_total(rx, buf, total).await?;
    tx.write_all(&(total as u64).to_le_bytes()).await?;
    tx.flush().await
}

async fn read_total<R: AsyncRead + Unpin>(rx: &mut R, buf: &mut [u8], total: usize) -> std::io::Result<()> {
    let (mut left, cap) = (total, buf.len());
    while left > 0 {
        let n = rx.read(&mut buf[..left.min(cap)]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left -= n;
    }
    Ok(())
}

async fn write_pieces<W: AsyncWrite + Unpin>(
    tx: &mut W,
    data: &[u8],
    total: usize,
    piece: usize,
) -> std::io::Result<()> {
    let mut pieces = Pieces::new(data, total, piece);
    while let Some(bytes) = pieces.next() {
        tx.write_all(bytes).await?;
    }
    tx.flush().await
}

/// The `piece`-byte writes that make up `total` bytes, taken one after the other from
/// `data` (wrapping round at its end), so that consecutive writes carry different
/// bytes. Writing the same first `piece` bytes every time would let a stack that
/// compresses (ours: Brotli on coalesced messages) send repeated 1 KiB writes as
/// almost nothing.
pub struct Pieces<'a> {
    data: &'a [u8],
    offset: usize,
    left: usize,
    piece: usize,
}

impl<'a> Pieces<'a> {
    pub fn new(data: &'a [u8], total: usize, piece: usize) -> Self {
        assert!(piece > 0 && data.len().is_multiple_of(piece), "pieces must divide the data");
        Pieces { data, offset: 0, left: total, piece }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let n = self.left.min(self.piece);
        let bytes = &self.data[self.offset..self.offset + n];
        self.offset = (self.offset + self.piece) % self.data.len();
        self.left -= n;
        Some(bytes)
    }
}

/// The dialer's side of a round over a stream that `connect` returned after
/// `started`: everything but the connect time.
pub async fn drive_stream<R, W>(mut rx: R, mut tx: W, started: Instant, connect_ms: f64, params: &Params) -> Figures
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let data = test_data();
    let mut buf = vec![0u8; MIB];
    tx.write_all(&head(OP_ECHO, params.echoes + 1, 0)).await.unwrap();
    echo_once(&mut rx, &mut tx, data, &mut buf).await;
    let first_echo_ms = ms(started.elapsed());
    let t = Instant::now();
    for _ in 0..params.echoes {
        echo_once(&mut rx, &mut tx, data, &mut buf).await;
    }
    let round_trips_per_s = params.echoes as f64 / t.elapsed().as_secs_f64();
    let mut rates = Vec::new();
    for piece in PIECES {
        let t = Instant::now();
        tx.write_all(&head(OP_SINK, params.stream_bytes, 0)).await.unwrap();
        write_pieces(&mut tx, data, params.stream_bytes, piece).await.unwrap();
        rx.read_exact(&mut buf[..8]).await.unwrap();
        rates.push(mb_per_s(params.stream_bytes, t.elapsed()));
    }
    let t = Instant::now();
    tx.write_all(&head(OP_SOURCE, params.stream_bytes, MIB)).await.unwrap();
    tx.flush().await.unwrap();
    read_total(&mut rx, &mut buf, params.stream_bytes).await.unwrap();
    rates.push(mb_per_s(params.stream_bytes, t.elapsed()));
    Figures { connect_ms, first_echo_ms, round_trips_per_s, mb_per_s: rates }
}

async fn echo_once<R, W>(rx: &mut R, tx: &mut W, data: &[u8], buf: &mut [u8])
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    tx.write_all(&data[..ECHO]).await.unwrap();
    tx.flush().await.unwrap();
    rx.read_exact(&mut buf[..ECHO]).await.unwrap();
}
