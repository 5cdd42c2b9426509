//! The crate's one error type.

use std::time::Duration;

use crate::protocol::Rejection;

/// Everything that can go wrong in the signaling server or client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting has a value that cannot work; `field` names it.
    #[error("invalid setting {field}: {detail}")]
    InvalidConfig {
        /// Which setting.
        field: &'static str,
        /// Why it is invalid.
        detail: String,
    },
    /// The server could not bind its listening address.
    #[cfg(feature = "server")]
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The store (SQLite file, data directory) failed.
    #[cfg(feature = "server")]
    #[error("store: {detail}")]
    Store {
        /// What failed.
        detail: String,
    },
    /// The Redis backend failed (connection, command or script), or returned
    /// something this server cannot read.
    #[cfg(feature = "redis")]
    #[error("redis {operation}: {detail}")]
    Redis {
        /// What the server was doing.
        operation: &'static str,
        /// What failed.
        detail: String,
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
    /// The server refused a request (registration, a signal, a subscription);
    /// the rejection carries its code and explanation.
    #[error("server refused {what}: {rejection}")]
    Refused {
        /// What was asked.
        what: &'static str,
        /// The server's code and reason.
        rejection: Rejection,
    },
    /// The server did not answer in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        what: &'static str,
        /// The limit that was hit.
        after: Duration,
    },
    /// The connection to the server is closed; `reason` says why.
    #[error("connection to the signaling server closed: {reason}")]
    Closed {
        /// Why it closed.
        reason: String,
    },
    /// The server sent something this client cannot read.
    #[error("malformed {what} from the server: {detail}")]
    Protocol {
        /// Which message.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A local argument is not valid (too large a body, a bad message id).
    #[error("invalid {what}: {detail}")]
    InvalidInput {
        /// Which argument.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(feature = "server")]
impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        Error::Store { detail: err.to_string() }
    }
}
