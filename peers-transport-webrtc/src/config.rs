//! Configuration: ICE servers, timers and limits. Every limit the transport uses is
//! a field here, with its default in the field's documentation.

use std::time::Duration;

/// A STUN or TURN server, as the signaling server hands them out.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, `turns:…`.
    pub urls: Vec<String>,
    /// TURN user name (for time-limited credentials: `"<expiry>:<id>"`).
    pub username: String,
    /// TURN password (for time-limited credentials: the HMAC).
    pub credential: String,
}

/// Which local addresses may become ICE candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CandidateScope {
    /// Every interface except loopback (the WebRTC default), plus the servers'
    /// reflexive and relayed candidates.
    #[default]
    AllInterfaces,
    /// Only the loopback interface: for tests and benchmarks on one machine.
    LoopbackOnly,
    /// Only relayed (TURN) candidates (ICE transport policy `relay`): every path
    /// goes through a TURN server, and the peer never learns this device's own
    /// addresses. Needs a TURN server (from the config or the signaling channel).
    RelayOnly,
}

/// How a [`WebRtcEndpoint`](crate::WebRtcEndpoint) dials and accepts.
#[derive(Clone, Debug)]
pub struct WebRtcConfig {
    /// ICE servers used in addition to those the signaling channel provides.
    /// Default: none.
    pub ice_servers: Vec<IceServer>,
    /// Which interfaces gather candidates. Default: all but loopback.
    pub candidate_scope: CandidateScope,
    /// From the start of `connect` (or the arrival of an offer) to an open data
    /// channel. Default: 15 s.
    pub connect_timeout: Duration,
    /// ICE: no traffic for this long marks the path disconnected. Default: 5 s.
    pub ice_disconnected_timeout: Duration,
    /// ICE: disconnected for this long more marks it failed, which closes the
    /// socket with `TransportFailure`. Default: 10 s.
    pub ice_failed_timeout: Duration,
    /// ICE keep-alive interval when no data flows. Default: 1 s.
    pub ice_keepalive_interval: Duration,
    /// How long the controlling ICE agent waits before it nominates a pair with a
    /// peer-reflexive candidate. With trickle ICE the peer's first check often
    /// arrives before its candidate does, so its host address shows up as
    /// peer-reflexive; the library's 1 s default then delays about one open in
    /// five by a second. Default: 0.
    pub ice_prflx_acceptance_wait: Duration,
    /// Sends wait while more than this many bytes are queued in the data channel
    /// (its buffered amount), and resume below half of it. Default: 4 MiB.
    pub send_buffer_high: usize,
    /// Largest frame we send, before the peer's own limit (its SDP's
    /// `a=max-message-size`). The SCTP association gets the same cap (the library
    /// refuses to send a larger message), so every frame the socket allows is one the
    /// library sends. Default: 64 KiB, what every peer accepts (RFC 8841's default):
    /// Chromium and libdatachannel announce 256 KiB, but libdatachannel (node-datachannel)
    /// stalls on 256 KiB messages from this library.
    pub max_frame_size: usize,
    /// Largest message we accept from the peer (our read buffer). Default: 256 KiB.
    pub max_receive_message: usize,
    /// Frames read from the data channel and not yet taken by `recv`. When full,
    /// we stop reading, and SCTP flow control holds the peer back. Default: 64.
    pub receive_queue: usize,
    /// Connection attempts in progress at once, dialing and accepting together;
    /// more offers are refused. Default: 32.
    pub max_sessions: usize,
    /// Accepted sockets waiting for [`accept`](crate::WebRtcEndpoint::accept);
    /// when full, new offers are refused. Default: 16.
    pub accept_queue: usize,
    /// Signals queued per session before the session counts as flooded. Default: 64.
    pub session_signal_queue: usize,
    /// Remote candidates held until the remote description is set. Default: 64.
    pub max_pending_candidates: usize,
    /// On close, how long we wait for queued frames and the close message to
    /// leave before tearing the connection down. Default: 2 s.
    pub close_flush_timeout: Duration,
    /// How long a round-trip probe may take. Default: 5 s.
    pub rtt_probe_timeout: Duration,
    /// Receive and send buffer asked for on the UDP socket we create for host
    /// candidates, in bytes. The kernel may grant less (Linux clamps to
    /// `net.core.rmem_max` / `wmem_max`, 208 KiB by default; the granted sizes are
    /// logged once). SCTP sends its congestion window as one burst, and its
    /// receive window is 1 MiB: a receive buffer that holds a whole window (4 MiB
    /// holds 3,640 datagrams of 1,200 bytes on Linux, the default 208 KiB holds
    /// 92) loses no datagram however busy the receiving runtime is, where the
    /// default buffer makes large writes many times slower. Used with [`CandidateScope::LoopbackOnly`]
    /// only: elsewhere the library's own sockets carry host candidates, because
    /// `webrtc-ice` 0.17 gathers no server-reflexive candidates on a socket it did
    /// not create. Default: 4 MiB.
    pub udp_socket_buffer: usize,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            ice_servers: Vec::new(),
            candidate_scope: CandidateScope::default(),
            connect_timeout: Duration::from_secs(15),
            ice_disconnected_timeout: Duration::from_secs(5),
            ice_failed_timeout: Duration::from_secs(10),
            ice_keepalive_interval: Duration::from_secs(1),
            ice_prflx_acceptance_wait: Duration::ZERO,
            send_buffer_high: 4 * 1024 * 1024,
            max_frame_size: 64 * 1024,
            max_receive_message: 256 * 1024,
            receive_queue: 64,
            max_sessions: 32,
            accept_queue: 16,
            session_signal_queue: 64,
            max_pending_candidates: 64,
            close_flush_timeout: Duration::from_secs(2),
            rtt_probe_timeout: Duration::from_secs(5),
            udp_socket_buffer: 4 * 1024 * 1024,
        }
    }
}

impl WebRtcConfig {
    /// The defaults, with candidates gathered on loopback only (tests, benchmarks).
    pub fn loopback() -> Self {
        WebRtcConfig { candidate_scope: CandidateScope::LoopbackOnly, ..Self::default() }
    }
}
