//! The crate's one error type.

use peers_sdk::DeviceId;

/// Everything that can go wrong in `peers-device`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A group id is empty, too long or has characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid group id {id:?}: {reason}")]
    InvalidGroupId {
        /// The rejected id (truncated to 80 characters).
        id: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A change from a peer (or a local write) breaks a limit or is malformed.
    #[error("invalid change from {origin}: {reason}")]
    InvalidChange {
        /// The device the change claims to come from.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A peer's change carries a timestamp too far in the future. Accepting it would
    /// let one device win every later conflict.
    #[error("change from {origin} is {ahead_ms} ms ahead of this device's clock (limit {limit_ms} ms)")]
    ClockSkew {
        /// The device the change claims to come from.
        origin: String,
        /// How far ahead it is.
        ahead_ms: u64,
        /// The configured limit.
        limit_ms: u64,
    },
    /// The peer is not a member of the group (or the group is not shared with it).
    #[error("device {device} is not a member of group {group}")]
    NotAMember {
        /// The device.
        device: DeviceId,
        /// The group.
        group: String,
    },
    /// The embedded database failed.
    #[error("sync database: {0}")]
    Database(#[from] rusqlite::Error),
    /// The database file belongs to another group or a newer schema.
    #[error("sync database {path}: {reason}")]
    IncompatibleDatabase {
        /// The file.
        path: String,
        /// What does not match.
        reason: String,
    },
    /// A call to a peer failed (connection closed, timeout, remote error).
    #[error("peer {device}: {source}")]
    Peer {
        /// The peer.
        device: DeviceId,
        /// The underlying failure.
        #[source]
        source: peers_sdk::Error,
    },
    /// A device tried to connect to itself.
    #[error("refusing a connection to this device itself")]
    SelfConnection,
    /// The connection limit is reached and the newcomer is not better than any
    /// connection held.
    #[error("connection limit of {limit} reached")]
    ConnectionLimit {
        /// The limit.
        limit: usize,
    },
    /// There is no connection to the device.
    #[error("not connected to {0}")]
    NotConnected(DeviceId),
    /// The group is not known to the manager.
    #[error("unknown group {0}")]
    UnknownGroup(String),
    /// A device message could not be sent or was refused.
    #[error(transparent)]
    DeviceMessage(#[from] crate::device_message::Refusal),
    /// A transfer or pairing by code failed (see [`crate::transfer::TransferError`]).
    #[error(transparent)]
    Transfer(#[from] crate::transfer::TransferError),
    /// The signaling server refused a request, or the connection to it failed.
    #[error("signaling server: {0}")]
    Signaling(#[from] peers_signaling::Error),
    /// The manager was shut down.
    #[error("the connection manager is shut down")]
    ShutDown,
    /// Making or using a connection failed.
    #[error(transparent)]
    Connection(#[from] peers_sdk::Error),
    /// A setting or a configuration file is wrong.
    #[error("{field}: {reason}")]
    Config {
        /// The setting or file.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A file or socket operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The running daemon answered a control request with an error, or not at all.
    #[error("daemon: {0}")]
    Daemon(String),
    /// No process listens on the daemon's control socket (no socket file, or
    /// nobody accepting on it).
    #[error("no daemon listens on {socket}: {source}")]
    DaemonNotListening {
        /// The control socket's path.
        socket: String,
        /// The failure to connect.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the data directory's lock: a running daemon (or
    /// one starting), or another `peers` command writing it.
    #[error("{path} is in use by another process (a `peers run` daemon, or another `peers` command)")]
    DataDirInUse {
        /// The data directory.
        path: String,
    },
    /// A blocking database task panicked or was cancelled.
    #[error("sync worker stopped: {0}")]
    Worker(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
