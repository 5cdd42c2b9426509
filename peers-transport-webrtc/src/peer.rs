//! Everything that touches the `webrtc` crate's peer connection: building one with
//! our settings, converting signals, reading the selected path and the DTLS
//! certificate. The rest of the crate talks to the library only through here and
//! `socket.rs`, so the library can change behind the `Socket`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use peers_sdk::socket::Locality;
use peers_sdk::{PathInfo, PathKind};
use sha2::{Digest, Sha256};
use webrtc::api::APIBuilder;
use webrtc::api::setting_engine::{SctpMaxMessageSize, SettingEngine};
use webrtc::ice::network_type::NetworkType;
use webrtc::ice::udp_network::UDPNetwork;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::ice_transport::ice_gathering_state::RTCIceGatheringState;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::policy::ice_transport_policy::RTCIceTransportPolicy;

use crate::config::{CandidateScope, IceServer, WebRtcConfig};
use crate::error::{Error, Result};
use crate::signal::IceCandidate;
use crate::udp;

/// The label of the one data channel a connection carries.
pub(crate) const CHANNEL_LABEL: &str = "peers";

/// Builds a peer connection with our settings: detached data channels (we run our
/// own read loop with our own buffer), our ICE timers and candidate scope, and the
/// given STUN/TURN servers. Certificate fingerprint verification stays on (the
/// library's default): DTLS fails unless the peer's certificate matches its SDP.
pub(crate) async fn new_peer_connection(
    config: &WebRtcConfig,
    servers: Vec<IceServer>,
) -> Result<Arc<RTCPeerConnection>> {
    let mut settings = SettingEngine::default();
    settings.detach_data_channels();
    settings.set_ice_timeouts(
        Some(config.ice_disconnected_timeout),
        Some(config.ice_failed_timeout),
        Some(config.ice_keepalive_interval),
    );
    settings.set_prflx_acceptance_min_wait(Some(config.ice_prflx_acceptance_wait));
    // The association refuses messages above this (the library's default is 64 KiB
    // whatever the peer announces): the socket's frame size may not exceed it.
    let can_send = u32::try_from(config.max_frame_size).unwrap_or(u32::MAX);
    settings.set_sctp_max_message_size_can_send(SctpMaxMessageSize::Bounded(can_send));
    if config.candidate_scope == CandidateScope::LoopbackOnly {
        settings.set_include_loopback_candidate(true);
        settings.set_network_types(vec![NetworkType::Udp4]);
        settings.set_ip_filter(Box::new(|ip| ip.is_loopback()));
        // Our own socket with large buffers (see `udp`); loopback has no NAT, so
        // the reflexive candidates a mux gives up are not missed.
        let mux = udp::bind_mux(IpAddr::from([127, 0, 0, 1]), config.udp_socket_buffer)?;
        settings.set_udp_network(UDPNetwork::Muxed(mux));
    }
    let api = APIBuilder::new().with_setting_engine(settings).build();
    let ice_servers = servers
        .into_iter()
        .map(|server| RTCIceServer { urls: server.urls, username: server.username, credential: server.credential })
        .collect();
    let mut rtc_config = RTCConfiguration { ice_servers, ..Default::default() };
    if config.candidate_scope == CandidateScope::RelayOnly {
        rtc_config.ice_transport_policy = RTCIceTransportPolicy::Relay;
    }
    let pc = api.new_peer_connection(rtc_config).await.map_err(Error::webrtc)?;
    Ok(Arc::new(pc))
}

pub(crate) fn candidate_to_library(candidate: IceCandidate) -> RTCIceCandidateInit {
    RTCIceCandidateInit {
        candidate: candidate.candidate,
        sdp_mid: candidate.sdp_mid,
        sdp_mline_index: candidate.sdp_mline_index,
        username_fragment: None,
    }
}

pub(crate) fn candidate_from_library(candidate: RTCIceCandidateInit) -> IceCandidate {
    IceCandidate {
        candidate: candidate.candidate,
        sdp_mid: candidate.sdp_mid,
        sdp_mline_index: candidate.sdp_mline_index,
    }
}

/// The SHA-256 of the DTLS certificate the peer actually presented, or an error if
/// DTLS has not finished.
pub(crate) async fn remote_certificate_fingerprint(pc: &RTCPeerConnection) -> Result<[u8; 32]> {
    let certificate = pc.sctp().transport().get_remote_certificate().await;
    if certificate.is_empty() {
        return Err(Error::Fingerprint("peer presented no dtls certificate".into()));
    }
    Ok(Sha256::digest(&certificate).into())
}

