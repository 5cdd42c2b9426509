//! [`WebRtcEndpoint`]: dials devices and accepts their connections over one
//! [`Signaling`] channel.
//!
//! One dispatcher task reads the signaling channel. Each signal is validated, then
//! routed by `(sender, session)`: an offer for a new session starts an acceptor
//! session, everything else goes to the session it names. What does not fit is
//! refused with a typed [`Error::InvalidSignal`], reported on
//! [`refusals`](WebRtcEndpoint::refusals), and leaves no state behind; the sender
//! of a refused offer or answer also gets an `Error` signal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use peers_sdk::DeviceId;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::config::WebRtcConfig;
use crate::error::{Error, Result, SignalRefusal};
use crate::peer::{self, PeerConnectionGuard};
use crate::session::{Role, Session};
use crate::signal::{SessionId, SignalPayload, WebRtcSignal};
use crate::signaling::{IncomingSignal, Signaling};
use crate::socket::WebRtcSocket;

/// Refusals kept for slow [`refusals`](WebRtcEndpoint::refusals) readers.
const REFUSAL_BACKLOG: usize = 64;

type SessionKey = (DeviceId, SessionId);

struct Inner {
    signaling: Arc<dyn Signaling>,
    config: WebRtcConfig,
    sessions: Mutex<HashMap<SessionKey, mpsc::Sender<SignalPayload>>>,
    accepted: mpsc::Sender<WebRtcSocket>,
    refusals: broadcast::Sender<Arc<Error>>,
}

/// Dials and accepts WebRTC connections; see the [crate docs](crate).
///
/// Dropping the endpoint stops reading signals; attempts in progress end at their
/// connect timeout at the latest (closing their peer connections), and sockets
/// already handed out stay open.
#[derive(Debug)]
pub struct WebRtcEndpoint {
    inner: Arc<Inner>,
    accepted: tokio::sync::Mutex<mpsc::Receiver<WebRtcSocket>>,
    dispatcher: JoinHandle<()>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcEndpoint").field("device", &self.signaling.local_device()).finish_non_exhaustive()
    }
}

impl WebRtcEndpoint {
    /// Starts an endpoint on `signaling`. Must be called inside a tokio runtime.
    pub fn new(signaling: Arc<dyn Signaling>, config: WebRtcConfig) -> WebRtcEndpoint {
        let (accepted_tx, accepted_rx) = mpsc::channel(config.accept_queue.max(1));
        let inner = Arc::new(Inner {
            signaling,
            config,
            sessions: Mutex::new(HashMap::new()),
            accepted: accepted_tx,
            refusals: broadcast::channel(REFUSAL_BACKLOG).0,
        });
        let dispatcher = tokio::spawn(dispatch(Arc::downgrade(&inner), inner.signaling.clone()));
        WebRtcEndpoint { inner, accepted: tokio::sync::Mutex::new(accepted_rx), dispatcher }
    }

    /// This device's id.
    pub fn local_device(&self) -> DeviceId {
        self.inner.signaling.local_device()
    }

    /// The configuration.
    pub fn config(&self) -> &WebRtcConfig {
        &self.inner.config
    }

    /// Opens a data channel to `remote`. Fails with [`Error::ConnectTimeout`] after
    /// [`WebRtcConfig::connect_timeout`], so the caller can fall back to another
    /// transport; the attempt is cancelled at the peer and its peer connection
    /// closed.
    pub async fn connect(&self, remote: DeviceId) -> Result<WebRtcSocket> {
        if remote == self.local_device() {
            return Err(Error::SelfConnection);
        }
        let id = SessionId::random();
        let signals = self.inner.register(remote, id.clone())?;
        let _registration = Registration { inner: Arc::downgrade(&self.inner), key: (remote, id.clone()) };
        tracing::debug!(peer = %remote, session = %id, "dialing");
        run_session(&self.inner, remote, id, signals, Role::Dialer, None).await
    }

