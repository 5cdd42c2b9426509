//! Accepted TCP connections: `TCP_NODELAY` on every one, and quick ACKs.
//!
//! `rust_socketio` dials with Nagle's algorithm on and offers no way to turn it
//! off. A client that writes two small WebSocket messages in a row (its
//! transport hello and then the first handshake message; a stream's last piece
//! and its end; a frame and a credit grant) sends the first at once and holds
//! the second until the first is acknowledged. If the server has nothing to send
//! back yet, Linux delays that ACK (up to 40 ms, "delayed ACK"), and the client's
//! second message waits for it: 40 ms added to a connect or a round trip.
//!
//! The server cannot switch the client's Nagle off, but it can stop delaying its
//! ACKs: [`QuickAck`] sets `TCP_QUICKACK` once a read finds the socket drained (a
//! read that returned data without filling the buffer, or one that would block
//! after a read that filled it), which sends an ACK still pending at once and
//! leaves the kernel's "ping-pong" mode, so the client's held segment goes out one
//! loopback round trip later instead of 40 ms later. The flag is not permanent (the
//! kernel falls back to delayed ACKs on its own), hence once per drained socket.
//! While data streams in, reads fill the buffer and no flag is set: the kernel
//! acknowledges a bulk stream on its own, and a `setsockopt` (with the immediate
//! ACK it sends) after each of the WebSocket reader's reads cost as much as the
//! reads themselves.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

/// An accepted TCP stream that sets `TCP_QUICKACK` whenever a read finds the
/// socket drained (when enabled; on Linux and Android only, elsewhere it is a
/// plain stream).
///
/// [`SocketIoServer`](crate::SocketIoServer) wraps every connection in one. An
/// application that serves a [`SocketIoAcceptor`](crate::SocketIoAcceptor) (or
/// any socket.io server that `rust_socketio` clients dial) from its own
/// listener wraps its accepted streams in one to spare those clients the
/// 40 ms delayed-ACK stall described in the module docs.
///
/// ```no_run
/// # async fn run(listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// let (tcp, _peer) = listener.accept().await?;
/// let stream = peers_transport_socketio::QuickAck::new(tcp, true, true);
/// # drop(stream); Ok(()) }
/// ```
#[derive(Debug)]
pub struct QuickAck {
    tcp: TcpStream,
    enabled: bool,
    /// The last read filled the caller's buffer, so more data was probably
    /// waiting: the quick ACK is owed to the next read that finds none.
    owed: bool,
}

impl QuickAck {
    /// Wraps an accepted stream, setting `TCP_NODELAY` if `nodelay` and quick
    /// ACKs if `quickack`.
    pub fn new(tcp: TcpStream, nodelay: bool, quickack: bool) -> QuickAck {
        if nodelay && let Err(err) = tcp.set_nodelay(true) {
            debug!(%err, "cannot set TCP_NODELAY");
        }
        QuickAck { tcp, enabled: quickack, owed: false }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let (before, room) = (buf.filled().len(), buf.remaining());
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if !self.enabled {
            return polled;
        }
        let read = match polled {
            Poll::Ready(Ok(())) => Some(buf.filled().len() - before),
            Poll::Pending => None,
            Poll::Ready(Err(_)) => return polled,
        };
        if ack_due(&mut self.owed, read, room)
            && let Err(err) = quick_ack(&self.tcp)
        {
            // Not fatal: ACKs are merely delayed again. Stop trying.
            debug!(%err, "cannot set TCP_QUICKACK");
            self.enabled = false;
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Whether a read that returned `read` bytes into `room` (`None`: it would block)
/// finds the socket drained with a quick ACK owed: a read that returned data without
/// filling the buffer, or a blocked one after a read that filled it (`owed` keeps
/// that). A read that fills the buffer leaves data waiting, most likely: no ACK yet.
fn ack_due(owed: &mut bool, read: Option<usize>, room: usize) -> bool {
    match read {
        Some(0) => false,
        Some(got) if got >= room => {
            *owed = true;
            false
        }
        Some(_) => {
            *owed = false;
            true
        }
        None => std::mem::take(owed),
    }
}

/// Sends any pending ACK now and leaves delayed-ACK mode (until the kernel
/// goes back to it).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn quick_ack(tcp: &TcpStream) -> io::Result<()> {
    socket2::SockRef::from(tcp).set_tcp_quickack(true)
}

/// Quick ACKs are a Linux option; elsewhere ACKs stay as the kernel sends them.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn quick_ack(_: &TcpStream) -> io::Result<()> {
    Ok(())
}

/// Accepts plain TCP for axum, each connection wrapped in [`QuickAck`].
pub(crate) struct PlainListener {
    tcp: TcpListener,
    nodelay: bool,
    quickack: bool,
}

impl PlainListener {
    pub(crate) fn new(tcp: TcpListener, nodelay: bool, quickack: bool) -> PlainListener {
        PlainListener { tcp, nodelay, quickack }
    }
}

impl Listener for PlainListener {
    type Io = QuickAck;
    type Addr = SocketAddr;

    /// Cancel-safe (`TcpListener::accept` is).
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.tcp.accept().await {
                Ok((tcp, peer)) => return (QuickAck::new(tcp, self.nodelay, self.quickack), peer),
                Err(err) if is_per_connection(&err) => {}
                Err(err) => {
                    // Out of file descriptors and the like: back off like axum does.
                    debug!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Errors that concern one incoming connection only.
pub(crate) fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::ack_due;

    #[test]
    fn the_quick_ack_waits_for_a_drained_socket() {
        let mut owed = false;
        assert!(ack_due(&mut owed, Some(10), 4096), "a short read drained the socket");
        assert!(!ack_due(&mut owed, None, 4096), "nothing owed, nothing read");
        assert!(!ack_due(&mut owed, Some(4096), 4096), "a full read: more is waiting");
        assert!(!ack_due(&mut owed, Some(4096), 4096));
        assert!(!ack_due(&mut owed, Some(0), 4096), "the end of the stream");
        assert!(ack_due(&mut owed, None, 4096), "blocked after full reads: owed now");
        assert!(!ack_due(&mut owed, None, 4096), "once");
        assert!(!ack_due(&mut owed, Some(4096), 4096));
        assert!(ack_due(&mut owed, Some(1), 4096), "a short read after a full one");
        assert!(!ack_due(&mut owed, None, 4096), "already sent");
    }
}
