//! [`WebRtcSocket`]: the peers [`Socket`] over one reliable, ordered data channel.
//!
//! Wire mapping, one data channel message per item:
//!
//! ```text
//! binary message (PPID 53)  one socket frame, 1 ..= max_frame_size bytes, as is
//! text message   (PPID 51)  one control message, JSON, at most 1 KiB:
//!     {"t":"close","code":"Normal","message":"…"}   the closer's reason; sent last
//!     {"t":"ping","n":7} / {"t":"pong","n":7}       round-trip probe
//!     {"t":"empty"}                                  an empty socket frame
//! ```
//!
//! An empty frame travels as a control message because the library reports an
//! empty binary message and a reset stream alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use peers_sdk::socket::{
    ChannelBinding, CloseCode, CloseReason, ClosedBy, Locality, Socket, SocketInfo, SocketLifecycle, SocketState,
    TransportKind, TransportSecurity,
};
use peers_sdk::{DeviceId, Error as SdkError, PathInfo};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use webrtc::data::data_channel::DataChannel;
use webrtc::data_channel::RTCDataChannel;
use webrtc::peer_connection::RTCPeerConnection;

use crate::config::WebRtcConfig;
use crate::error::{Error, Result};
use crate::peer::{self, PeerState};
use crate::sdp;

/// The channel binding kind this transport reports: each side's SHA-256 DTLS
/// certificate fingerprint.
pub const BINDING_KIND: &str = "dtls-sha256-fingerprints";

/// Largest control message (text) accepted.
const MAX_CONTROL_LEN: usize = 1024;
/// How often a sender waiting for the buffered amount to drop re-checks it, in case
/// a low-water callback was missed.
const SEND_RECHECK: Duration = Duration::from_millis(50);

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum Control {
    Close { code: CloseCode, message: String },
    Ping { n: u64 },
    Pong { n: u64 },
    Empty,
}

/// Everything a connected data channel needs to build a socket.
pub(crate) struct OpenChannel {
    pub(crate) pc: Arc<RTCPeerConnection>,
    pub(crate) channel: Arc<RTCDataChannel>,
    pub(crate) remote_device: DeviceId,
    pub(crate) local_sdp: String,
    pub(crate) remote_sdp: String,
}

/// A peers [`Socket`] over a WebRTC data channel. Made by
/// [`WebRtcEndpoint::connect`](crate::WebRtcEndpoint::connect) and
/// [`accept`](crate::WebRtcEndpoint::accept).
///
/// - Frames are binary data channel messages of at most
///   [`SocketInfo::max_frame_size`] bytes: the smaller of our limit and the peer's
///   `a=max-message-size`, so the codec chunks larger messages.
/// - Backpressure: `send` waits while the channel's buffered amount is above
///   [`WebRtcConfig::send_buffer_high`]; the receiver stops reading when its queue
///   of [`WebRtcConfig::receive_queue`] frames is full, and SCTP flow control holds
///   the sender back.
/// - Security: DTLS-encrypted, with a channel binding of both certificate
///   fingerprints, checked against the certificate the peer actually presented.
/// - Dropping the socket closes it (`GoingAway`) and tears the peer connection down.
#[derive(Debug)]
pub struct WebRtcSocket {
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
}

struct Shared {
    pc: Arc<RTCPeerConnection>,
    channel: Arc<DataChannel>,
    info: SocketInfo,
    remote_device: DeviceId,
    lifecycle: SocketLifecycle,
    frames: Mutex<mpsc::Receiver<Bytes>>,
    send_lock: Mutex<()>,
    drained: Notify,
    send_buffer_high: usize,
    close_flush_timeout: Duration,
    rtt_probe_timeout: Duration,
    peer_state: watch::Sender<PeerState>,
    path: std::sync::Mutex<Option<PathInfo>>,
    probe: Mutex<u64>,
    pong: std::sync::Mutex<Option<(u64, oneshot::Sender<()>)>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcSocket")
            .field("remote_device", &self.remote_device)
            .field("info", &self.info)
            .field("state", &self.lifecycle.state())
            .finish_non_exhaustive()
    }
}