    /// The next connection a device opened to us.
    pub async fn accept(&self) -> Result<WebRtcSocket> {
        self.accepted.lock().await.recv().await.ok_or(Error::EndpointClosed)
    }

    /// Signals this endpoint refused (malformed, oversized, unknown session, out of
    /// order), as they happen. For monitoring and tests.
    pub fn refusals(&self) -> broadcast::Receiver<Arc<Error>> {
        self.inner.refusals.subscribe()
    }

    /// Connection attempts in progress.
    pub fn sessions_in_progress(&self) -> usize {
        self.inner.lock_sessions().len()
    }
}

/// The connections [`WebRtcEndpoint::accept`] yields; `None` once the endpoint closed.
#[async_trait::async_trait]
impl peers_sdk::socket::Listener for WebRtcEndpoint {
    fn name(&self) -> &str {
        "webrtc"
    }

    async fn accept(&self) -> Option<peers_sdk::BoxSocket> {
        Some(Box::new(WebRtcEndpoint::accept(self).await.ok()?))
    }
}

impl Drop for WebRtcEndpoint {
    fn drop(&mut self) {
        self.dispatcher.abort();
    }
}

impl Inner {
    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, mpsc::Sender<SignalPayload>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, remote: DeviceId, id: SessionId) -> Result<mpsc::Receiver<SignalPayload>> {
        let mut sessions = self.lock_sessions();
        if sessions.len() >= self.config.max_sessions {
            return Err(Error::TooManySessions { max: self.config.max_sessions });
        }
        let (tx, rx) = mpsc::channel(self.config.session_signal_queue.max(1));
        sessions.insert((remote, id), tx);
        Ok(rx)
    }

    fn refused(&self, from: DeviceId, reason: SignalRefusal) -> Error {
        tracing::debug!(peer = %from, %reason, "signal refused");
        let _ = self.refusals.send(Arc::new(Error::InvalidSignal { from, reason: reason.clone() }));
        Error::InvalidSignal { from, reason }
    }
}

/// Removes a session from the table when its attempt ends, however it ends.
struct Registration {
    inner: Weak<Inner>,
    key: SessionKey,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.lock_sessions().remove(&self.key);
        }
    }
}

/// Runs one attempt under the connect timeout, and closes its peer connection
/// unless it became a socket.
async fn run_session(
    inner: &Arc<Inner>,
    remote: DeviceId,
    id: SessionId,
    signals: mpsc::Receiver<SignalPayload>,
    role: Role,
    offer: Option<String>,
) -> Result<WebRtcSocket> {
    let config = &inner.config;
    let attempt = async {
        let mut servers = config.ice_servers.clone();
        servers.extend(inner.signaling.ice_servers().await.unwrap_or_else(|error| {
            tracing::warn!(%error, "no ice servers from signaling");
            Vec::new()
        }));
        // From here on, every way out of this future (an error, the timeout, the
        // caller dropping it) closes the peer connection, unless a socket owns it.
        let guard = PeerConnectionGuard::new(peer::new_peer_connection(config, servers).await?);
        let pc = guard.pc().cloned().ok_or(Error::EndpointClosed)?;
        let session = Session { pc: &pc, signaling: inner.signaling.as_ref(), config, remote, id: id.clone(), signals };
        let socket = session.run(role, offer).await?;
        guard.disarm();
        Ok(socket)
    };
    let result = match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Error::ConnectTimeout { remote, after: config.connect_timeout }),
    };
    if let Err(error) = &result {
        tracing::info!(peer = %remote, session = %id, %error, "webrtc attempt failed");
        if let Error::InvalidSignal { from, reason } = error {
            // The peer already got an `Error` signal from the session.
            inner.refused(*from, reason.clone());
        } else if !matches!(error, Error::Refused { .. }) {
            let cancel = WebRtcSignal {
                session: id,
                payload: SignalPayload::Cancel { reason: crate::error::bounded(error.to_string()) },
            };
            let _ = inner.signaling.send(remote, cancel).await;
        }
    }
    result
}

