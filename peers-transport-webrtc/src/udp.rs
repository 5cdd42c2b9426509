//! The UDP socket a peer connection's ICE agent uses for its host candidates when
//! we create it ourselves, with receive and send buffers large enough for SCTP's
//! bursts, handed to the library as a UDP mux.
//!
//! Why: the library's SCTP sends its whole congestion window as one unpaced
//! burst. A socket with the kernel's default receive buffer (208 KiB on Linux:
//! 92 datagrams of 1,200 bytes, once the kernel charges its per-packet overhead)
//! overflows whenever the receiving runtime is busy for a moment, and every
//! datagram the kernel drops costs SCTP a retransmission timeout. With a buffer
//! larger than SCTP's receive window (1 MiB of payload), a whole burst fits.
//!
//! When: only where the library would gather host candidates alone. With a UDP
//! mux, `webrtc-ice` 0.17 gathers no server-reflexive (STUN) candidates at all, so
//! the mux is used for [`CandidateScope::LoopbackOnly`](crate::CandidateScope)
//! (loopback has no NAT to learn about) and nowhere else; see
//! [`WebRtcConfig::udp_socket_buffer`](crate::WebRtcConfig::udp_socket_buffer).
//! Relayed candidates always use the library's own TURN client socket.
//!
//! One socket per peer connection, closed when its ICE agent closes (or, if the
//! agent never started, when the peer connection is dropped).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Protocol, Socket, Type};
use webrtc::ice::udp_mux::{UDPMux, UDPMuxDefault, UDPMuxParams};
use webrtc::util::Conn;

use crate::error::{Error, Result};

/// Set once the sizes the kernel granted were logged.
static LOGGED: AtomicBool = AtomicBool::new(false);

/// Binds a UDP socket on `ip` (port chosen by the kernel) with receive and send
/// buffers of `buffer` bytes each, or the kernel's maximum if lower (Linux clamps
/// to `net.core.rmem_max` / `wmem_max`), and wraps it in a mux for one peer
/// connection. Logs the granted sizes once per process.
pub(crate) fn bind_mux(ip: IpAddr, buffer: usize) -> Result<Arc<dyn UDPMux + Send + Sync>> {
    let socket = bind(SocketAddr::new(ip, 0), buffer).map_err(|e| Error::webrtc(format!("ice socket: {e}")))?;
    Ok(Arc::new(OwnedMux { inner: UDPMuxDefault::new(UDPMuxParams::new(socket)) }))
}

fn bind(addr: SocketAddr, buffer: usize) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a kernel that refuses a size keeps its default, which works,
    // only slower under bursts.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        // Linux reports twice the size asked for (it counts its own overhead).
        let received = socket.recv_buffer_size().unwrap_or(0);
        let sent = socket.send_buffer_size().unwrap_or(0);
        if received < buffer || sent < buffer {
            tracing::info!(
                asked = buffer,
                receive = received,
                send = sent,
                "ice socket buffers smaller than asked (raise net.core.rmem_max / wmem_max for faster bulk transfers)"
            );
        } else {
            tracing::debug!(asked = buffer, receive = received, send = sent, "ice socket buffers");
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// The library's mux for one peer connection: it closes the socket (and the mux's
/// read task) when the ICE agent lets go of its connection, and when dropped. The
/// library's own mux is meant to be shared and never closes by itself.
struct OwnedMux {
    inner: Arc<UDPMuxDefault>,
}

#[async_trait::async_trait]
impl UDPMux for OwnedMux {
    async fn close(&self) -> std::result::Result<(), webrtc::util::Error> {
        self.inner.close().await
    }

    async fn get_conn(
        self: Arc<Self>,
        ufrag: &str,
    ) -> std::result::Result<Arc<dyn Conn + Send + Sync>, webrtc::util::Error> {
        Arc::clone(&self.inner).get_conn(ufrag).await
    }

    async fn remove_conn_by_ufrag(&self, ufrag: &str) {
        // The agent calls this when it closes: this mux serves no one else.
        self.inner.remove_conn_by_ufrag(ufrag).await;
        let _ = self.inner.close().await;
    }
}

impl Drop for OwnedMux {
    fn drop(&mut self) {
        let inner = Arc::clone(&self.inner);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if !inner.is_closed().await {
                    let _ = inner.close().await;
                }
            });
        }
    }
}
