//! How to add a transport: [`Socket`] over plain tokio TCP, then an authenticated
//! [`Connection`] with RPC both ways on top of it.
//!
//! TCP carries a byte stream, and a [`Socket`] carries whole frames, so this
//! transport draws its own frame boundaries:
//!
//! ```text
//! +---------+-------------+---------------------------+
//! | kind u8 | len u32 BE  | payload (len bytes)       |
//! +---------+-------------+---------------------------+
//!
//! kind 0 = DATA:  the payload is one frame, handed to `recv` as it is.
//! kind 1 = CLOSE: the payload is MessagePack `(CloseCode, message)`; nothing follows.
//! ```
//!
//! `len` is checked against `max_frame_size` before anything is allocated, so a
//! peer announcing a huge frame costs nothing: the socket closes with
//! [`CloseCode::ProtocolError`]. A background task reads frames into a bounded
//! channel, so a receiver that does not keep up stops the reads, TCP's window fills
//! and the peer's `send` waits: backpressure end to end. The same task notices the
//! peer's close (or the stream ending) even when nobody calls `recv`, as soon as
//! the frames sent before it fit in the read-ahead: a close never overtakes data.
//!
//! What this transport does not do: encrypt, or offer a channel binding. The
//! handshake and the connection's AEAD layer provide both authentication and
//! confidentiality on top of it.
//!
//! Run it with `cargo run -p peers-sdk --all-features --example tcp_transport`; test
//! it against the `Socket` contract with
//! `cargo test -p peers-sdk --all-features --example tcp_transport`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, Bytes};
use peers_sdk::rpc::RemoteError;
use peers_sdk::socket::{Locality, SocketInfo, SocketLifecycle, TransportKind, TransportSecurity};
use peers_sdk::{
    CloseCode, CloseReason, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, Error, Socket, SocketState,
    TrustLevel,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

/// Frame kind of a data frame.
const KIND_DATA: u8 = 0;
/// Frame kind of the close frame.
const KIND_CLOSE: u8 = 1;
/// Bytes of `kind` and `len` before each payload.
const HEADER_LEN: usize = 5;
/// Largest close payload accepted: a code and a message of at most
/// [`CloseReason::MAX_MESSAGE_LEN`] bytes, with room for MessagePack's framing.
const MAX_CLOSE_PAYLOAD: usize = 512;
/// How long `close` tries to deliver the close frame to a peer that does not read.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Frames read ahead of `recv`. Memory held is at most this many maximum-size frames.
const READ_AHEAD_FRAMES: usize = 16;

/// A [`Socket`] over one TCP stream.
#[derive(Debug)]
struct TcpSocket {
    info: SocketInfo,
    shared: Arc<Shared>,
    frames: Mutex<mpsc::Receiver<Bytes>>,
    reader: JoinHandle<()>,
    /// `close` was called here: `recv` stops at once, unlike after the peer's close
    /// or a failure, when the frames that arrived first are still delivered.
    closed_here: AtomicBool,
}

/// What the socket and its reader task both use.
#[derive(Debug)]
struct Shared {
    writer: Mutex<Writer>,
    state: SocketLifecycle,
}

#[derive(Debug)]
struct Writer {
    half: OwnedWriteHalf,
    /// A send was cut off mid-frame, so the stream no longer has frame boundaries
    /// and a close frame written now would be misread.
    broken: bool,
}

impl TcpSocket {
    /// Wraps a connected stream. `max_frame_size` bounds frames both ways and must
    /// fit the 32-bit length field; both ends should use the same value.
    fn new(stream: TcpStream, max_frame_size: usize) -> std::io::Result<TcpSocket> {
        stream.set_nodelay(true)?;
        let (local, peer) = (stream.local_addr()?, stream.peer_addr()?);
        let info = SocketInfo {
            transport: TransportKind::Tcp,
            locality: Locality::of_ip(peer.ip()),
            local_addr: Some(local.to_string()),
            peer_addr: Some(peer.to_string()),
            max_frame_size: max_frame_size.min(u32::MAX as usize),
            // Plain TCP: no encryption, nothing to bind the handshake to.
            security: TransportSecurity::default(),
        };
        let (read, write) = stream.into_split();
        let shared = Arc::new(Shared {
            writer: Mutex::new(Writer { half: write, broken: false }),
            state: SocketLifecycle::new(),
        });
        let (tx, rx) = mpsc::channel(READ_AHEAD_FRAMES);
        let reader = tokio::spawn(read_frames(read, tx, shared.clone(), info.max_frame_size));
        Ok(TcpSocket { info, shared, frames: Mutex::new(rx), reader, closed_here: AtomicBool::new(false) })
    }
}

impl Shared {
    /// Closes locally: marks the state, so senders stop, then tells the peer why
    /// (best effort) and shuts down our half of the stream.
    async fn close(&self, reason: CloseReason) {
        let reason = CloseReason::new(reason.code, reason.message);
        if !self.state.close(reason.clone()) {
            return;
        }
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let mut writer = self.writer.lock().await;
            if !writer.broken {
                let payload = rmp_serde::to_vec(&(reason.code, &reason.message)).unwrap_or_default();
                let _ = write_frame(&mut writer.half, KIND_CLOSE, Bytes::from(payload)).await;
            }
            let _ = writer.half.shutdown().await;
        })
        .await;
    }
}