/// Reads the selected candidate pair as a path; `None` before ICE selected one.
/// Its ends are `ip:port`; it has no round-trip time yet.
pub(crate) async fn selected_path(pc: &RTCPeerConnection) -> Option<PathInfo> {
    let pair = pc.sctp().transport().ice_transport().get_selected_candidate_pair().await?;
    // A peer-reflexive candidate is an address learned from a connectivity check
    // rather than from signaling; with trickle ICE that is often just a host
    // address whose candidate had not arrived yet. On a private or loopback address
    // it is direct; on a public one, a NAT mapping.
    let rank = |typ: RTCIceCandidateType, address: &str| match typ {
        RTCIceCandidateType::Relay => 2,
        RTCIceCandidateType::Srflx => 1,
        RTCIceCandidateType::Prflx if locality_of(address) == Locality::Internet => 1,
        _ => 0,
    };
    let kind = match rank(pair.local.typ, &pair.local.address).max(rank(pair.remote.typ, &pair.remote.address)) {
        2 => PathKind::Relayed,
        1 => PathKind::NatTraversal,
        _ => PathKind::Direct,
    };
    let addr = |address: &str, port: u16| {
        if address.contains(':') { format!("[{address}]:{port}") } else { format!("{address}:{port}") }
    };
    let mut path = PathInfo::new(kind);
    path.local = Some(addr(&pair.local.address, pair.local.port));
    path.remote = Some(addr(&pair.remote.address, pair.remote.port));
    Some(path)
}

/// How close an address (an IP, or `ip:port` as in a [`PathInfo`]) is.
pub(crate) fn locality_of(address: &str) -> Locality {
    let ip = address.parse::<IpAddr>().or_else(|_| address.parse::<SocketAddr>().map(|a| a.ip()));
    ip.map_or(Locality::Internet, Locality::of_ip)
}

/// The broad state of a connection attempt or connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerState {
    /// Signaling, ICE, DTLS or SCTP in progress.
    Connecting,
    /// The data channel is open.
    Connected,
    /// ICE lost the path; it may come back before the failure timeout.
    Disconnected,
    /// ICE gave up, or DTLS/SCTP failed.
    Failed,
    /// Closed by either side.
    Closed,
}

pub(crate) fn peer_state(state: RTCPeerConnectionState) -> PeerState {
    match state {
        RTCPeerConnectionState::Connected => PeerState::Connected,
        RTCPeerConnectionState::Disconnected => PeerState::Disconnected,
        RTCPeerConnectionState::Failed => PeerState::Failed,
        RTCPeerConnectionState::Closed => PeerState::Closed,
        _ => PeerState::Connecting,
    }
}

/// Longest we let candidate gathering finish before closing a peer connection.
const GATHERING_GRACE: Duration = Duration::from_secs(5);

/// Closes a peer connection, logging (not returning) the library's complaints: a
/// close is best effort, and it must release sockets and tasks either way.
///
/// webrtc 0.17 adds a candidate that finishes gathering after the ICE agent closed
/// without closing it, leaking its UDP socket and read task; so we let gathering
/// finish first (at most [`GATHERING_GRACE`]).
pub(crate) async fn close_quietly(pc: &RTCPeerConnection) {
    let started = std::time::Instant::now();
    while pc.ice_gathering_state() == RTCIceGatheringState::Gathering && started.elapsed() < GATHERING_GRACE {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Err(error) = pc.close().await {
        tracing::debug!(%error, "closing peer connection");
    }
}

/// Owns a peer connection during an attempt: unless [`disarm`](Self::disarm)ed,
/// dropping it (the attempt failed, timed out or its future was dropped) closes
/// the peer connection in the background.
pub(crate) struct PeerConnectionGuard {
    pc: Option<Arc<RTCPeerConnection>>,
}

impl PeerConnectionGuard {
    pub(crate) fn new(pc: Arc<RTCPeerConnection>) -> Self {
        PeerConnectionGuard { pc: Some(pc) }
    }

    /// The guarded peer connection.
    pub(crate) fn pc(&self) -> Option<&Arc<RTCPeerConnection>> {
        self.pc.as_ref()
    }

    /// Hands the peer connection over to a socket, which now owns its teardown.
    pub(crate) fn disarm(mut self) {
        self.pc = None;
    }
}

impl Drop for PeerConnectionGuard {
    fn drop(&mut self) {
        if let Some(pc) = self.pc.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { close_quietly(&pc).await });
        }
    }
}
