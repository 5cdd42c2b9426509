//! [`Listener`]: where incoming sockets come from, for any transport.

use async_trait::async_trait;

use super::BoxSocket;

/// A source of incoming sockets: a socket.io server, a WebRTC endpoint, a TCP or
/// Unix listener wrapped by an integrator.
///
/// Whoever takes the sockets (the connection manager in `peers-device`) runs the
/// handshakes and bounds how many run at once, in one place for every
/// listener, so an implementation only accepts. It should apply its own
/// transport-level limits (a bounded accept queue, TLS handshake limits) so that
/// sockets nobody accepts do not pile up.
///
/// ```
/// use async_trait::async_trait;
/// use peers_sdk::socket::{BoxSocket, Listener, MemorySocket};
/// use tokio::sync::{Mutex, mpsc};
///
/// /// Hands out sockets pushed into a channel.
/// struct Channel(Mutex<mpsc::Receiver<MemorySocket>>);
///
/// #[async_trait]
/// impl Listener for Channel {
///     fn name(&self) -> &str {
///         "channel"
///     }
///
///     async fn accept(&self) -> Option<BoxSocket> {
///         Some(Box::new(self.0.lock().await.recv().await?))
///     }
/// }
/// ```
#[async_trait]
pub trait Listener: Send + Sync + 'static {
    /// A short name for status and logs (`"socket.io"`, `"webrtc"`).
    fn name(&self) -> &str;

    /// Waits for the next incoming socket. `None` once the listener is closed for
    /// good; transient failures (one client's failed TLS handshake) are the
    /// listener's to handle and never end it.
    async fn accept(&self) -> Option<BoxSocket>;
}