impl WebRtcSocket {
    /// Checks the DTLS certificate against the peer's SDP, detaches the channel and
    /// starts the read loop.
    pub(crate) async fn open(open: OpenChannel, config: &WebRtcConfig) -> Result<WebRtcSocket> {
        let local_fp = sdp::sha256_fingerprint(&open.local_sdp)?;
        let remote_fp = sdp::sha256_fingerprint(&open.remote_sdp)?;
        // The library already refuses DTLS when the certificate does not match the
        // SDP; checking again here makes the binding independent of that setting.
        let presented = peer::remote_certificate_fingerprint(&open.pc).await?;
        if presented != remote_fp {
            return Err(Error::Fingerprint("the peer's certificate does not match the fingerprint in its sdp".into()));
        }
        let channel = open.channel.detach().await.map_err(Error::webrtc)?;
        let path = peer::selected_path(&open.pc).await;
        let max_frame_size = match sdp::max_message_size(&open.remote_sdp) {
            Some(peer_max) => config.max_frame_size.min(peer_max),
            None => config.max_frame_size,
        };
        let mut info = SocketInfo::new(TransportKind::WebRtc, max_frame_size)
            .with_locality(
                path.as_ref().and_then(|p| p.remote.as_deref()).map_or(Locality::Internet, peer::locality_of),
            )
            .with_security(TransportSecurity {
                confidential: true,
                channel_binding: Some(ChannelBinding {
                    kind: BINDING_KIND.into(),
                    local: local_fp.to_vec(),
                    remote: remote_fp.to_vec(),
                }),
            });
        info.local_addr = path.as_ref().and_then(|p| p.local.clone());
        info.peer_addr = path.as_ref().and_then(|p| p.remote.clone());
        let (frames_tx, frames_rx) = mpsc::channel(config.receive_queue.max(1));
        let shared = Arc::new(Shared {
            pc: open.pc.clone(),
            channel: channel.clone(),
            info,
            remote_device: open.remote_device,
            lifecycle: SocketLifecycle::new(),
            frames: Mutex::new(frames_rx),
            send_lock: Mutex::new(()),
            drained: Notify::new(),
            send_buffer_high: config.send_buffer_high.max(1),
            close_flush_timeout: config.close_flush_timeout,
            rtt_probe_timeout: config.rtt_probe_timeout,
            peer_state: watch::Sender::new(PeerState::Connected),
            path: std::sync::Mutex::new(path),
            probe: Mutex::new(0),
            pong: std::sync::Mutex::new(None),
        });
        channel.set_buffered_amount_low_threshold(shared.send_buffer_high / 2);
        let weak = Arc::downgrade(&shared);
        channel.on_buffered_amount_low(Box::new(move || {
            if let Some(shared) = weak.upgrade() {
                shared.drained.notify_waiters();
            }
            Box::pin(async {})
        }));
        let weak = Arc::downgrade(&shared);
        open.pc.on_peer_connection_state_change(Box::new(move |state| {
            let weak = weak.clone();
            Box::pin(async move {
                if let Some(shared) = weak.upgrade() {
                    shared.on_peer_state(peer::peer_state(state)).await;
                }
            })
        }));
        // One channel per connection: a second one the peer opens is closed at
        // once, so it cannot hold a share of the association's receive window.
        open.pc.on_data_channel(Box::new(|extra| {
            Box::pin(async move {
                tracing::debug!(label = extra.label(), "closing an extra data channel");
                let _ = extra.close().await;
            })
        }));
        let reader = tokio::spawn(read_loop(shared.clone(), frames_tx, config.max_receive_message));
        tracing::debug!(peer = %open.remote_device, max_frame_size, "webrtc socket open");
        Ok(WebRtcSocket { shared, reader })
    }

    /// The device at the other end, as the signaling channel authenticated it. The
    /// handshake on top proves it.
    pub fn remote_device(&self) -> DeviceId {
        self.shared.remote_device
    }

    /// The state of the underlying peer connection.
    pub fn peer_state(&self) -> PeerState {
        *self.shared.peer_state.borrow()
    }

    /// Watches the state of the underlying peer connection.
    pub fn watch_peer_state(&self) -> watch::Receiver<PeerState> {
        self.shared.peer_state.subscribe()
    }

    /// The selected path (host, server-reflexive or relayed) with a fresh round-trip
    /// time, measured by a probe over the data channel. Without a probe answer the
    /// RTT is `None`.
    pub async fn path(&self) -> Option<PathInfo> {
        let rtt = self.measure_rtt().await.ok();
        let mut path = peer::selected_path(&self.shared.pc).await.or_else(|| self.last_path())?;
        path.rtt = rtt.or_else(|| self.last_path().and_then(|p| p.rtt));
        *self.shared.path.lock().unwrap_or_else(|p| p.into_inner()) = Some(path.clone());
        Some(path)
    }