async fn write_frame(half: &mut OwnedWriteHalf, kind: u8, payload: Bytes) -> std::io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(std::io::Error::other)?;
    let mut header = [kind, 0, 0, 0, 0];
    header[1..].copy_from_slice(&len.to_be_bytes());
    // One vectored write for header and payload, without copying the payload.
    half.write_all_buf(&mut Buf::chain(&header[..], payload)).await
}

/// The reader task: frames from the stream into `frames` until the stream closes.
async fn read_frames(mut read: OwnedReadHalf, frames: mpsc::Sender<Bytes>, shared: Arc<Shared>, max: usize) {
    loop {
        let mut header = [0u8; HEADER_LEN];
        match read.read_exact(&mut header).await {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
                shared.state.close(CloseReason::new(CloseCode::TransportFailure, "stream ended without a close frame"));
                return;
            }
            Err(err) => {
                shared.state.close(CloseReason::new(CloseCode::TransportFailure, format!("read failed: {err}")));
                return;
            }
        }
        let [kind, len @ ..] = header;
        let len = u32::from_be_bytes(len) as usize;
        let limit = if kind == KIND_CLOSE { MAX_CLOSE_PAYLOAD } else { max };
        if len > limit || kind > KIND_CLOSE {
            let detail = format!("frame kind {kind} of {len} bytes (limit {limit})");
            tracing::warn!(%detail, "closing tcp socket: peer broke the framing");
            return shared.close(CloseReason::new(CloseCode::ProtocolError, detail)).await;
        }
        let mut payload = vec![0u8; len];
        if let Err(err) = read.read_exact(&mut payload).await {
            shared.state.close(CloseReason::new(CloseCode::TransportFailure, format!("inside a frame: {err}")));
            return;
        }
        if kind == KIND_DATA {
            if frames.send(Bytes::from(payload)).await.is_err() {
                return; // the socket was dropped
            }
            continue;
        }
        // The frames before the close are queued; now the close becomes visible.
        let reason = match rmp_serde::from_slice::<(CloseCode, String)>(&payload) {
            Ok((code, message)) => CloseReason::new(code, message).as_remote(),
            Err(err) => CloseReason::new(CloseCode::ProtocolError, format!("bad close frame: {err}")),
        };
        shared.state.close(reason);
        // Answer with our FIN, so the peer's reader ends too.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async { shared.writer.lock().await.half.shutdown().await }).await;
        return;
    }
}

#[async_trait]
impl Socket for TcpSocket {
    fn info(&self) -> &SocketInfo {
        &self.info
    }

    async fn send(&self, frame: Bytes) -> peers_sdk::Result<()> {
        if frame.len() > self.info.max_frame_size {
            return Err(Error::FrameTooLarge { size: frame.len(), max: self.info.max_frame_size });
        }
        // Whoever holds the writer gives it up promptly once the socket closes.
        let mut writer = self.shared.writer.lock().await;
        if !self.shared.state.is_open() {
            return Err(self.shared.state.closed_error());
        }
        // A peer that stops reading holds this write up; a close must still end it.
        let written = tokio::select! {
            biased;
            written = write_frame(&mut writer.half, KIND_DATA, frame) => Some(written),
            _ = self.shared.state.closed() => None,
        };
        match written {
            Some(Ok(())) => Ok(()),
            Some(Err(err)) => {
                writer.broken = true;
                drop(writer);
                self.shared.close(CloseReason::new(CloseCode::TransportFailure, format!("write failed: {err}"))).await;
                Err(self.shared.state.closed_error())
            }
            None => {
                writer.broken = true;
                let _ = writer.half.shutdown().await;
                Err(self.shared.state.closed_error())
            }
        }
    }

    async fn recv(&self) -> peers_sdk::Result<Bytes> {
        let mut frames = self.frames.lock().await;
        if self.closed_here.load(Ordering::Acquire) {
            return Err(self.shared.state.closed_error());
        }
        // After the peer's close or a failure the channel yields what came first, then ends.
        frames.recv().await.ok_or_else(|| self.shared.state.closed_error())
    }

