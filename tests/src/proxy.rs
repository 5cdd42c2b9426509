//! A TCP proxy on loopback for the fault tests: it forwards connections to a
//! target and can cut every connection it carries (the transport drops
//! mid-stream) or flip one byte of what a client sends (corruption on the
//! wire that TCP's checksum did not catch).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    cuts: watch::Sender<u64>,
    flip_at: Arc<AtomicU64>,
    flipped: Arc<AtomicU64>,
    silent: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

/// No byte is flipped.
const NEVER: u64 = u64::MAX;

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy listener");
        let addr = listener.local_addr().expect("proxy address");
        let (cuts, _) = watch::channel(0);
        let flip_at = Arc::new(AtomicU64::new(NEVER));
        let flipped = Arc::new(AtomicU64::new(0));
        let silent = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (cuts, flip_at, flipped, silent) = (cuts.clone(), flip_at.clone(), flipped.clone(), silent.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(target).await else { continue };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let faults = Faults {
                        flip_at: flip_at.load(Ordering::SeqCst),
                        flipped: flipped.clone(),
                        silent: silent.clone(),
                    };
                    tokio::spawn(carry(client, server, cuts.subscribe(), faults));
                }
            }
        });
        Proxy { addr, cuts, flip_at, flipped, silent, task }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/`, for socket.io clients.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Closes every connection carried now (new ones are still accepted).
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// From now on, in connections opened later, inverts the byte at `offset`
    /// of what the client sends (counted from the connection's first byte).
    pub fn flip_client_byte_at(&self, offset: u64) {
        self.flip_at.store(offset, Ordering::SeqCst);
    }

    /// While `silent`, every byte is swallowed and nothing is closed: the
    /// path vanished without a word, as when a network goes away.
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::SeqCst);
    }

    /// How many bytes were flipped so far.
    pub fn flipped(&self) -> u64 {
        self.flipped.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

/// What a connection's pumps do to the bytes.
#[derive(Clone)]
struct Faults {
    flip_at: u64,
    flipped: Arc<AtomicU64>,
    silent: Arc<AtomicBool>,
}

/// Carries one connection both ways until either side ends or a cut.
async fn carry(client: TcpStream, server: TcpStream, mut cuts: watch::Receiver<u64>, faults: Faults) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let down_faults = Faults { flip_at: NEVER, ..faults.clone() };
    let up = pump(client_read, server_write, faults);
    let down = pump(server_read, client_write, down_faults);
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cuts.changed() => {}
    }
    // Dropping both halves of both streams closes them.
}

/// Copies `from` to `to`, applying `faults`.
async fn pump(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, faults: Faults) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if (at..at + n as u64).contains(&faults.flip_at) {
            buf[(faults.flip_at - at) as usize] ^= 0xff;
            faults.flipped.fetch_add(1, Ordering::SeqCst);
        }
        at += n as u64;
        if faults.silent.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
