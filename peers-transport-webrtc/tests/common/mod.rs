//! Helpers shared by this crate's integration tests: pairs of endpoints on an
//! in-memory signaling hub, dialing each other over real peer connections on
//! loopback.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use peers_sdk::DeviceKeys;
use peers_transport_webrtc::{MemorySignalingHub, WebRtcConfig, WebRtcEndpoint, WebRtcSocket};

/// Generous bound for things that should happen promptly on a loaded machine.
pub const PROMPT: Duration = Duration::from_secs(20);

/// Two devices' endpoints on one hub.
pub struct Pair {
    pub hub: MemorySignalingHub,
    pub alice: Arc<DeviceKeys>,
    pub bob: Arc<DeviceKeys>,
    pub dialer: WebRtcEndpoint,
    pub listener: WebRtcEndpoint,
}

impl Pair {
    pub fn new(config: WebRtcConfig) -> Pair {
        let hub = MemorySignalingHub::new();
        let alice = Arc::new(DeviceKeys::generate("alice").unwrap());
        let bob = Arc::new(DeviceKeys::generate("bob").unwrap());
        let dialer = WebRtcEndpoint::new(Arc::new(hub.join(alice.device_id())), config.clone());
        let listener = WebRtcEndpoint::new(Arc::new(hub.join(bob.device_id())), config);
        Pair { hub, alice, bob, dialer, listener }
    }

    /// Dials bob from alice: (dialed socket, accepted socket).
    pub async fn connect(&self) -> (WebRtcSocket, WebRtcSocket) {
        let (dialed, accepted) = tokio::time::timeout(PROMPT, async {
            tokio::join!(self.dialer.connect(self.bob.device_id()), self.listener.accept())
        })
        .await
        .expect("webrtc connect timed out");
        (dialed.expect("dial failed"), accepted.expect("accept failed"))
    }
}

/// A fresh connected pair whose endpoints live as long as the test runtime.
pub async fn socket_pair() -> (WebRtcSocket, WebRtcSocket) {
    let pair = Pair::new(WebRtcConfig::loopback());
    let sockets = pair.connect().await;
    // The endpoints only dispatch signals; the sockets do not need them.
    drop(pair);
    sockets
}

/// A socket shared between a `Connection` and the test, so the test can make it
/// vanish while the connection uses it.
#[derive(Debug, Clone)]
pub struct SharedSocket(pub Arc<WebRtcSocket>);

#[async_trait::async_trait]
impl peers_sdk::Socket for SharedSocket {
    fn info(&self) -> &peers_sdk::SocketInfo {
        self.0.info()
    }
    async fn send(&self, frame: bytes::Bytes) -> peers_sdk::Result<()> {
        self.0.send(frame).await
    }
    async fn recv(&self) -> peers_sdk::Result<bytes::Bytes> {
        self.0.recv().await
    }
    async fn close(&self, reason: peers_sdk::CloseReason) {
        self.0.close(reason).await
    }
    fn state(&self) -> peers_sdk::SocketState {
        self.0.state()
    }
    async fn closed(&self) -> peers_sdk::CloseReason {
        self.0.closed().await
    }
}

/// Live tokio tasks on the current runtime and open file descriptors of this
/// process.
pub fn resource_counts() -> (usize, usize) {
    let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let fds = std::fs::read_dir("/proc/self/fd").map(|dir| dir.count()).unwrap_or(0);
    (tasks, fds)
}
