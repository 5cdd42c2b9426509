//! An in-memory [`Socket`] pair with bounded capacity.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Mutex, mpsc};

use super::{
    CloseCode, CloseReason, ClosedBy, Locality, Socket, SocketInfo, SocketLifecycle, SocketState, TransportKind,
    TransportSecurity,
};
use crate::error::{Error, Result};

/// One end of an in-memory socket pair, for tests and for integrators who want a
/// transport without a network.
///
/// Each direction buffers at most `capacity` frames; a sender beyond that waits, so
/// a slow reader slows the writer down exactly as a real transport would.
///
/// ```
/// # use peers_sdk::socket::{MemorySocket, Socket, CloseReason};
/// # tokio_test_block_on(async {
/// let (a, b) = MemorySocket::pair(16, 64 * 1024);
/// a.send("hello".into()).await?;
/// assert_eq!(b.recv().await?, "hello");
/// a.close(CloseReason::normal("done")).await;
/// assert!(b.recv().await.is_err());
/// # Ok::<_, peers_sdk::Error>(()) }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug)]
pub struct MemorySocket {
    info: SocketInfo,
    tx: mpsc::Sender<Bytes>,
    rx: Mutex<mpsc::Receiver<Bytes>>,
    /// `states[0]` is this side's, `states[1]` the peer's.
    states: [Arc<SocketLifecycle>; 2],
}

impl MemorySocket {
    /// Creates a connected pair. Each direction holds at most `capacity` frames, and
    /// each frame is at most `max_frame_size` bytes.
    pub fn pair(capacity: usize, max_frame_size: usize) -> (MemorySocket, MemorySocket) {
        Self::pair_with_security(capacity, max_frame_size, TransportSecurity::default())
    }

    /// Like [`pair`](Self::pair), but both ends claim `security` (tests of channel
    /// binding use this). For the second end, the binding's `local` and `remote`
    /// are swapped, as a real transport would report them.
    pub fn pair_with_security(
        capacity: usize,
        max_frame_size: usize,
        security: TransportSecurity,
    ) -> (MemorySocket, MemorySocket) {
        let capacity = capacity.max(1);
        let (a_tx, b_rx) = mpsc::channel(capacity);
        let (b_tx, a_rx) = mpsc::channel(capacity);
        let a_state = Arc::new(SocketLifecycle::new());
        let b_state = Arc::new(SocketLifecycle::new());
        let info = |security: TransportSecurity, local: &str, peer: &str| {
            SocketInfo::new(TransportKind::Memory, max_frame_size)
                .with_locality(Locality::Loopback)
                .with_local_addr(local)
                .with_peer_addr(peer)
                .with_security(security)
        };
        let mut b_security = security.clone();
        if let Some(binding) = &mut b_security.channel_binding {
            std::mem::swap(&mut binding.local, &mut binding.remote);
        }
        let a = MemorySocket {
            info: info(security, "memory:a", "memory:b"),
            tx: a_tx,
            rx: Mutex::new(a_rx),
            states: [a_state.clone(), b_state.clone()],
        };
        let b = MemorySocket {
            info: info(b_security, "memory:b", "memory:a"),
            tx: b_tx,
            rx: Mutex::new(b_rx),
            states: [b_state, a_state],
        };
        (a, b)
    }

    fn closed_error(&self) -> Error {
        self.states[0].closed_error()
    }

    fn close_now(&self, reason: CloseReason) {
        let local = CloseReason { by: ClosedBy::Local, ..reason };
        let remote = local.as_remote();
        self.states[0].close(local);
        self.states[1].close(remote);
    }
}

#[async_trait]
impl Socket for MemorySocket {
    fn info(&self) -> &SocketInfo {
        &self.info
    }

    async fn send(&self, frame: Bytes) -> Result<()> {
        if frame.len() > self.info.max_frame_size {
            return Err(Error::FrameTooLarge { size: frame.len(), max: self.info.max_frame_size });
        }
        if !self.states[0].is_open() {
            return Err(self.closed_error());
        }
        tokio::select! {
            sent = self.tx.send(frame) => sent.map_err(|_| self.closed_error()),
            _ = self.states[0].closed() => Err(self.closed_error()),
        }
    }

    async fn recv(&self) -> Result<Bytes> {
        let mut rx = self.rx.lock().await;
        tokio::select! {
            biased;
            frame = rx.recv() => frame.ok_or_else(|| self.closed_error()),
            reason = self.states[0].closed() => {
                // Frames the peer sent before it closed are still delivered; after a
                // local close nothing more is read.
                if reason.by == ClosedBy::Remote
                    && let Ok(frame) = rx.try_recv()
                {
                    return Ok(frame);
                }
                Err(Error::Closed { reason })
            }
        }
    }

    async fn close(&self, reason: CloseReason) {
        self.close_now(reason);
    }

    fn state(&self) -> SocketState {
        self.states[0].state()
    }

    async fn closed(&self) -> CloseReason {
        self.states[0].closed().await
    }
}

impl Drop for MemorySocket {
    fn drop(&mut self) {
        self.close_now(CloseReason::new(CloseCode::GoingAway, "socket dropped"));
    }
}
