//! The peers signaling server and the client devices use to reach it.
//!
//! # Features
//!
//! | Feature    | Default | What it brings |
//! |------------|---------|----------------|
//! | `client`   | yes     | [`SignalingClient`] and its frame relay socket, [`RelaySocket`] (`rust_socketio`) |
//! | `server`   |         | `SignalingServer`: the offline queue, notices, sessions, frame relays, rate limits, metrics, the SQLite and in-memory stores (axum, socketioxide, governor, metrics, the Prometheus exporter, rusqlite, tower-http) |
//! | `redis`    |         | `server` plus `store::StoreConfig::Redis`: several instances behind one Redis or a Redis Cluster (redis, socketioxide-redis) |
//! | `bin`      |         | `server` plus the `peers-signaling` binary's command line, TOML config file and log output (clap, toml, anyhow, tracing-subscriber) |
//! | `load-gen` |         | the load generator (module `load`), for the load bench and its smoke test |
//!
//! (Items of the server features are named, not linked, here, so these docs
//! build with any feature set; they are documented where they are defined.)
//!
//! Without any feature the crate is [`protocol`] alone: the JSON messages,
//! the limits and session states both ends share. A device needs the default
//! (`client`) and compiles no server; a deployment builds the binary with
//! `--features bin` (and `redis` for several instances). Without `redis`,
//! `store::StoreConfig::Redis` is refused by
//! validation with an error that names the feature.
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
//! - **Privacy by trust**: a device may give a signed allow list
//!   ([`SignalingClientOptions::allow`], [`SignalingClient::set_allow`]); to any device
//!   not on it the server answers as if the device did not exist (no presence,
//!   signals queued and expired, relays never paired; the `privacy` module).
//! - **Relay** of `offer`, `answer`, `ice-candidate`, `ready`, `cancel` and
//!   `error` signals, each with a message id and an [`Outcome`]: delivered,
//!   queued, expired or rejected with a reason.
//! - **An offline queue**, bounded per device and overall (count and bytes),
//!   with a time to live per message and an explicit expiry notice to the
//!   sender. Nothing is dropped silently. It lives in SQLite by default
//!   (`store::SqliteStore`) and survives a restart.
//! - **ICE configuration** with coturn REST TURN credentials (module `ice`).
//! - **Protection**: per-device and per-IP rate limits, schema and size
//!   checks of every payload, a connection cap; Prometheus `/metrics` and
//!   `/healthz`.
//! - **Sessions by code**: create returns a transfer id, a short code, a
//!   sender token and an expiry; exactly one device joins by the code; wrong
//!   codes lock a session after a few tries (module `sessions`).
//! - **A frame relay** between two registered devices that both ask for it,
//!   as a [`Socket`](peers_sdk::Socket) on each side ([`RelaySocket`]), with
//!   byte and time caps per pair (module `relay`).
//! - **Several instances behind one Redis** (`store::StoreConfig::Redis`),
//!   one server or a Redis Cluster (its `cluster` flag: slot routing and
//!   sharded pub/sub): the queue, notices, presence, sessions, relays and
//!   per-device rate limits live in Redis, and deliveries cross instances
//!   through `socketioxide-redis` rooms, so any instance can serve any
//!   device; frame relays cross instances over Redis pub/sub.
//!
//! What it does not do: serve TLS itself (put a TLS-terminating proxy in
//! front; the client dials `https`), authenticate the server to devices
//! (that is what TLS is for), or reconnect a client (the caller decides when
//! to dial again).
//!
//! The JSON wire protocol is in [`protocol`] and `docs/signaling.md`.
//!
//! # Example
//!
//! ```
//! use peers_signaling::{SignalingClientOptions, ServerConfig, SignalKind, SignalingClient, SignalingServer, Outcome};
//! use peers_sdk::DeviceKeys;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = SignalingServer::bind(ServerConfig::in_memory()).await?; // 127.0.0.1, any port
//! let url = server.url().expect("bound");
//! let alice = SignalingClient::connect(&url, &DeviceKeys::generate("alice")?, SignalingClientOptions::default()).await?;
//! let bob = SignalingClient::connect(&url, &DeviceKeys::generate("bob")?, SignalingClientOptions::default()).await?;
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

#[cfg(feature = "client")]
mod client;
mod error;
#[cfg(feature = "server")]
pub mod ice;
#[cfg(feature = "load-gen")]
pub mod load;
#[cfg(feature = "server")]
pub mod notices;
#[cfg(feature = "server")]
pub mod privacy;
pub mod protocol;
#[cfg(feature = "server")]
pub mod queue;
#[cfg(feature = "server")]
mod ratelimit;
#[cfg(feature = "server")]
pub mod relay;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
pub mod sessions;
#[cfg(feature = "server")]
pub mod store;

#[cfg(feature = "client")]
pub use client::{
    ClientEvent, CreatedSession, DeliveredSignal, JoinedSession, Outcome, OutgoingSignal, RelaySocket, Sent,
    SignalingClient, SignalingClientOptions,
};
pub use error::{Error, Result};
#[cfg(feature = "server")]
pub use ice::IceSettings;
pub use protocol::{AllowList, ErrorCode, IceConfig, IceServerEntry, Rejection, SessionKind, SessionState, SignalKind};
#[cfg(feature = "server")]
pub use ratelimit::RateLimits;
#[cfg(feature = "server")]
pub use server::{
    RECEIVE_PAGE_CSP, RECEIVE_PAGE_PATH, ReceivePage, ServerConfig, SignalingServer, detach_request_head,
};
