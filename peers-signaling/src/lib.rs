//! The peers signaling server and the client devices use to reach it.
//!
//! Features: `bin` builds the `peers-signaling` binary (command line, TOML
//! config file, log output); without it the crate is a library only. The
//! library still holds both the server and the client.
//!
//! What it does:
//!
//! - **Registration that proves key ownership.** The server sends each
//!   connection a fresh challenge; the device signs
//!   `"peers/v1 signaling register" || nonce || server origin` with its ed25519 key and the
//!   server binds the connection to the [`DeviceId`](peers_sdk::DeviceId)
//!   derived from that key. A second registration of the same device replaces
//!   the first. The sender of every relayed message is set by the server.
//! - **Presence**: devices watch devices they name and hear online/offline.
//! - **Relay** of `offer`, `answer`, `ice-candidate`, `ready`, `cancel` and
//!   `error` signals, each with a message id and an [`Outcome`]: delivered,
//!   queued, expired or rejected with a reason.
//! - **An offline queue**, bounded per device and overall (count and bytes),
//!   with a time to live per message and an explicit expiry notice to the
//!   sender. Nothing is dropped silently. It lives in SQLite by default
//!   ([`store::SqliteStore`]) and survives a restart.
//! - **ICE configuration** with coturn REST TURN credentials ([`ice`]).
//! - **Protection**: per-device and per-IP rate limits, schema and size
//!   checks of every payload, a connection cap; Prometheus `/metrics` and
//!   `/healthz`.
//! - **Sessions by code**: create returns a transfer id, a short code, a
//!   sender token and an expiry; exactly one device joins by the code; wrong
//!   codes lock a session after a few tries ([`sessions`]).
//! - **A frame relay** between two registered devices that both ask for it,
//!   as a [`Socket`](peers_sdk::Socket) on each side ([`RelaySocket`]), with
//!   byte and time caps per pair ([`relay`]).
//! - **Several instances behind one Redis** ([`store::StoreConfig::Redis`]):
//!   the queue, notices, presence, sessions and per-device rate limits live
//!   in Redis, and deliveries cross instances through `socketioxide-redis`
//!   rooms, so any instance can serve any device. A frame relay needs both
//!   devices on one instance.
//!
//! What it does not do: relay frames between instances, serve TLS
//! itself (put a TLS-terminating proxy in front; the client dials `https`),
//! authenticate the server to devices (that is what TLS is for), or reconnect
//! a client (the caller decides when to dial again).
//!
//! The JSON wire protocol is in [`protocol`] and `docs/signaling.md`.
//!
//! # Example
//!
//! ```
//! use peers_signaling::{ClientOptions, ServerConfig, SignalKind, SignalingClient, SignalingServer, Outcome};
//! use peers_sdk::DeviceKeys;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = SignalingServer::bind(ServerConfig::in_memory()).await?; // 127.0.0.1, any port
//! let url = server.url().expect("bound");
//! let alice = SignalingClient::connect(&url, &DeviceKeys::generate("alice")?, ClientOptions::default()).await?;
//! let bob = SignalingClient::connect(&url, &DeviceKeys::generate("bob")?, ClientOptions::default()).await?;
//! let mut inbox = bob.incoming().expect("taken once");
//!
//! let sent = alice.send(bob.device_id(), SignalKind::Offer, serde_json::json!({"sdp": "v=0"})).await?;
//! assert_eq!(sent.outcome, Outcome::Delivered);
//! let signal = inbox.recv().await.expect("bob gets the offer");
//! assert_eq!(&signal.from, alice.device_id());
//! assert_eq!(signal.kind, SignalKind::Offer);
//! alice.close().await;
//! bob.close().await;
//! server.shutdown().await;
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(missing_docs)]

mod client;
mod error;
pub mod ice;
#[cfg(feature = "load-gen")]
pub mod load;
pub mod notices;
pub mod protocol;
pub mod queue;
mod ratelimit;
pub mod relay;
mod server;
pub mod sessions;
pub mod store;

pub use client::{
    ClientEvent, ClientOptions, CreatedSession, IncomingSignal, JoinedSession, Outcome, OutgoingSignal, RelaySocket,
    Sent, SignalingClient,
};
pub use error::{Error, Result};
pub use ice::{IceConfig, IceServer, IceSettings};
pub use protocol::{ErrorCode, Rejection, SignalKind};
pub use ratelimit::RateLimits;
pub use server::{ServerConfig, SignalingServer, detach_request_head};