    async fn close(&self, reason: CloseReason) {
        self.closed_here.store(true, Ordering::Release);
        self.shared.close(reason).await;
        // Stops reading; dropping the reader's sender ends a waiting `recv`.
        self.reader.abort();
    }

    fn state(&self) -> SocketState {
        self.shared.state.state()
    }

    async fn closed(&self) -> CloseReason {
        self.shared.state.closed().await
    }
}

impl Drop for TcpSocket {
    /// The peer sees the stream end without a close frame: a transport failure.
    /// Call [`Socket::close`] first to tell it why.
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Dials `listener` and accepts the call at once: a connected pair of sockets.
async fn tcp_pair(listener: &TcpListener, max_frame_size: usize) -> std::io::Result<(TcpSocket, TcpSocket)> {
    let (dialed, accepted) = tokio::join!(TcpStream::connect(listener.local_addr()?), listener.accept());
    Ok((TcpSocket::new(dialed?, max_frame_size)?, TcpSocket::new(accepted?.0, max_frame_size)?))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let (dialed, accepted) = tcp_pair(&listener, 1024 * 1024).await?;
    println!("tcp: {:?} -> {:?}", dialed.info().local_addr, dialed.info().peer_addr);

    let alice = Arc::new(DeviceKeys::generate("alice")?);
    let bob = Arc::new(DeviceKeys::generate("bob")?);
    // A real application asks a TrustStore or the user; this demo trusts everyone.
    let trust = |_: &DeviceInfo| TrustLevel::Trusted;
    let (dialer, listener) = tokio::join!(
        Connection::connect(Box::new(dialed), ConnectionConfig::new(alice.clone(), trust), Some(bob.device_id())),
        Connection::accept(Box::new(accepted), ConnectionConfig::new(bob, trust)),
    );
    let (dialer, listener) = (dialer?, listener?);
    println!(
        "connected: {} <-> {} over {:?} ({:?}), encrypted: {}",
        listener.remote().user_id,
        dialer.remote().user_id,
        dialer.socket_info().transport,
        dialer.socket_info().locality,
        dialer.is_encrypted(),
    );

    listener.expose_rpc("add", |(x, y): (i64, i64)| async move { Ok::<_, RemoteError>(x + y) });
    dialer.expose_rpc("greet", |name: String| async move { Ok::<_, RemoteError>(format!("hello, {name}")) });
    let sum: i64 = dialer.emit("add", &(2, 40)).await?;
    println!("alice -> bob  add(2, 40) = {sum}");
    let greeting: String = listener.emit("greet", "bob").await?;
    println!("bob -> alice  greet(\"bob\") = {greeting:?}");

    dialer.close(CloseReason::normal("demo done")).await;
    println!("bob saw: {}", listener.closed().await);
    Ok(())
}

#[cfg(test)]
mod tests {
    use peers_sdk::BoxSocket;

    use super::*;

    async fn pair() -> (BoxSocket, BoxSocket) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (dialed, accepted) = tcp_pair(&listener, 256 * 1024).await.unwrap();
        (Box::new(dialed), Box::new(accepted))
    }

    peers_sdk::socket_conformance_tests!(pair);

    #[tokio::test]
    async fn an_oversized_length_closes_without_allocating() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (mut raw, accepted) = tokio::join!(TcpStream::connect(listener.local_addr().unwrap()), listener.accept());
        let socket = TcpSocket::new(accepted.unwrap().0, 1024).unwrap();
        let raw = raw.as_mut().unwrap();
        // Announces 4 GiB; the reader must refuse before reading or allocating it.
        raw.write_all(&[KIND_DATA, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
        let reason = tokio::time::timeout(Duration::from_secs(5), socket.closed()).await.unwrap();
        assert_eq!(reason.code, CloseCode::ProtocolError);
        // The peer is told why before the stream ends.
        let mut answer = Vec::new();
        raw.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer.first(), Some(&KIND_CLOSE));
        assert!(socket.recv().await.is_err());
    }

    #[tokio::test]
    async fn a_stream_ending_without_a_close_frame_is_a_transport_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (dialed, accepted) = tcp_pair(&listener, 1024).await.unwrap();
        dialed.send(Bytes::from_static(b"last words")).await.unwrap();
        drop(dialed);
        let reason = tokio::time::timeout(Duration::from_secs(5), accepted.closed()).await.unwrap();
        assert_eq!(reason.code, CloseCode::TransportFailure);
        // Data that arrived before the stream ended is still delivered.
        assert_eq!(accepted.recv().await.unwrap(), "last words");
        assert!(matches!(accepted.recv().await, Err(Error::Closed { .. })));
    }
}
