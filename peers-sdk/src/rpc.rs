//! The RPC envelope and the bookkeeping of calls in flight, with no I/O.
//!
//! Every message on a [`Connection`](crate::Connection) is a MessagePack
//! `Envelope` header followed directly by a body:
//!
//! ```text
//! +------------------------------+------------------------------------+
//! | Envelope (MessagePack value) | body: MessagePack of args / result |
//! +------------------------------+------------------------------------+
//! ```
//!
//! The body is not wrapped in the envelope, so large arguments are not copied an
//! extra time.

use std::collections::HashMap;
use std::fmt;
use std::io::Cursor;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::codec::MessageBuf;
use crate::error::{CodecError, Error};
use crate::socket::CloseReason;

/// Longest method name accepted.
pub const MAX_METHOD_LEN: usize = 256;

/// The header of every message on a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Envelope {
    /// The responder accepted the handshake; the first message it sends.
    Ready,
    /// Call `method`; the body is its MessagePack arguments.
    Call { id: u64, method: String },
    /// The successful result of call `id`; the body is its MessagePack value.
    Reply { id: u64 },
    /// Call `id` failed; no body.
    Fail { id: u64, error: RemoteError },
    /// The sender is closing the connection.
    Close { reason: CloseReason },
    /// Open stream `id` to the handler `name`; the body is the metadata.
    StreamOpen { id: u64, name: String },
    /// The receiver accepted stream `id` and grants `window` bytes of credit.
    StreamAccept { id: u64, window: u64 },
    /// A piece of stream `id`; the body is the data.
    StreamData { id: u64 },
    /// Stream `id` has no more data.
    StreamEnd { id: u64 },
    /// The sender abandoned stream `id`.
    StreamReset { id: u64, error: RemoteError },
    /// The receiver consumed `bytes` more of stream `id`; the sender may send that
    /// much more.
    StreamCredit { id: u64, bytes: u64 },
    /// The receiver's handler for stream `id` finished (or refused the stream).
    StreamDone { id: u64, error: Option<RemoteError> },
}

impl Envelope {
    /// Encodes the header followed by `body`.
    pub(crate) fn encode(&self, body: &[u8]) -> Result<MessageBuf, Error> {
        let mut out = self.encode_header(body.len())?;
        out.extend_from_slice(body);
        Ok(out)
    }

    /// Encodes the header followed by `value` as MessagePack, into one buffer that
    /// becomes the frame (no intermediate copy of the body).
    pub(crate) fn encode_value<T: serde::Serialize + ?Sized>(
        &self,
        what: &'static str,
        value: &T,
    ) -> Result<MessageBuf, Error> {
        let mut out = self.encode_header(0)?;
        rmp_serde::encode::write_named(&mut out, value).map_err(|e| Error::encode(what, e))?;
        Ok(out)
    }

    /// A message buffer holding the header, with room for `body_len` more bytes.
    fn encode_header(&self, body_len: usize) -> Result<MessageBuf, Error> {
        let mut out = MessageBuf::with_capacity(64usize.saturating_add(body_len));
        rmp_serde::encode::write_named(&mut out, self).map_err(|e| Error::encode("envelope", e))?;
        Ok(out)
    }

    /// Splits a message into its header and body.
    pub(crate) fn decode(message: Bytes) -> Result<(Envelope, Bytes), CodecError> {
        let mut cursor = Cursor::new(message.as_ref());
        let envelope: Envelope = serde::Deserialize::deserialize(&mut rmp_serde::Deserializer::new(&mut cursor))
            .map_err(|e| CodecError::Decode { what: "envelope", detail: e.to_string() })?;
        let at = usize::try_from(cursor.position()).unwrap_or(usize::MAX).min(message.len());
        if let Envelope::Call { method, .. } | Envelope::StreamOpen { name: method, .. } = &envelope
            && method.len() > MAX_METHOD_LEN
        {
            return Err(CodecError::Decode { what: "envelope", detail: "method name too long".into() });
        }
        Ok((envelope, message.slice(at..)))
    }
}

/// Why a remote call failed, as the remote side reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RemoteErrorCode {
    /// No handler is registered under that name.
    UnknownMethod,
    /// The arguments did not decode into the handler's type.
    BadArguments,
    /// The handler returned an error.
    Handler,
    /// Too many calls are being handled; try again later.
    Busy,
    /// The handler panicked or was cancelled.
    Internal,
}

/// An error value returned by the remote side of a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    /// The class of failure.
    pub code: RemoteErrorCode,
    /// A description for people.
    pub message: String,
}

impl RemoteError {
    /// Longest message carried; longer ones are cut.
    pub const MAX_MESSAGE_LEN: usize = 1024;

    /// An error with `code` and `message`.
    pub fn new(code: RemoteErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        crate::text::truncate(&mut message, Self::MAX_MESSAGE_LEN);
        RemoteError { code, message }
    }

