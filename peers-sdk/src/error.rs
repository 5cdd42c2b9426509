//! The crate's one error type.

use std::path::PathBuf;
use std::time::Duration;

use crate::identity::DeviceId;
use crate::rpc::RemoteError;
use crate::socket::CloseReason;
use crate::trust::TrustLevel;

/// Everything that can go wrong in `peers-sdk`.
///
/// Variants carry enough context to act on without reading logs. Errors caused by
/// what a peer sent are grouped under [`Error::Codec`] and [`Error::Handshake`], so a
/// caller can tell "the peer misbehaved" from "the transport went away".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket or connection is closed; the reason says who closed it and why.
    #[error("closed: {reason}")]
    Closed {
        /// Why it closed.
        reason: CloseReason,
    },
    /// A single frame is bigger than the socket can carry.
    #[error("frame of {size} bytes exceeds the socket's maximum of {max} bytes")]
    FrameTooLarge {
        /// Size of the rejected frame.
        size: usize,
        /// The socket's maximum frame size.
        max: usize,
    },
    /// A frame or message from the peer could not be decoded.
    #[error("invalid data from peer: {0}")]
    Codec(#[from] CodecError),
    /// The handshake failed; the peer is not authenticated.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// A sealed frame failed authentication or arrived out of order. The connection
    /// is closed and nothing from that frame is delivered.
    #[error("integrity check failed on frame {counter}: {detail}")]
    Integrity {
        /// The frame counter the receiver expected.
        counter: u64,
        /// What was wrong.
        detail: &'static str,
    },
    /// A value could not be serialized to MessagePack.
    #[error("cannot encode {what}: {detail}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serializer's message.
        detail: String,
    },
    /// An operation did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out, for example `"rpc call \"sum\""` or `"handshake"`.
        what: String,
        /// The limit that was hit.
        after: Duration,
    },
    /// Too many RPC calls are already waiting for replies on this connection.
    #[error("too many rpc calls in flight (limit {max})")]
    TooManyCallsInFlight {
        /// The configured limit.
        max: usize,
    },
    /// The remote side answered a call with an error.
    #[error("remote error: {0}")]
    Remote(RemoteError),
    /// A reply arrived for a call that is not pending (it never existed, or it
    /// already completed or timed out).
    #[error("reply for unknown rpc call {id}")]
    UnknownCall {
        /// The call id in the reply.
        id: u64,
    },
    /// A key file or its permissions are not acceptable.
    #[error("key file {path}: {detail}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// An I/O operation on local files failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An argument given by the local caller is invalid.
    #[error("invalid {what}: {detail}")]
    InvalidInput {
        /// Which argument.
        what: &'static str,
        /// Why it is invalid.
        detail: String,
    },
}

/// Malformed or hostile data in the PeerTx framing, chunking, compression or
/// MessagePack layers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The frame is shorter than its header says.
    #[error("truncated frame: need {needed} bytes, have {have}")]
    Truncated {
        /// Bytes the header requires.
        needed: usize,
        /// Bytes present.
        have: usize,
    },
    /// The frame type byte is not one this version knows.
    #[error("unknown frame type {0:#04x}")]
    UnknownFrameType(u8),
    /// Flag bits this version does not understand are set.
    #[error("unknown frame flags {0:#04x}")]
    UnknownFlags(u8),
    /// A message (declared or reassembled) is larger than the configured maximum.
    #[error("message of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// The declared or reached size.
        size: u64,
        /// The configured maximum.
        max: usize,
    },
    /// A chunk index is not below the chunk count.
    #[error("chunk {index} out of range for message {message_id} of {count} chunks")]
    ChunkOutOfRange {
        /// The message the chunk belongs to.
        message_id: u32,
        /// The chunk's index.
        index: u32,
        /// The message's chunk count.
        count: u32,
    },
    /// A chunk arrived that is not the next one expected (a duplicate, a gap or a
    /// reordering; sockets are ordered, so any of these is a protocol violation).
    #[error("chunk {got} of message {message_id} arrived, expected chunk {expected}")]
    UnexpectedChunk {
        /// The message the chunk belongs to.
        message_id: u32,
        /// The index that should have come next.
        expected: u32,
        /// The index that came.
        got: u32,
    },
    /// A chunk's header disagrees with the first chunk of its message.
    #[error("chunk header of message {message_id} disagrees with its first chunk")]
    ChunkHeaderMismatch {
        /// The message.
        message_id: u32,
    },
    /// The chunks of a message did not add up to its declared length.
    #[error("message {message_id} declared {declared} bytes but its chunks carry {actual}")]
    LengthMismatch {
        /// The message.
        message_id: u32,
        /// Declared total length.
        declared: u64,
        /// Bytes actually received.
        actual: u64,
    },
    /// The peer started more partial messages than allowed at once.
    #[error("more than {max} partially received messages at once")]
    TooManyPartialMessages {
        /// The configured cap.
        max: usize,
    },
    /// Brotli data was corrupt.
    #[error("corrupt compressed data: {0}")]
    Decompress(String),
    /// Brotli data expands beyond the allowed size (a decompression bomb).
    #[error("compressed message expands beyond {max} bytes")]
    DecompressedTooLarge {
        /// The configured maximum message size.
        max: usize,
    },
    /// The MessagePack content does not match the expected schema.
    #[error("invalid {what}: {detail}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The deserializer's message.
        detail: String,
    },
}

