//! The reader task: opens frames, reassembles messages and dispatches them.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::Inner;
use super::seal::Opener;
use crate::codec::FrameDecoder;
use crate::error::Error;
use crate::rpc::{Envelope, RemoteError, RemoteErrorCode};
use crate::socket::{CloseCode, CloseReason};

/// Runs until the socket closes or the peer breaks the protocol.
///
/// `ready` is set on the initiator: the first message must then be
/// [`Envelope::Ready`].
pub(super) async fn run(
    inner: Arc<Inner>,
    mut opener: Opener,
    mut decoder: FrameDecoder,
    mut ready: Option<oneshot::Sender<()>>,
) {
    loop {
        let frame = match inner.socket.recv().await {
            Ok(frame) => {
                inner.activity.heard();
                frame
            }
            Err(Error::Closed { reason }) => {
                inner.mark_closed(&reason);
                return;
            }
            Err(err) => return protocol_error(&inner, err).await,
        };
        let message = match opener.open(frame).and_then(|plain| Ok(decoder.decode(plain)?)) {
            Ok(Some(message)) => message,
            Ok(None) => continue,
            Err(err) => return protocol_error(&inner, err).await,
        };
        let (envelope, body) = match Envelope::decode(message) {
            Ok(decoded) => decoded,
            Err(err) => return protocol_error(&inner, err.into()).await,
        };
        if let Some(tx) = ready.take() {
            if envelope != Envelope::Ready {
                return protocol_error(&inner, unexpected("a message before ready")).await;
            }
            let _ = tx.send(());
            continue;
        }
        match envelope {
            Envelope::Call { id, method } => {
                // Waiting for a slot stops reading, which pushes back on the peer.
                let Ok(slot) = inner.handler_slots.clone().acquire_owned().await else { return };
                tokio::spawn(handle_call(inner.clone(), id, method, body, slot));
            }
            Envelope::Reply { id } => complete(&inner, id, Ok(body)),
            Envelope::Fail { id, error } => complete(&inner, id, Err(Error::Remote(error))),
            Envelope::Close { reason } => {
                let reason = CloseReason::new(reason.code, reason.message).as_remote();
                inner.mark_closed(&reason);
                inner.socket.close(reason).await;
                return;
            }
            Envelope::Ready => return protocol_error(&inner, unexpected("a second ready")).await,
            stream => {
                if let Err(err) = super::stream::dispatch(&inner, stream, body) {
                    return protocol_error(&inner, err).await;
                }
            }
        }
    }
}

fn unexpected(what: &'static str) -> Error {
    Error::Codec(crate::error::CodecError::Decode { what: "message order", detail: format!("peer sent {what}") })
}

fn complete(inner: &Inner, id: u64, outcome: Result<Bytes, Error>) {
    if let Err(err) = inner.pending.lock().unwrap_or_else(|e| e.into_inner()).complete(id, outcome) {
        // Normal after a call timed out; the reply is discarded.
        debug!(%err, "discarding reply");
    }
}

async fn protocol_error(inner: &Inner, err: Error) {
    warn!(peer = %inner.remote.device_id, error = %err, "closing connection: peer broke the protocol");
    let reason = CloseReason::new(CloseCode::ProtocolError, err.to_string());
    inner.mark_closed(&reason);
    inner.socket.close(reason).await;
}

async fn handle_call(
    inner: Arc<Inner>,
    id: u64,
    method: String,
    body: Bytes,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let handler = inner.handlers.read().unwrap_or_else(|e| e.into_inner()).get(&method).cloned();
    let outcome = match handler {
        None => Err(RemoteError::new(RemoteErrorCode::UnknownMethod, format!("no handler for {method:?}"))),
        // A panic becomes an error reply, and the handler is cancelled when the
        // connection closes so nothing outlives it.
        Some(handler) => match inner.run_until_closed(handler(id, body)).await {
            Some(Ok(outcome)) => outcome,
            Some(Err(err)) => Err(RemoteError::new(RemoteErrorCode::Internal, format!("handler failed: {err}"))),
            None => return,
        },
    };
    let sent = match outcome {
        Ok(reply) => inner.send_message(reply).await,
        Err(error) => inner.send(&Envelope::Fail { id, error }, &[]).await,
    };
    if let Err(err) = sent {
        debug!(%err, method, "could not send reply");
    }
}
