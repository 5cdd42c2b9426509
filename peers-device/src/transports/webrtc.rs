//! WebRTC for the manager: a [`Dialer`] and an accept loop over a
//! [`WebRtcEndpoint`], and [`DeviceMessageSignaling`], which carries WebRTC
//! signals in device messages over existing connections, so two devices that
//! share a third can set up WebRTC without the signaling server.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use peers_sdk::{BoxSocket, DeviceId};
use peers_transport_webrtc::{IncomingSignal, SignalKindName, SignalRefusal, Signaling, WebRtcEndpoint, WebRtcSignal};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc};

use crate::ConnectionClass;
use crate::device_message::DeviceMessage;
use crate::manager::{ConnectionManager, DialError, Dialer, Serving};

/// The device-message kind that carries WebRTC signals.
pub const WEBRTC_SIGNAL_KIND: &str = "peers.webrtc-signal";

/// A signal as a device-message payload (JSON, like the signaling server's).
#[derive(Serialize, Deserialize)]
struct Envelope {
    kind: String,
    body: serde_json::Value,
}

/// WebRTC signaling over device messages.
#[derive(Debug)]
pub struct DeviceMessageSignaling {
    manager: ConnectionManager,
    inbox: Mutex<mpsc::Receiver<DeviceMessage>>,
}

impl DeviceMessageSignaling {
    /// Signaling through `manager`'s connections. Takes over the manager's
    /// receiver of [`WEBRTC_SIGNAL_KIND`] messages.
    pub fn new(manager: ConnectionManager) -> Self {
        let inbox = Mutex::new(manager.device_messages(WEBRTC_SIGNAL_KIND));
        DeviceMessageSignaling { manager, inbox }
    }
}

fn kind_name(kind: &str) -> Option<SignalKindName> {
    Some(match kind {
        "offer" => SignalKindName::Offer,
        "answer" => SignalKindName::Answer,
        "candidate" => SignalKindName::Candidate,
        "cancel" => SignalKindName::Cancel,
        "error" => SignalKindName::Error,
        _ => return None,
    })
}

#[async_trait]
impl Signaling for DeviceMessageSignaling {
    fn local_device(&self) -> DeviceId {
        self.manager.device_id()
    }

    async fn send(&self, to: DeviceId, signal: WebRtcSignal) -> peers_transport_webrtc::Result<()> {
        let envelope = Envelope { kind: signal.payload.kind().to_owned(), body: signal.body() };
        let payload =
            serde_json::to_vec(&envelope).map_err(|e| peers_transport_webrtc::Error::Signaling(e.to_string()))?;
        self.manager
            .send_device_message(to, WEBRTC_SIGNAL_KIND, payload)
            .await
            .map_err(|e| peers_transport_webrtc::Error::Signaling(e.to_string()))
    }

    async fn recv(&self) -> peers_transport_webrtc::Result<Option<IncomingSignal>> {
        let Some(message) = self.inbox.lock().await.recv().await else { return Ok(None) };
        let bad = |detail: String| peers_transport_webrtc::Error::InvalidSignal {
            from: message.from,
            reason: SignalRefusal::BadBody(detail),
        };
        let envelope: Envelope = serde_json::from_slice(&message.payload).map_err(|e| bad(e.to_string()))?;
        let kind = kind_name(&envelope.kind).ok_or_else(|| bad(format!("unknown signal kind {:?}", envelope.kind)))?;
        let signal = WebRtcSignal::from_body(kind, &envelope.body)
            .map_err(|refusal| peers_transport_webrtc::Error::InvalidSignal { from: message.from, reason: refusal })?;
        Ok(Some(IncomingSignal { from: message.from, signal }))
    }
}

/// Dials devices over WebRTC through an endpoint's signaling.
#[derive(Debug, Clone)]
pub struct WebRtcDialer {
    endpoint: Arc<WebRtcEndpoint>,
}

impl WebRtcDialer {
    /// A dialer on `endpoint`.
    pub fn new(endpoint: Arc<WebRtcEndpoint>) -> Self {
        WebRtcDialer { endpoint }
    }
}

#[async_trait]
impl Dialer for WebRtcDialer {
    fn name(&self) -> &str {
        "webrtc"
    }

    fn class_for(&self, device: &DeviceId) -> Option<ConnectionClass> {
        (*device != self.endpoint.local_device()).then_some(ConnectionClass::WebRtcDirect)
    }

    fn timeout(&self) -> Duration {
        // The endpoint's own connect timeout, plus the handshake.
        self.endpoint.config().connect_timeout + Duration::from_secs(10)
    }

    async fn dial(&self, device: DeviceId) -> Result<BoxSocket, DialError> {
        self.endpoint.connect(device).await.map(|socket| Box::new(socket) as BoxSocket).map_err(DialError::transport)
    }
}

/// Hands every WebRTC connection the endpoint accepts to the manager
/// ([`ConnectionManager::serve`]).
#[derive(Debug)]
pub struct WebRtcListener {
    serving: std::sync::Mutex<Option<Serving>>,
}

impl WebRtcListener {
    /// Starts accepting on `endpoint` for `manager`.
    pub fn start(manager: ConnectionManager, endpoint: Arc<WebRtcEndpoint>) -> Self {
        WebRtcListener { serving: std::sync::Mutex::new(Some(manager.serve(endpoint))) }
    }

    /// Stops accepting.
    pub fn stop(&self) {
        self.serving.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