    /// The path as last read, without probing.
    pub fn last_path(&self) -> Option<PathInfo> {
        self.shared.path.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sends a probe over the data channel and waits for the peer's answer. Probes
    /// on one socket run one at a time.
    pub async fn measure_rtt(&self) -> Result<Duration> {
        let mut counter = self.shared.probe.lock().await;
        *counter += 1;
        let n = *counter;
        let (tx, rx) = oneshot::channel();
        *self.shared.pong.lock().unwrap_or_else(|p| p.into_inner()) = Some((n, tx));
        let started = Instant::now();
        self.shared.send_control(&Control::Ping { n }).await?;
        match tokio::time::timeout(self.shared.rtt_probe_timeout, rx).await {
            Ok(Ok(())) => Ok(started.elapsed()),
            _ => Err(Error::WebRtc("round-trip probe unanswered".into())),
        }
    }

    /// Tears the connection down without telling the peer, as if this process had
    /// vanished: the peer finds out from DTLS, SCTP or ICE. For tests of the
    /// other side's failure handling.
    #[cfg(feature = "test-utils")]
    pub async fn vanish(&self) {
        self.shared.lifecycle.close(CloseReason::new(CloseCode::TransportFailure, "vanished"));
        self.shared.teardown().await;
    }
}

impl Shared {
    async fn on_peer_state(&self, state: PeerState) {
        self.peer_state.send_replace(state);
        match state {
            PeerState::Failed => {
                let reason = CloseReason::new(CloseCode::TransportFailure, "webrtc connection failed (ice or dtls)");
                if self.lifecycle.close(reason) {
                    tracing::info!(peer = %self.remote_device, "webrtc connection failed");
                }
                self.drained.notify_waiters();
            }
            PeerState::Closed => {
                let reason = CloseReason::new(CloseCode::TransportFailure, "peer connection closed");
                self.lifecycle.close(CloseReason { by: ClosedBy::Remote, ..reason });
                self.drained.notify_waiters();
            }
            PeerState::Disconnected => tracing::info!(peer = %self.remote_device, "webrtc path disconnected"),
            _ => {}
        }
    }

    async fn send_control(&self, control: &Control) -> Result<()> {
        let text = serde_json::to_vec(control).map_err(Error::webrtc)?;
        self.channel.write_data_channel(&Bytes::from(text), true).await.map_err(Error::webrtc)?;
        Ok(())
    }

    /// Waits until the buffered amount is at most the high-water mark, or fails when
    /// the socket closes.
    async fn wait_for_room(&self) -> peers_sdk::Result<()> {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if !self.lifecycle.is_open() {
                return Err(self.lifecycle.closed_error());
            }
            if self.channel.buffered_amount() <= self.send_buffer_high {
                return Ok(());
            }
            tokio::select! {
                _ = drained => {}
                _ = tokio::time::sleep(SEND_RECHECK) => {}
                _ = self.lifecycle.closed() => {}
            }
        }
    }

