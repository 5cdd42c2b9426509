//! Running the handshake over a socket and starting the connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::OsRng;
use tokio::sync::{Mutex as AsyncMutex, oneshot, watch};
use tracing::{Instrument, debug, info_span};

use super::reader;
use super::seal;
use super::{CloseOnDrop, Connection, ConnectionConfig, ConnectionState, Inner};
use crate::codec::{FrameDecoder, FrameEncoder};
use crate::error::{Error, HandshakeError, Result};
use crate::handshake::{Initiator, Responder, Session};
use crate::identity::DeviceId;
use crate::rpc::{Envelope, PendingCalls};
use crate::socket::{BoxSocket, CloseCode, CloseReason};

/// The wall clock in unix milliseconds, as the handshake's timestamps use it.
pub(crate) fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

impl Connection {
    /// Dials: runs the handshake as initiator over `socket` and returns once the
    /// peer has accepted us.
    ///
    /// `expected` is the device we mean to reach; when given, any other device is
    /// refused with [`HandshakeError::UnexpectedPeer`]. On failure the socket is
    /// closed with the reason, so the peer learns it too.
    pub async fn connect(
        socket: BoxSocket,
        config: ConnectionConfig,
        expected: Option<DeviceId>,
    ) -> Result<Connection> {
        let span = info_span!("connect", local = %config.handshake.keys.device_id());
        let deadline = tokio::time::Instant::now() + config.handshake_timeout;
        let handshake = async {
            let security = socket.info().security.clone();
            let (state, hello) =
                Initiator::start(config.handshake.clone(), &security, expected, (config.clock)(), &mut OsRng)?;
            socket.send(hello.into()).await?;
            let response = socket.recv().await?;
            let verify = state.read(&response, (config.clock)())?;
            let level = config.trust.trust_level(verify.remote()).await;
            let (finish, session) = verify.finish(level, config.trust_floor, (config.clock)())?;
            socket.send(finish.into()).await?;
            Ok(session)
        };
        let session = match tokio::time::timeout_at(deadline, handshake).instrument(span.clone()).await {
            Ok(Ok(session)) => session,
            Ok(Err(err)) => return Err(fail(socket, err).await),
            Err(_) => return Err(fail(socket, timeout_error(config.handshake_timeout)).await),
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        let connection = start(socket, config.clone(), session, Some(ready_tx));
        // The responder's first message says it accepted us (or its close says why not).
        let ready = async {
            tokio::select! {
                ready = ready_rx => ready.map_err(|_| connection.inner.closed_error()),
                reason = connection.closed() => Err(Error::Closed { reason }),
            }
        };
        match tokio::time::timeout_at(deadline, ready).await {
            Ok(Ok(())) => Ok(connection),
            Ok(Err(err)) => Err(err),
            Err(_) => {
                let err = timeout_error(config.handshake_timeout);
                connection.close(CloseReason::new(CloseCode::Timeout, err.to_string())).await;
                Err(err)
            }
        }
    }

    /// Accepts: runs the handshake as responder over `socket`.
    pub async fn accept(socket: BoxSocket, config: ConnectionConfig) -> Result<Connection> {
        let span = info_span!("accept", local = %config.handshake.keys.device_id());
        let handshake = async {
            let security = socket.info().security.clone();
            let responder = Responder::new(config.handshake.clone(), &security, (config.clock)())?;
            let hello = socket.recv().await?;
            let (state, response) = {
                let mut guard = config.replay_guard.lock().unwrap_or_else(|e| e.into_inner());
                responder.read_hello(&hello, (config.clock)(), &mut guard, &mut OsRng)?
            };
            socket.send(response.into()).await?;
            let finish = socket.recv().await?;
            let verify = state.read(&finish, (config.clock)())?;
            let level = config.trust.trust_level(verify.remote()).await;
            Ok::<_, Error>(verify.finish(level, config.trust_floor)?)
        };
        let session = match tokio::time::timeout(config.handshake_timeout, handshake).instrument(span).await {
            Ok(Ok(session)) => session,
            Ok(Err(err)) => return Err(fail(socket, err).await),
            Err(_) => return Err(fail(socket, timeout_error(config.handshake_timeout)).await),
        };
        let connection = start(socket, config, session, None);
        connection.inner.send(&Envelope::Ready, &[]).await?;
        Ok(connection)
    }
}

#[cfg(feature = "test-utils")]
impl Connection {
    /// `test-utils` only: a verified connection to `remote` that skipped the
    /// handshake (no keys were exchanged; frames are not sealed), as if `remote`
    /// had proved itself. It lets a fuzzer or a hostile test play a verified
    /// peer frame by frame without paying a handshake per case; nothing else
    /// should use it.
    #[doc(hidden)]
    pub fn without_handshake(socket: BoxSocket, config: ConnectionConfig, remote: crate::DeviceInfo) -> Connection {
        let session = Session {
            remote,
            trust: crate::TrustLevel::Trusted,
            handshake_hash: [0; 32],
            role: crate::handshake::Role::Responder,
            encrypted: false,
            cipher: crate::handshake::TransportCipher::ChaCha20Poly1305,
            send_key: zeroize::Zeroizing::new([0; 32]),
            recv_key: zeroize::Zeroizing::new([0; 32]),
        };
        start(socket, config, session, None)
    }
}

fn timeout_error(after: Duration) -> Error {
    Error::Timeout { what: "handshake".into(), after }
}

/// Closes the socket with a reason derived from `err` and returns `err`.
async fn fail(socket: BoxSocket, err: Error) -> Error {
    let code = match &err {
        Error::Handshake(HandshakeError::Untrusted { .. } | HandshakeError::SelfConnection) => CloseCode::Refused,
        Error::Handshake(_) | Error::Codec(_) => CloseCode::ProtocolError,
        Error::Timeout { .. } => CloseCode::Timeout,
        Error::Closed { .. } => return err,
        _ => CloseCode::TransportFailure,
    };
    debug!(error = %err, "handshake failed");
    // A handshake error already says so in its text.
    let message = match &err {
        Error::Handshake(_) => err.to_string(),
        _ => format!("handshake failed: {err}"),
    };
    socket.close(CloseReason::new(code, message)).await;
    err
}

/// Builds the shared state and spawns the reader task.
fn start(
    socket: BoxSocket,
    config: ConnectionConfig,
    session: Session,
    ready: Option<oneshot::Sender<()>>,
) -> Connection {
    let (sealer, opener) = seal::for_session(&session);
    let Session { remote, trust, handshake_hash, role, encrypted, cipher, .. } = session;
    let inner = Arc::new(Inner {
        encoder: Mutex::new(FrameEncoder::new(config.codec.clone())),
        handler_slots: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_handlers.max(1))),
        socket,
        remote,
        trust,
        role,
        cipher: encrypted.then_some(cipher),
        session_id: handshake_hash,
        sealer: AsyncMutex::new(sealer),
        pending: Mutex::new(PendingCalls::default()),
        handlers: RwLock::new(HashMap::new()),
        stream_handlers: RwLock::new(HashMap::new()),
        streams: Mutex::default(),
        state: watch::Sender::new(ConnectionState::Verified),
        closing: Mutex::new(None),
        activity: super::activity::Activity::new(),
        config,
    });
    debug!(peer = %inner.remote.device_id, ?role, encrypted, %cipher, "connection verified");
    let decoder = FrameDecoder::new(inner.config.codec.clone());
    let span = info_span!("connection", peer = %inner.remote.device_id);
    let connection = Connection { _owner: Arc::new(CloseOnDrop(inner.clone())), inner };
    // Handlers go in before anything is read or `Ready` is sent, so the peer's
    // first call finds them.
    if let Some(setup) = connection.inner.config.setup.clone() {
        setup(&connection);
    }
    tokio::spawn(reader::run(connection.inner.clone(), opener, decoder, ready).instrument(span));
    connection
}
