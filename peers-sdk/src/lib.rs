//! Core of `peers`: device identity, the transport-agnostic [`Socket`] trait, the
//! PeerTx codec, and the authenticated [`Connection`] with two-way RPC.
//!
//! A transport crate needs nothing else: it implements [`Socket`] (or wraps a
//! byte stream in [`FramedSocket`](socket::FramedSocket)), accepts through a
//! [`Listener`](socket::Listener) and dials through a [`Dialer`], whose
//! [`ConnectionClass`] comes from the [`PathKind`] its sockets report.
//!
//! # Handlers before the first call
//!
//! Either side may call the other as soon as its `connect` or `accept`
//! returns, so handlers that must answer the first call are installed by the
//! [`ConnectionConfig`]: [`ConnectionConfig::with_setup`] runs on every new
//! connection after the peer is verified and before the peer is told the
//! connection is ready (the accepting side sends `Ready` after it; the dialing
//! side reads `Ready` after it). Handlers added later with
//! [`Connection::expose_rpc`] work too, but a call that arrives first is
//! answered [`UnknownMethod`](rpc::RemoteErrorCode::UnknownMethod).
//!
//! ```
//! use std::sync::Arc;
//! use peers_sdk::{Connection, ConnectionConfig, DeviceKeys, MemorySocket, TrustLevel, rpc::RemoteError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> peers_sdk::Result<()> {
//! let trust_everyone = |_: &peers_sdk::DeviceInfo| TrustLevel::Trusted;
//! let alice = ConnectionConfig::new(Arc::new(DeviceKeys::generate("alice")?), trust_everyone);
//! // Bob's handlers exist before Alice learns the connection is ready.
//! let bob = ConnectionConfig::new(Arc::new(DeviceKeys::generate("bob")?), trust_everyone).with_setup(|connection| {
//!     let caller = connection.remote().user_id.clone();
//!     connection.expose_rpc("greet", move |(): ()| {
//!         let caller = caller.clone();
//!         async move { Ok::<_, RemoteError>(format!("hello, {caller}")) }
//!     });
//! });
//! let (a, b) = MemorySocket::pair(64, 64 * 1024);
//! let (dialer, _listener) =
//!     tokio::join!(Connection::connect(Box::new(a), alice, None), Connection::accept(Box::new(b), bob));
//! let greeting: String = dialer?.emit("greet", &()).await?;
//! assert_eq!(greeting, "hello, alice");
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(missing_docs)]

pub mod codec;
#[cfg(feature = "test-utils")]
pub mod conformance;
mod connection;
pub mod dial;
pub mod error;
pub mod flow;
pub mod handshake;
#[cfg(test)]
mod hostile_tests;
pub mod identity;
pub mod rpc;
pub mod socket;
#[cfg(feature = "test-utils")]
pub mod testdata;
pub mod text;
pub mod trust;

pub use connection::{
    Clock, Connection, ConnectionConfig, ConnectionState, Setup, StreamProgress, StreamReader, StreamWriter,
};
pub use dial::{ConnectionClass, DialError, Dialer};
pub use error::{CodecError, Error, HandshakeError, Result};
pub use handshake::TransportCipher;
pub use identity::{DeviceId, DeviceInfo, DeviceKeys};
pub use socket::{
    BoxSocket, CloseCode, CloseReason, MemorySocket, PathInfo, PathKind, Socket, SocketInfo, SocketState,
};
pub use trust::{TrustLevel, TrustPolicy, TrustStore};