    /// Sends our close reason after the frames already queued, waits (bounded) until
    /// the peer acknowledged everything, then tears down.
    async fn close_gracefully(&self, reason: &CloseReason) {
        let control = Control::Close { code: reason.code, message: reason.message.clone() };
        let flush = async {
            if self.send_control(&control).await.is_ok() {
                while self.channel.buffered_amount() > 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        if tokio::time::timeout(self.close_flush_timeout, flush).await.is_err() {
            tracing::debug!(peer = %self.remote_device, "close not acknowledged in time");
        }
        self.teardown().await;
    }

    async fn teardown(&self) {
        self.peer_state.send_replace(PeerState::Closed);
        self.drained.notify_waiters();
        peer::close_quietly(&self.pc).await;
    }

    fn on_control(&self, text: &[u8]) -> Option<Control> {
        match serde_json::from_slice::<Control>(text) {
            Ok(Control::Pong { n }) => {
                let mut pending = self.pong.lock().unwrap_or_else(|p| p.into_inner());
                if pending.as_ref().is_some_and(|(expected, _)| *expected == n)
                    && let Some((_, tx)) = pending.take()
                {
                    let _ = tx.send(());
                }
                None
            }
            Ok(control) => Some(control),
            Err(error) => {
                tracing::debug!(peer = %self.remote_device, %error, "ignoring unknown control message");
                None
            }
        }
    }
}

/// Reads messages until the channel ends: frames go to the bounded queue (waiting
/// when it is full, which is our backpressure), control messages are handled here.
async fn read_loop(shared: Arc<Shared>, frames: mpsc::Sender<Bytes>, max_message: usize) {
    let mut buf = vec![0u8; max_message.max(MAX_CONTROL_LEN)];
    let end = loop {
        let (len, is_text) = tokio::select! {
            read = shared.channel.read_data_channel(&mut buf) => match read {
                Ok((0, false)) => break CloseReason::new(CloseCode::TransportFailure, "data channel closed"),
                Ok(read) => read,
                Err(webrtc::data::Error::Sctp(webrtc::sctp::Error::ErrShortBuffer { size })) => {
                    break CloseReason::new(
                        CloseCode::LimitExceeded,
                        format!("peer sent a message of {size} bytes; the limit is {max_message}"),
                    );
                }
                Err(error) => break CloseReason::new(CloseCode::TransportFailure, format!("data channel: {error}")),
            },
            _ = shared.lifecycle.closed() => return,
        };
        let Some(data) = buf.get(..len) else { continue };
        let frame = if is_text {
            if len > MAX_CONTROL_LEN {
                break CloseReason::new(CloseCode::ProtocolError, "control message too large");
            }
            match shared.on_control(data) {
                Some(Control::Close { code, message }) => {
                    let reason = CloseReason::new(code, message).as_remote();
                    tracing::debug!(peer = %shared.remote_device, %reason, "peer closed");
                    shared.lifecycle.close(reason);
                    shared.teardown().await;
                    return;
                }
                Some(Control::Ping { n }) => {
                    let _ = shared.send_control(&Control::Pong { n }).await;
                    continue;
                }
                Some(Control::Empty) => Bytes::new(),
                Some(Control::Pong { .. }) | None => continue,
            }
        } else {
            Bytes::copy_from_slice(data)
        };
        tokio::select! {
            sent = frames.send(frame) => if sent.is_err() { return },
            _ = shared.lifecycle.closed() => return,
        }
    };
    // The channel ended without a close message: the peer vanished or failed.
    let by_us = shared.lifecycle.close(end.as_remote());
    if by_us {
        tracing::info!(peer = %shared.remote_device, reason = %end, "webrtc channel ended");
    }
    shared.teardown().await;
}

#[async_trait]
impl Socket for WebRtcSocket {
    fn info(&self) -> &SocketInfo {
        &self.shared.info
    }

    async fn send(&self, frame: Bytes) -> peers_sdk::Result<()> {
        let shared = &self.shared;
        let max = shared.info.max_frame_size;
        if frame.len() > max {
            return Err(SdkError::FrameTooLarge { size: frame.len(), max });
        }
        let _turn = tokio::select! {
            guard = shared.send_lock.lock() => guard,
            _ = shared.lifecycle.closed() => return Err(shared.lifecycle.closed_error()),
        };
        shared.wait_for_room().await?;
        let written = if frame.is_empty() {
            shared.send_control(&Control::Empty).await.map(|_| ())
        } else {
            shared.channel.write_data_channel(&frame, false).await.map(|_| ()).map_err(Error::webrtc)
        };
        written.map_err(|error| {
            let reason = CloseReason::new(CloseCode::TransportFailure, format!("send failed: {error}"));
            shared.lifecycle.close(reason);
            shared.lifecycle.closed_error()
        })
    }

    async fn recv(&self) -> peers_sdk::Result<Bytes> {
        let shared = &self.shared;
        if let SocketState::Closed(reason) = shared.lifecycle.state()
            && reason.by == ClosedBy::Local
        {
            return Err(SdkError::Closed { reason });
        }
        let mut frames = shared.frames.lock().await;
        tokio::select! {
            biased;
            frame = frames.recv() => frame.ok_or_else(|| shared.lifecycle.closed_error()),
            reason = shared.lifecycle.closed() => {
                // Frames the peer sent before it closed are still delivered.
                if reason.by == ClosedBy::Remote && let Ok(frame) = frames.try_recv() {
                    return Ok(frame);
                }
                Err(SdkError::Closed { reason })
            }
        }
    }

    async fn close(&self, reason: CloseReason) {
        let reason = CloseReason { by: ClosedBy::Local, ..reason };
        if self.shared.lifecycle.close(reason.clone()) {
            self.shared.close_gracefully(&reason).await;
        }
    }

    fn state(&self) -> SocketState {
        self.shared.lifecycle.state()
    }

    async fn closed(&self) -> CloseReason {
        self.shared.lifecycle.closed().await
    }

    /// The selected candidate pair as last read ([`WebRtcSocket::path`] reads it
    /// again), in the transport-neutral form the connection manager classifies.
    fn path(&self) -> Option<PathInfo> {
        self.last_path()
    }
}

impl Drop for WebRtcSocket {
    fn drop(&mut self) {
        let reason = CloseReason::new(CloseCode::GoingAway, "socket dropped");
        let first = self.shared.lifecycle.close(reason.clone());
        let shared = Arc::clone(&self.shared);
        let reader = self.reader.abort_handle();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if first {
                        shared.close_gracefully(&reason).await;
                    } else {
                        shared.teardown().await;
                    }
                    reader.abort();
                });
            }
            Err(_) => reader.abort(),
        }
    }
}
