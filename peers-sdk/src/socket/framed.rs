//! [`FramedSocket`]: a conformant [`Socket`] over any byte stream
//! (`AsyncRead + AsyncWrite`), such as TCP, a Unix socket, a QUIC stream or a pipe.
//! The wire format and the limits are on [`FramedSocket`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use super::{CloseCode, CloseReason, Socket, SocketInfo, SocketLifecycle, SocketState};
use crate::error::{Error, Result};

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

type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A [`Socket`] over a byte stream.
///
/// A byte stream has no frame boundaries, so the socket draws its own:
///
/// ```text
/// +---------+-------------+---------------------------+
/// | kind u8 | len u32 BE  | payload (len bytes)       |
/// +---------+-------------+---------------------------+
///
/// kind 0 = DATA:  the payload is one frame, handed to `recv` as it is.
/// kind 1 = CLOSE: the payload is MessagePack `(CloseCode, message)`; nothing follows.
/// ```
///
/// `len` is checked against `max_frame_size` (for DATA) or 512 bytes (for CLOSE)
/// before anything is allocated, so a peer announcing a huge frame costs nothing:
/// the socket closes with [`CloseCode::ProtocolError`] and tells the peer why. A
/// reader task reads frames into a bounded channel (16 frames ahead), so a
/// receiver that does not keep up stops the reads, the stream's own flow control
/// fills, and the peer's `send` waits: backpressure end to end. The same task
/// notices the peer's close (or the stream ending) even when nobody calls `recv`,
/// once the frames sent before it fit in the read-ahead: a close never overtakes
/// data. A stream that ends without a CLOSE frame closes the socket with
/// [`CloseCode::TransportFailure`].
///
/// What it does not do: encrypt, or offer a channel binding (unless the stream
/// under it does, and the caller says so in the [`SocketInfo`]). The handshake and
/// the connection's AEAD layer provide authentication and confidentiality on top.
///
/// ```
/// use peers_sdk::socket::{FramedSocket, SocketInfo, TransportKind};
/// use peers_sdk::Socket;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // Any AsyncRead + AsyncWrite will do; here an in-process pipe.
/// let (a, b) = tokio::io::duplex(64 * 1024);
/// let info = SocketInfo::new(TransportKind::Other("pipe".into()), 64 * 1024);
/// let (a, b) = (FramedSocket::new(a, info.clone()), FramedSocket::new(b, info));
/// a.send("hello".into()).await?;
/// assert_eq!(b.recv().await?, "hello");
/// # Ok::<(), peers_sdk::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct FramedSocket {
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

struct Writer {
    half: BoxWrite,
    /// A send was cut off mid-frame, so the stream no longer has frame boundaries
    /// and a close frame written now would be misread.
    broken: bool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("broken", &self.broken).finish_non_exhaustive()
    }
}

impl FramedSocket {
    /// Wraps a connected stream, split with [`tokio::io::split`]. Use
    /// [`from_halves`](Self::from_halves) when the stream splits without a lock
    /// (TCP's and Unix sockets' `into_split`).
    ///
    /// `info.max_frame_size` bounds frames both ways (cut to the 32-bit length
    /// field); both ends should use the same value. Must be called within a tokio
    /// runtime: it starts the reader task.
    pub fn new<S>(stream: S, info: SocketInfo) -> FramedSocket
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        Self::from_halves(read, write, info)
    }

    /// Wraps the two halves of a connected stream.
    pub fn from_halves<R, W>(read: R, write: W, mut info: SocketInfo) -> FramedSocket
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        info.max_frame_size = info.max_frame_size.min(u32::MAX as usize);
        let shared = Arc::new(Shared {
            writer: Mutex::new(Writer { half: Box::new(write), broken: false }),
            state: SocketLifecycle::new(),
        });
        let (tx, rx) = mpsc::channel(READ_AHEAD_FRAMES);
        let reader = tokio::spawn(read_frames(read, tx, shared.clone(), info.max_frame_size));
        FramedSocket { info, shared, frames: Mutex::new(rx), reader, closed_here: AtomicBool::new(false) }
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

