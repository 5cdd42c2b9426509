//! The peers [`Socket`](peers_sdk::Socket) over a WebRTC data channel.
//!
//! What it does:
//!
//! - [`WebRtcEndpoint`] dials a device by id ([`connect`](WebRtcEndpoint::connect))
//!   and hands out the connections other devices open
//!   ([`accept`](WebRtcEndpoint::accept)), with trickle ICE over any [`Signaling`]
//!   channel, STUN/TURN servers from the configuration and from the signaling
//!   channel, and a connect timeout (15 s) that ends in [`Error::ConnectTimeout`]
//!   so the caller can fall back to socket.io.
//! - [`WebRtcSocket`] carries frames over one reliable, ordered data channel, with
//!   backpressure on the channel's buffered amount, a close that carries its
//!   reason, and the selected path as data (a [`peers_sdk::PathInfo`]: direct,
//!   through a NAT or relayed, its ends, and the round-trip time).
//! - Every socket is confidential (DTLS) and reports a channel binding of both
//!   DTLS certificate fingerprints ([`BINDING_KIND`]), after checking that the
//!   certificate the peer presented matches its SDP. The `Connection` handshake
//!   binds them, so a man in the middle who terminates DTLS on each side is
//!   refused, and the inner AEAD layer is skipped only then.
//! - Every incoming signal is checked (sizes, SDP shape, session) before use; bad
//!   ones are refused with a typed error and leave no state behind.
//! - With [`CandidateScope::LoopbackOnly`], each peer connection's ICE socket is one
//!   the crate binds itself, with receive and send buffers of
//!   [`WebRtcConfig::udp_socket_buffer`] (4 MiB; the kernel may clamp it, and the
//!   granted sizes are logged once), so SCTP's unpaced bursts are not dropped by
//!   the kernel. Other scopes keep the library's own sockets and the kernel's
//!   default buffers: `webrtc-ice` 0.17 gathers no STUN candidates on a socket it
//!   did not create. See `docs/transport-webrtc.md` §6.1.
//!
//! Limit: the library's SCTP marshals each outgoing packet (at most 1,163 bytes of
//! user data) on tokio's blocking pool and awaits it, so on a current-thread runtime
//! every packet costs two thread hand-offs and large transfers are capped in packets
//! per second (about 10 to 22 MB/s on two shared cores), whatever the frame size.
//! Run the endpoint on a multi-threaded runtime for bulk data (`docs/transport-webrtc.md` §9).
//!
//! What it does not do: authenticate devices (the `Connection` handshake on top
//! does), choose between transports (the connection manager does), or run a
//! signaling server (`peers-signaling` does). The WebRTC library (`webrtc` 0.17,
//! see `docs/decisions/0002-webrtc-line.md`) stays behind the `Socket`.
//!
//! ```
//! use std::sync::Arc;
//! use peers_sdk::{DeviceKeys, Socket};
//! use peers_transport_webrtc::{MemorySignalingHub, WebRtcConfig, WebRtcEndpoint};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (alice, bob) = (DeviceKeys::generate("alice")?, DeviceKeys::generate("bob")?);
//! // Any `Signaling` works; the in-memory hub (feature `test-utils`) needs no server.
//! let hub = MemorySignalingHub::new();
//! let dialer = WebRtcEndpoint::new(Arc::new(hub.join(alice.device_id())), WebRtcConfig::loopback());
//! let listener = WebRtcEndpoint::new(Arc::new(hub.join(bob.device_id())), WebRtcConfig::loopback());
//!
//! let (dialed, accepted) = tokio::join!(dialer.connect(bob.device_id()), listener.accept());
//! let (dialed, accepted) = (dialed?, accepted?);
//! dialed.send("hello".into()).await?;
//! assert_eq!(accepted.recv().await?, "hello");
//! assert!(dialed.info().security.channel_binding.is_some());
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(missing_docs)]

mod config;
mod endpoint;
mod error;
mod peer;
mod sdp;
mod session;
pub mod signal;
mod signaling;
mod socket;
mod udp;

pub use config::{CandidateScope, IceServer, WebRtcConfig};
pub use endpoint::WebRtcEndpoint;
pub use error::{Error, Result, SignalRefusal};
pub use peer::PeerState;
pub use sdp::{format_fingerprint, sha256_fingerprint};
pub use signal::{IceCandidate, SessionId, SignalKindName, SignalPayload, WebRtcSignal};
pub use signaling::{IncomingSignal, Signaling};
#[cfg(feature = "test-utils")]
pub use signaling::{Interceptor, MemorySignaling, MemorySignalingHub};
pub use socket::{BINDING_KIND, WebRtcSocket};

/// A bare peer connection of the library with the settings our sockets use
/// (detached channels, our ICE timers and candidate scope, our UDP socket on
/// loopback), for benchmarks that measure the library alone beside [`WebRtcSocket`].
#[cfg(feature = "test-utils")]
pub async fn library_peer_connection(
    config: &WebRtcConfig,
) -> Result<std::sync::Arc<webrtc::peer_connection::RTCPeerConnection>> {
    peer::new_peer_connection(config, Vec::new()).await
}
