//! The `peers` [`Socket`](peers_sdk::Socket) over socket.io: a server
//! ([`SocketIoServer`], socketioxide on axum) that accepts sockets and a client
//! ([`connect`], `rust_socketio`) that dials one.
//!
//! What it does:
//!
//! - carries whole frames in order, exactly once, each as one socket.io event
//!   (small frames from the client as one text event so Nagle's algorithm cannot
//!   stall them; see [`ClientOptions::small_frame_limit`]);
//! - applies backpressure end to end with credit-based flow control: the
//!   receiver grants credit as its application reads, every buffer is bounded,
//!   and a peer that sends beyond its credit is disconnected
//!   ([`CloseCode::ProtocolError`](peers_sdk::CloseCode::ProtocolError));
//! - tells the peer why it closes (`"peers:close"`); a disconnect without a
//!   reason (server gone, network error) is reported as
//!   [`CloseCode::TransportFailure`](peers_sdk::CloseCode::TransportFailure);
//! - caps the server's connections, refusing the excess with a reason, and can
//!   share one socketioxide instance with other namespaces
//!   ([`configure_builder`], [`SocketIoAcceptor::attach`]);
//! - classifies peers as loopback, LAN (including configured [`LanRange`]s) or
//!   internet;
//! - optionally serves TLS with rustls ([`ServerOptions::tls`]); the client
//!   dials `https`/`wss` with native-tls and can trust extra roots
//!   ([`ClientOptions::tls_root_certificates`]). Such sockets report
//!   themselves confidential.
//!
//! # Features
//!
//! | Feature  | Default | What it brings |
//! |----------|---------|----------------|
//! | `client` | yes     | [`connect`], [`client_builder`], [`ClientOptions`] (`rust_socketio`, native-tls) |
//! | `server` | yes     | [`SocketIoServer`], [`SocketIoAcceptor`], server TLS (socketioxide on axum, tokio-rustls) |
//!
//! Both are on by default because a device usually listens on its LAN and
//! dials the others. An application that only dials uses
//! `default-features = false, features = ["client"]` and compiles no
//! socketioxide or axum; one that only accepts drops `rust_socketio` and
//! native-tls the same way. The socket itself ([`SocketIoSocket`]), the wire
//! mapping and flow control are in both.
//!
//! What it does not do: reconnect (the layers above decide when to dial again),
//! authenticate (the [`Connection`](peers_sdk::Connection) handshake does, on
//! top of it), or offer a channel binding: `rust_socketio` does not expose its
//! TLS session, so the client side could not offer the same binding, and the
//! connection's own AEAD stays on over TLS. The wire mapping, flow control and limits are in
//! `docs/transport-socketio.md`.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use peers_sdk::{Connection, ConnectionConfig, DeviceKeys, TrustLevel, rpc::RemoteError};
//! use peers_transport_socketio::{ClientOptions, ServerOptions, SocketIoServer, connect};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = SocketIoServer::bind(ServerOptions::default()).await?; // 127.0.0.1, any port
//! let alice = Arc::new(DeviceKeys::generate("alice")?);
//! let bob = Arc::new(DeviceKeys::generate("bob")?);
//! let trust_everyone = |_: &peers_sdk::DeviceInfo| TrustLevel::Trusted;
//!
//! // Bob accepts on the server; Alice dials it.
//! let url = server.url();
//! let (dialed, accepted) = tokio::join!(connect(&url, ClientOptions::default()), server.accept());
//! let (dialed, accepted) = (dialed?, accepted.expect("server is running"));
//! let (dialer, listener) = tokio::join!(
//!     Connection::connect(Box::new(dialed), ConnectionConfig::new(alice, trust_everyone), Some(bob.device_id())),
//!     Connection::accept(Box::new(accepted), ConnectionConfig::new(bob, trust_everyone)),
//! );
//! let (dialer, listener) = (dialer?, listener?);
//!
//! listener.expose_rpc("add", |(x, y): (i64, i64)| async move { Ok::<_, RemoteError>(x + y) });
//! let sum: i64 = dialer.emit("add", &(2, 40)).await?;
//! assert_eq!(sum, 42);
//! server.shutdown().await;
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(missing_docs)]

#[cfg(feature = "server")]
mod acceptor;
#[cfg(feature = "client")]
mod client;
mod error;
mod flow;
mod limits;
mod locality;
mod separators;
#[cfg(feature = "server")]
mod server;
mod socket;
#[cfg(feature = "server")]
mod tcp;
#[cfg(feature = "server")]
mod tls;
mod wire;

#[cfg(feature = "server")]
pub use acceptor::SocketIoAcceptor;
#[cfg(feature = "client")]
pub use client::{ClientOptions, client_builder, connect};
pub use error::{Error, Result};
pub use limits::FrameLimits;
pub use locality::{InvalidLanRange, LanRange, classify};
/// The rustls version [`ServerOptions::tls`] takes (with `rustls::pki_types`),
/// and whose `pki_types` [`ClientOptions::tls_root_certificates`] holds.
pub use rustls;
#[cfg(feature = "server")]
pub use server::{ServerOptions, SocketIoServer, configure_builder};
pub use socket::SocketIoSocket;
#[cfg(feature = "server")]
pub use tcp::QuickAck;
#[cfg(feature = "server")]
pub use tls::{server_tls_config, server_tls_config_from_pem};
pub use wire::DEFAULT_SMALL_FRAME_LIMIT;