/// Reads the signaling channel until it ends or the endpoint is dropped.
async fn dispatch(inner: Weak<Inner>, signaling: Arc<dyn Signaling>) {
    loop {
        let incoming = match signaling.recv().await {
            Ok(Some(incoming)) => incoming,
            Ok(None) => {
                tracing::info!("signaling channel ended");
                return;
            }
            Err(Error::InvalidSignal { from, reason }) => {
                // The channel could not even decode it (a body of the wrong shape).
                match inner.upgrade() {
                    Some(inner) => drop(inner.refused(from, reason)),
                    None => return,
                }
                continue;
            }
            Err(error) => {
                tracing::debug!(%error, "bad signal from the signaling channel");
                continue;
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        route(&inner, incoming).await;
    }
}

async fn route(inner: &Arc<Inner>, IncomingSignal { from, signal }: IncomingSignal) {
    let WebRtcSignal { session, payload } = signal;
    let kind = payload.kind();
    let check = WebRtcSignal { session: session.clone(), payload }.validate_owned();
    let payload = match check {
        Ok(payload) => payload,
        Err(reason) => return refuse(inner, from, session, kind, reason).await,
    };
    let key = (from, session.clone());
    let existing = inner.lock_sessions().get(&key).cloned();
    match (existing, payload) {
        (None, SignalPayload::Offer { sdp }) => start_acceptor(inner, from, session, sdp).await,
        (Some(_), SignalPayload::Offer { .. }) => {
            refuse(inner, from, session, kind, SignalRefusal::DuplicateSession).await;
        }
        (Some(tx), payload) => {
            if tx.try_send(payload).is_err() {
                // Flooded or just finished: the session learns nothing more from it.
                inner.refused(from, SignalRefusal::Flooded);
            }
        }
        (None, SignalPayload::Cancel { .. } | SignalPayload::Error { .. }) => {
            tracing::debug!(peer = %from, %session, "cancel or error for a session that is over");
        }
        (None, _) => refuse(inner, from, session, kind, SignalRefusal::UnknownSession).await,
    }
}

/// Records a refusal; the sender of an offer or answer also hears about it.
async fn refuse(inner: &Arc<Inner>, from: DeviceId, session: SessionId, kind: &str, reason: SignalRefusal) {
    let text = reason.to_string();
    inner.refused(from, reason);
    if matches!(kind, "offer" | "answer") {
        let error = WebRtcSignal { session, payload: SignalPayload::Error { reason: text } };
        let _ = inner.signaling.send(from, error).await;
    }
}

async fn start_acceptor(inner: &Arc<Inner>, from: DeviceId, session: SessionId, sdp: String) {
    if from == inner.signaling.local_device() {
        return refuse(inner, from, session, "offer", SignalRefusal::Unexpected("self offer")).await;
    }
    if inner.accepted.capacity() == 0 {
        tracing::info!(peer = %from, "accept queue full: offer refused");
        return refuse(inner, from, session, "offer", SignalRefusal::Flooded).await;
    }
    let signals = match inner.register(from, session.clone()) {
        Ok(signals) => signals,
        Err(error) => {
            tracing::info!(peer = %from, %error, "offer refused");
            return refuse(inner, from, session, "offer", SignalRefusal::Flooded).await;
        }
    };
    let registration = Registration { inner: Arc::downgrade(inner), key: (from, session.clone()) };
    let inner = inner.clone();
    tokio::spawn(async move {
        let _registration = registration;
        tracing::debug!(peer = %from, %session, "accepting");
        if let Ok(socket) = run_session(&inner, from, session, signals, Role::Acceptor, Some(sdp)).await
            && let Err(error) = inner.accepted.try_send(socket)
        {
            tracing::info!(peer = %from, %error, "accepted socket dropped: accept queue full");
        }
    });
}

impl WebRtcSignal {
    /// Validates and hands back the payload.
    fn validate_owned(self) -> std::result::Result<SignalPayload, SignalRefusal> {
        self.validate()?;
        Ok(self.payload)
    }
}
