//! The crate's one error type.

use std::time::Duration;

use peers_sdk::DeviceId;

/// Everything that can go wrong when dialing, accepting or signaling WebRTC
/// connections. Errors of the socket itself (a send on a closed socket, a frame too
/// large) are [`peers_sdk::Error`]s, as the [`Socket`](peers_sdk::Socket) trait
/// requires.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The data channel did not open within the connect timeout. The caller may fall
    /// back to another transport (socket.io).
    #[error("webrtc connection to {remote} did not open within {after:?}")]
    ConnectTimeout {
        /// The device we dialed.
        remote: DeviceId,
        /// The configured limit.
        after: Duration,
    },
    /// The peer connection failed (ICE found no working path, DTLS or SCTP failed)
    /// before the data channel opened.
    #[error("webrtc connection to {remote} failed: {detail}")]
    ConnectFailed {
        /// The remote device.
        remote: DeviceId,
        /// What failed.
        detail: String,
    },
    /// The remote device cancelled the attempt or answered it with an error signal.
    #[error("{remote} refused the webrtc connection: {reason}")]
    Refused {
        /// The remote device.
        remote: DeviceId,
        /// The reason it gave (bounded in length).
        reason: String,
    },
    /// The signaling channel failed or is closed.
    #[error("signaling failed: {0}")]
    Signaling(String),
    /// A signal was refused: malformed, too large, for an unknown session, or out of
    /// order. Nothing was kept from it.
    #[error("signal from {from} refused: {reason}")]
    InvalidSignal {
        /// Who sent it.
        from: DeviceId,
        /// Why it was refused.
        reason: SignalRefusal,
    },
    /// Too many connection attempts are in progress.
    #[error("too many webrtc sessions in progress (limit {max})")]
    TooManySessions {
        /// The configured limit.
        max: usize,
    },
    /// The DTLS certificate the peer presented does not match the fingerprint in its
    /// SDP, or an SDP carries no usable fingerprint. The connection is not used.
    #[error("dtls fingerprint check failed: {0}")]
    Fingerprint(String),
    /// The WebRTC library reported an error.
    #[error("webrtc: {0}")]
    WebRtc(String),
    /// The endpoint has shut down.
    #[error("the webrtc endpoint is closed")]
    EndpointClosed,
    /// A device tried to connect to itself.
    #[error("a device cannot connect to itself")]
    SelfConnection,
}

/// Why a signal was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignalRefusal {
    /// A field is longer than its limit.
    #[error("{field} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The session id is empty, too long or has characters outside `[0-9A-Za-z_-]`.
    #[error("malformed session id")]
    BadSessionId,
    /// The SDP does not parse or lacks what a data channel needs.
    #[error("malformed sdp: {0}")]
    BadSdp(String),
    /// The ICE candidate does not parse.
    #[error("malformed ice candidate: {0}")]
    BadCandidate(String),
    /// The signal names a session we do not know (for example an answer without an
    /// offer, or candidates for a session that ended).
    #[error("unknown session")]
    UnknownSession,
    /// An offer reused the id of a session in progress.
    #[error("duplicate session")]
    DuplicateSession,
    /// The signal does not fit the session's state (an offer to the dialing side).
    #[error("unexpected {0} signal")]
    Unexpected(&'static str),
    /// The session's signal queue is full; the sender is flooding it.
    #[error("too many signals queued for the session")]
    Flooded,
    /// The signal body is not valid JSON of the expected shape.
    #[error("malformed signal body: {0}")]
    BadBody(String),
}

impl Error {
    pub(crate) fn webrtc(err: impl std::fmt::Display) -> Self {
        Error::WebRtc(bounded(err.to_string()))
    }
}

/// Cuts a message to at most 256 bytes on a char boundary, so nothing a peer sends
/// grows our errors without bound.
pub(crate) fn bounded(mut text: String) -> String {
    peers_sdk::text::truncate(&mut text, 256);
    text
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