    /// A handler's own error.
    pub fn handler(message: impl fmt::Display) -> Self {
        Self::new(RemoteErrorCode::Handler, message.to_string())
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for RemoteError {}

/// What a pending call receives: the reply body or the error.
pub(crate) type CallOutcome = Result<Bytes, Error>;

/// Calls waiting for replies. Once closed, new calls are refused and every waiting
/// call has been failed with the close reason, so no callback outlives the
/// connection.
#[derive(Debug, Default)]
pub(crate) struct PendingCalls {
    next_id: u64,
    calls: HashMap<u64, oneshot::Sender<CallOutcome>>,
    closed: Option<CloseReason>,
}

impl PendingCalls {
    /// Registers a new call and returns its id and the receiver of its outcome.
    pub(crate) fn start(&mut self, max: usize) -> Result<(u64, oneshot::Receiver<CallOutcome>), Error> {
        if let Some(reason) = &self.closed {
            return Err(Error::Closed { reason: reason.clone() });
        }
        if self.calls.len() >= max {
            return Err(Error::TooManyCallsInFlight { max });
        }
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let (tx, rx) = oneshot::channel();
        self.calls.insert(id, tx);
        Ok((id, rx))
    }

    /// Completes call `id`. A reply for a call that is not pending is an error the
    /// caller logs; it is normal after a timeout.
    pub(crate) fn complete(&mut self, id: u64, outcome: CallOutcome) -> Result<(), Error> {
        let tx = self.calls.remove(&id).ok_or(Error::UnknownCall { id })?;
        // The caller may have stopped waiting; that is not an error.
        let _ = tx.send(outcome);
        Ok(())
    }

    /// Forgets call `id` (its caller gave up).
    pub(crate) fn cancel(&mut self, id: u64) {
        self.calls.remove(&id);
    }

    /// Fails every waiting call and refuses new ones.
    pub(crate) fn close(&mut self, reason: &CloseReason) {
        if self.closed.is_none() {
            self.closed = Some(reason.clone());
        }
        for (_, tx) in self.calls.drain() {
            let _ = tx.send(Err(Error::Closed { reason: reason.clone() }));
        }
    }

    /// How many calls wait for replies.
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::socket::CloseCode;

    fn any_envelope() -> impl Strategy<Value = Envelope> {
        let error = (0usize..5, ".{0,40}").prop_map(|(code, message)| {
            let codes = [
                RemoteErrorCode::UnknownMethod,
                RemoteErrorCode::BadArguments,
                RemoteErrorCode::Handler,
                RemoteErrorCode::Busy,
                RemoteErrorCode::Internal,
            ];
            RemoteError::new(codes[code], message)
        });
        prop_oneof![
            Just(Envelope::Ready),
            (any::<u64>(), ".{0,64}").prop_map(|(id, method)| Envelope::Call { id, method }),
            any::<u64>().prop_map(|id| Envelope::Reply { id }),
            (any::<u64>(), error.clone()).prop_map(|(id, error)| Envelope::Fail { id, error }),
            ".{0,64}".prop_map(|m| Envelope::Close { reason: CloseReason::new(CloseCode::Normal, m) }),
            (any::<u64>(), ".{0,64}").prop_map(|(id, name)| Envelope::StreamOpen { id, name }),
            (any::<u64>(), any::<u64>()).prop_map(|(id, window)| Envelope::StreamAccept { id, window }),
            any::<u64>().prop_map(|id| Envelope::StreamData { id }),
            any::<u64>().prop_map(|id| Envelope::StreamEnd { id }),
            (any::<u64>(), error.clone()).prop_map(|(id, error)| Envelope::StreamReset { id, error }),
            (any::<u64>(), any::<u64>()).prop_map(|(id, bytes)| Envelope::StreamCredit { id, bytes }),
            (any::<u64>(), proptest::option::of(error)).prop_map(|(id, error)| Envelope::StreamDone { id, error }),
        ]
    }

    proptest! {
        /// Decoding an encoded envelope gives it back, and the body after it intact.
        #[test]
        fn envelope_round_trips(envelope in any_envelope(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let message = envelope.encode(&body).unwrap();
            let (back, rest) = Envelope::decode(Bytes::copy_from_slice(message.as_slice())).unwrap();
            prop_assert_eq!(back, envelope);
            prop_assert_eq!(&rest[..], &body[..]);
        }

        /// Arbitrary bytes never panic the envelope decoder.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Envelope::decode(Bytes::from(bytes));
        }
    }

    #[test]
    fn envelope_and_body_round_trip() {
        let env = Envelope::Call { id: 7, method: "sum".into() };
        let msg = env.encode(&rmp_serde::to_vec(&(1, 2)).unwrap()).unwrap();
        let (back, body) = Envelope::decode(Bytes::copy_from_slice(msg.as_slice())).unwrap();
        assert_eq!(back, env);
        assert_eq!(rmp_serde::from_slice::<(i32, i32)>(&body).unwrap(), (1, 2));
    }

    #[test]
    fn truncated_envelope_is_a_decode_error() {
        let msg = Envelope::Call { id: 7, method: "sum".into() }.encode(&[]).unwrap();
        let msg = msg.as_slice();
        for cut in 0..msg.len() {
            let err = Envelope::decode(Bytes::copy_from_slice(&msg[..cut])).unwrap_err();
            assert!(matches!(err, CodecError::Decode { what: "envelope", .. }));
        }
    }

    #[test]
    fn unknown_reply_is_an_error_and_close_fails_everything() {
        let mut pending = PendingCalls::default();
        let (id, mut rx) = pending.start(2).unwrap();
        let (_id2, _rx2) = pending.start(2).unwrap();
        assert!(matches!(pending.start(2), Err(Error::TooManyCallsInFlight { max: 2 })));
        assert!(matches!(pending.complete(id + 100, Ok(Bytes::new())), Err(Error::UnknownCall { .. })));
        pending.close(&CloseReason::new(CloseCode::Normal, "bye"));
        assert_eq!(pending.len(), 0);
        assert!(matches!(rx.try_recv(), Ok(Err(Error::Closed { .. }))));
        assert!(matches!(pending.start(2), Err(Error::Closed { .. })));
        assert!(matches!(pending.complete(id, Ok(Bytes::new())), Err(Error::UnknownCall { .. })));
    }
}
