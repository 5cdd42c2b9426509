//! The crate's one error type.

use std::time::Duration;

/// Everything that can go wrong while setting up a socket.io transport.
///
/// Once a [`SocketIoSocket`](crate::SocketIoSocket) exists, its methods report
/// failures as [`peers_sdk::Error`], like every other [`Socket`](peers_sdk::Socket).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An option has a value that cannot work.
    #[error("invalid option {field}: {detail}")]
    InvalidConfig {
        /// Which option.
        field: &'static str,
        /// Why it is invalid.
        detail: String,
    },
    /// The server could not bind its listening address.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The URL to dial is not usable.
    #[error("invalid url {url:?}: {detail}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The server could not be reached, or the socket.io connection failed.
    #[error("cannot connect to {url}: {detail}")]
    Connect {
        /// The URL dialed.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The server answered but refused the connection (connection limit, wrong
    /// namespace, incompatible transport version); `reason` is its explanation.
    #[error("{url} refused the connection: {reason}")]
    Refused {
        /// The URL dialed.
        url: String,
        /// The server's reason.
        reason: String,
    },
    /// Setting up the connection took too long.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        what: &'static str,
        /// The limit that was hit.
        after: Duration,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
