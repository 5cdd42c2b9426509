//! Core of `peers`: device identity, the transport-agnostic [`Socket`] trait, the
//! PeerTx codec, and the authenticated [`Connection`] with two-way RPC.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(missing_docs)]

pub mod codec;
#[cfg(feature = "test-utils")]
pub mod conformance;
mod connection;
pub mod error;
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
    Clock, Connection, ConnectionConfig, ConnectionState, StreamProgress, StreamReader, StreamWriter,
};
pub use error::{CodecError, Error, HandshakeError, Result};
pub use handshake::TransportCipher;
pub use identity::{DeviceId, DeviceInfo, DeviceKeys};
pub use socket::{
    BoxSocket, CloseCode, CloseReason, MemorySocket, PathInfo, PathKind, Socket, SocketInfo, SocketState,
};
pub use trust::{TrustLevel, TrustPolicy, TrustStore};
