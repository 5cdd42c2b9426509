//! One connection attempt (a *session*), from either side, until its data channel
//! opens:
//!
//! ```text
//! dialer                                         acceptor
//! create pc + channel "peers"
//! offer ──────────── Offer{sdp} ──────────────▶ create pc, set remote, answer
//!       ◀─────────── Answer{sdp} ─────────────── (candidates trickle both ways)
//! set remote          Candidate{…} ◀──────────▶
//! ICE ─▶ DTLS (fingerprints checked) ─▶ SCTP ─▶ channel open ─▶ WebRtcSocket
//! either side: Cancel{reason} gives up; Error{reason} refuses a signal
//! ```
//!
//! The caller bounds the whole attempt with the connect timeout and closes the peer
//! connection whenever it does not end in a socket, so no attempt leaves a peer
//! connection, task or callback behind.

use std::sync::Arc;

use peers_sdk::DeviceId;
use tokio::sync::{mpsc, oneshot};
use webrtc::data_channel::RTCDataChannel;
use webrtc::data_channel::data_channel_init::RTCDataChannelInit;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;

use crate::config::WebRtcConfig;
use crate::error::{Error, Result, SignalRefusal};
use crate::peer::{self, CHANNEL_LABEL};
use crate::signal::{IceCandidate, SessionId, SignalPayload, WebRtcSignal};
use crate::signaling::Signaling;
use crate::socket::{OpenChannel, WebRtcSocket};

/// Which end of the session we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Dialer,
    Acceptor,
}

/// What the library's callbacks report to the session loop. The callbacks hold
/// only senders, never the peer connection, so they cannot keep it alive.
struct Events {
    candidates: mpsc::Receiver<IceCandidate>,
    channel: mpsc::Receiver<Arc<RTCDataChannel>>,
    failed: mpsc::Receiver<()>,
}

fn install_callbacks(pc: &RTCPeerConnection, config: &WebRtcConfig) -> Events {
    let (candidate_tx, candidates) = mpsc::channel(config.max_pending_candidates.max(1));
    pc.on_ice_candidate(Box::new(move |candidate| {
        let candidate_tx = candidate_tx.clone();
        Box::pin(async move {
            if let Some(init) = candidate.and_then(|c| c.to_json().ok())
                && candidate_tx.try_send(peer::candidate_from_library(init)).is_err()
            {
                tracing::debug!("local candidate dropped: queue full or session over");
            }
        })
    }));
    let (failed_tx, failed) = mpsc::channel(1);
    pc.on_peer_connection_state_change(Box::new(move |state| {
        if state == RTCPeerConnectionState::Failed {
            let _ = failed_tx.try_send(());
        }
        Box::pin(async {})
    }));
    let (channel_tx, channel) = mpsc::channel(1);
    pc.on_data_channel(Box::new(move |dc| {
        // Only the first channel is used; the peer connection's close ends others.
        let _ = channel_tx.try_send(dc);
        Box::pin(async {})
    }));
    Events { candidates, channel, failed }
}

/// Runs one side of a session until the data channel is open and checked.
pub(crate) struct Session<'a> {
    pub(crate) pc: &'a Arc<RTCPeerConnection>,
    pub(crate) signaling: &'a dyn Signaling,
    pub(crate) config: &'a WebRtcConfig,
    pub(crate) remote: DeviceId,
    pub(crate) id: SessionId,
    pub(crate) signals: mpsc::Receiver<SignalPayload>,
}