async fn write_frame(half: &mut BoxWrite, kind: u8, payload: Bytes) -> std::io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(std::io::Error::other)?;
    let mut header = [kind, 0, 0, 0, 0];
    header[1..].copy_from_slice(&len.to_be_bytes());
    // One vectored write for header and payload, without copying the payload.
    half.write_all_buf(&mut Buf::chain(&header[..], payload)).await?;
    // A no-op for sockets; buffered and TLS streams send only when flushed.
    half.flush().await
}

/// The reader task: frames from the stream into `frames` until the stream closes.
async fn read_frames<R>(mut read: R, frames: mpsc::Sender<Bytes>, shared: Arc<Shared>, max: usize)
where
    R: AsyncRead + Unpin,
{
    loop {
        let mut header = [0u8; HEADER_LEN];
        if let Err(err) = read.read_exact(&mut header).await {
            let message = match err.kind() {
                std::io::ErrorKind::UnexpectedEof => "stream ended without a close frame".to_owned(),
                _ => format!("read failed: {err}"),
            };
            shared.state.close(CloseReason::new(CloseCode::TransportFailure, message));
            return;
        }
        let [kind, len @ ..] = header;
        let len = u32::from_be_bytes(len) as usize;
        let limit = if kind == KIND_CLOSE { MAX_CLOSE_PAYLOAD } else { max };
        if len > limit || kind > KIND_CLOSE {
            let detail = format!("frame kind {kind} of {len} bytes (limit {limit})");
            tracing::warn!(%detail, "closing framed socket: peer broke the framing");
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
        // Answer with our end of the stream, so the peer's reader ends too.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async { shared.writer.lock().await.half.shutdown().await }).await;
        return;
    }
}

#[async_trait]
impl Socket for FramedSocket {
    fn info(&self) -> &SocketInfo {
        &self.info
    }

    async fn send(&self, frame: Bytes) -> Result<()> {
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

    async fn recv(&self) -> Result<Bytes> {
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

impl Drop for FramedSocket {
    /// The peer sees the stream end without a close frame: a transport failure.
    /// Call [`Socket::close`] first to tell it why.
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::DuplexStream;

    use super::*;
    use crate::socket::{BoxSocket, TransportKind};

    fn info(max: usize) -> SocketInfo {
        SocketInfo::new(TransportKind::Other("duplex".into()), max)
    }

    /// A pipe whose buffer is smaller than a frame, so backpressure is real.
    async fn pair() -> (BoxSocket, BoxSocket) {
        let (a, b) = tokio::io::duplex(16 * 1024);
        (Box::new(FramedSocket::new(a, info(256 * 1024))), Box::new(FramedSocket::new(b, info(256 * 1024))))
    }

    crate::socket_conformance_tests!(pair);

    fn raw_and_socket(max: usize) -> (DuplexStream, FramedSocket) {
        let (raw, other) = tokio::io::duplex(4096);
        (raw, FramedSocket::new(other, info(max)))
    }

    #[tokio::test]
    async fn an_oversized_length_closes_without_allocating() {
        let (mut raw, socket) = raw_and_socket(1024);
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
    async fn an_unknown_frame_kind_is_a_protocol_error() {
        let (mut raw, socket) = raw_and_socket(1024);
        raw.write_all(&[7, 0, 0, 0, 1, 0]).await.unwrap();
        let reason = tokio::time::timeout(Duration::from_secs(5), socket.closed()).await.unwrap();
        assert_eq!(reason.code, CloseCode::ProtocolError);
    }

    #[tokio::test]
    async fn a_stream_ending_without_a_close_frame_is_a_transport_failure() {
        let (a, b) = tokio::io::duplex(4096);
        let (dialed, accepted) = (FramedSocket::new(a, info(1024)), FramedSocket::new(b, info(1024)));
        dialed.send(Bytes::from_static(b"last words")).await.unwrap();
        drop(dialed);
        let reason = tokio::time::timeout(Duration::from_secs(5), accepted.closed()).await.unwrap();
        assert_eq!(reason.code, CloseCode::TransportFailure);
        // Data that arrived before the stream ended is still delivered.
        assert_eq!(accepted.recv().await.unwrap(), "last words");
        assert!(matches!(accepted.recv().await, Err(Error::Closed { .. })));
    }
}