/// Why a handshake was refused. Each variant names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// A handshake message has the wrong length or layout.
    #[error("malformed handshake message {message}: {detail}")]
    Malformed {
        /// Which of the three messages (1, 2 or 3).
        message: u8,
        /// What was wrong.
        detail: String,
    },
    /// The peer speaks a protocol version we do not.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// An encrypted handshake payload failed authentication: it was tampered with,
    /// replayed from another session, or the prologue (channel binding) differs.
    #[error("handshake message {message} failed authentication")]
    DecryptFailed {
        /// Which message.
        message: u8,
    },
    /// A key exchange produced the all-zero value (a low-order public key).
    #[error("peer sent a low-order x25519 key")]
    WeakKey,
    /// The peer's static-key certificate (ADR 0006) does not verify under its signing key.
    #[error("bad signature from {device}")]
    BadSignature {
        /// The device that claimed to sign.
        device: DeviceId,
    },
    /// The peer's identity fields do not agree with each other (device id, signing
    /// key and static key).
    #[error("inconsistent identity: {0}")]
    InconsistentIdentity(&'static str),
    /// The peer's clock is outside the accepted window.
    #[error("timestamp off by {skew_ms} ms, outside the {window_ms} ms window")]
    StaleTimestamp {
        /// How far the peer's timestamp is from ours.
        skew_ms: u64,
        /// The configured window.
        window_ms: u64,
    },
    /// The first message was seen before (same ephemeral key) within the window.
    #[error("replayed handshake message")]
    Replayed,
    /// The replay guard remembers its capacity of first messages, none of
    /// them old enough to forget: new first messages are refused until some
    /// age out of the timestamp window (a flood, or a guard too small).
    #[error("the replay guard is full ({capacity} first messages within the window)")]
    ReplayGuardFull {
        /// The guard's capacity.
        capacity: usize,
    },
    /// The peer's ed25519 signing key is of small order or not canonically
    /// encoded.
    #[error("peer's ed25519 signing key is weak or not canonical")]
    WeakSigningKey,
    /// Our own handshake message came back to us.
    #[error("reflected handshake message")]
    Reflected,
    /// The peer has our own device id: a device never connects to itself.
    #[error("refusing to connect to ourselves")]
    SelfConnection,
    /// The two sides see different channel bindings for the transport (a man in the
    /// middle, or a misconfigured transport).
    #[error("channel binding mismatch")]
    ChannelBindingMismatch,
    /// The peer authenticated as a different device than the one we dialed.
    #[error("expected device {expected}, peer is {actual}")]
    UnexpectedPeer {
        /// The device we dialed.
        expected: DeviceId,
        /// The device that answered.
        actual: DeviceId,
    },
    /// The initiator's cipher offer and the responder's allowed ciphers have nothing
    /// in common (one side restricted its list, or the peer is too new).
    #[error("no common transport cipher: peer offered ids {offered:?}")]
    NoCommonCipher {
        /// The cipher ids the initiator offered (ChaCha20-Poly1305's `[1]` when it
        /// sent no offer).
        offered: Vec<u8>,
    },
    /// The responder chose a cipher id this crate does not know.
    #[error("peer chose unknown transport cipher id {id}")]
    UnknownCipher {
        /// The id on the wire.
        id: u8,
    },
    /// The responder chose a cipher the initiator did not offer.
    #[error("peer chose {cipher}, which we did not offer")]
    CipherNotOffered {
        /// The cipher it chose.
        cipher: crate::handshake::TransportCipher,
    },
    /// The trust policy put the peer below the configured floor.
    #[error("{device} is {level:?}, below the required {floor:?}")]
    Untrusted {
        /// The peer.
        device: DeviceId,
        /// Its trust level.
        level: TrustLevel,
        /// The configured floor.
        floor: TrustLevel,
    },
}

impl Error {
    pub(crate) fn encode(what: &'static str, err: impl std::fmt::Display) -> Self {
        Error::Encode { what, detail: err.to_string() }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

/// Decodes MessagePack into `T`, mapping failures to [`CodecError::Decode`].
pub(crate) fn decode_msgpack<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, CodecError> {
    rmp_serde::from_slice(bytes).map_err(|e| CodecError::Decode { what, detail: e.to_string() })
}

/// Encodes `value` as MessagePack with named fields.
pub(crate) fn encode_msgpack<T: serde::Serialize + ?Sized>(what: &'static str, value: &T) -> Result<Vec<u8>, Error> {
    rmp_serde::to_vec_named(value).map_err(|e| Error::encode(what, e))
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