impl Session<'_> {
    async fn send(&self, payload: SignalPayload) -> Result<()> {
        self.signaling.send(self.remote, WebRtcSignal { session: self.id.clone(), payload }).await
    }

    /// Dials: creates the channel and the offer. `offer` is `None` for the dialer.
    pub(crate) async fn run(mut self, role: Role, offer: Option<String>) -> Result<WebRtcSocket> {
        let mut events = install_callbacks(self.pc, self.config);
        let (open_tx, mut open_rx) = oneshot::channel::<Arc<RTCDataChannel>>();
        let mut open_tx = Some(open_tx);
        let mut channel_wanted = true;
        let mut remote_sdp = None;
        match role {
            Role::Dialer => {
                let init = RTCDataChannelInit { ordered: Some(true), ..Default::default() };
                let channel = self.pc.create_data_channel(CHANNEL_LABEL, Some(init)).await.map_err(Error::webrtc)?;
                notify_open(&channel, open_tx.take());
                channel_wanted = false;
                let offer = self.pc.create_offer(None).await.map_err(Error::webrtc)?;
                let sdp = offer.sdp.clone();
                self.pc.set_local_description(offer).await.map_err(Error::webrtc)?;
                self.send(SignalPayload::Offer { sdp }).await?;
            }
            Role::Acceptor => {
                let sdp = offer.unwrap_or_default();
                self.set_remote(&sdp, false).await?;
                remote_sdp = Some(sdp);
                let answer = self.pc.create_answer(None).await.map_err(Error::webrtc)?;
                let sdp = answer.sdp.clone();
                self.pc.set_local_description(answer).await.map_err(Error::webrtc)?;
                self.send(SignalPayload::Answer { sdp }).await?;
            }
        }
        let mut pending: Vec<IceCandidate> = Vec::new();
        let channel = loop {
            tokio::select! {
                Some(candidate) = events.candidates.recv() => {
                    self.send(SignalPayload::Candidate(candidate)).await?;
                }
                Some(channel) = events.channel.recv(), if channel_wanted => {
                    channel_wanted = false;
                    notify_open(&channel, open_tx.take());
                }
                Some(()) = events.failed.recv() => {
                    return Err(Error::ConnectFailed { remote: self.remote, detail: "ice or dtls failed".into() });
                }
                opened = &mut open_rx => match opened {
                    Ok(channel) => break channel,
                    Err(_) => return Err(Error::ConnectFailed { remote: self.remote, detail: "channel gone".into() }),
                },
                signal = self.signals.recv() => {
                    let Some(signal) = signal else { return Err(Error::EndpointClosed) };
                    match signal {
                        SignalPayload::Answer { sdp } if role == Role::Dialer && remote_sdp.is_none() => {
                            self.set_remote(&sdp, true).await?;
                            remote_sdp = Some(sdp);
                            for candidate in pending.drain(..) {
                                self.add_candidate(candidate).await;
                            }
                        }
                        SignalPayload::Candidate(candidate) if remote_sdp.is_some() => self.add_candidate(candidate).await,
                        SignalPayload::Candidate(candidate) => {
                            if pending.len() >= self.config.max_pending_candidates {
                                return Err(self.refuse(SignalRefusal::Flooded).await);
                            }
                            pending.push(candidate);
                        }
                        SignalPayload::Cancel { reason } | SignalPayload::Error { reason } => {
                            return Err(Error::Refused { remote: self.remote, reason });
                        }
                        other => return Err(self.refuse(SignalRefusal::Unexpected(other.kind())).await),
                    }
                }
            }
        };
        let local_sdp = self.pc.local_description().await.map(|d| d.sdp).unwrap_or_default();
        let remote_sdp = remote_sdp.unwrap_or_default();
        let open = OpenChannel { pc: self.pc.clone(), channel, remote_device: self.remote, local_sdp, remote_sdp };
        WebRtcSocket::open(open, self.config).await
    }

    async fn set_remote(&self, sdp: &str, answer: bool) -> Result<()> {
        let description = if answer {
            RTCSessionDescription::answer(sdp.to_owned())
        } else {
            RTCSessionDescription::offer(sdp.to_owned())
        };
        let applied = match description {
            Ok(description) => self.pc.set_remote_description(description).await,
            Err(error) => Err(error),
        };
        match applied {
            Ok(()) => Ok(()),
            Err(error) => Err(self.refuse(SignalRefusal::BadSdp(crate::error::bounded(error.to_string()))).await),
        }
    }

    async fn add_candidate(&self, candidate: IceCandidate) {
        if candidate.candidate.is_empty() {
            return;
        }
        if let Err(error) = self.pc.add_ice_candidate(peer::candidate_to_library(candidate)).await {
            tracing::debug!(peer = %self.remote, %error, "remote candidate not usable");
        }
    }

    /// Tells the peer why we give up on its signal and returns the matching error.
    async fn refuse(&self, reason: SignalRefusal) -> Error {
        let _ = self.send(SignalPayload::Error { reason: reason.to_string() }).await;
        Error::InvalidSignal { from: self.remote, reason }
    }
}

/// Reports the channel on `tx` once it is open.
fn notify_open(channel: &Arc<RTCDataChannel>, tx: Option<oneshot::Sender<Arc<RTCDataChannel>>>) {
    let Some(tx) = tx else { return };
    let mut tx = Some(tx);
    let weak = Arc::downgrade(channel);
    channel.on_open(Box::new(move || {
        if let (Some(tx), Some(channel)) = (tx.take(), weak.upgrade()) {
            let _ = tx.send(channel);
        }
        Box::pin(async {})
    }));
}
