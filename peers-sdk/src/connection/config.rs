//! Connection settings.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::codec::CodecConfig;
use crate::handshake::{HandshakeConfig, ReplayGuard, TransportCipher};
use crate::identity::DeviceKeys;
use crate::trust::{TrustLevel, TrustPolicy};

/// Settings for [`Connection::connect`](super::Connection::connect) and
/// [`Connection::accept`](super::Connection::accept).
///
/// Cloning is cheap and shares the trust policy and the replay guard, so a
/// listener clones one config for every socket it accepts.
#[derive(Clone)]
pub struct ConnectionConfig {
    /// Our identity and handshake options.
    pub handshake: HandshakeConfig,
    /// Decides how much to trust an authenticated peer.
    pub trust: Arc<dyn TrustPolicy>,
    /// Peers below this level are refused. Default: [`TrustLevel::Known`].
    /// [`TrustLevel::Untrusted`] is always refused.
    pub trust_floor: TrustLevel,
    /// Framing, chunking and compression limits.
    pub codec: CodecConfig,
    /// The whole handshake must finish within this time. Default: 10 s.
    pub handshake_timeout: Duration,
    /// Default timeout of [`emit`](super::Connection::emit). Default: 30 s.
    pub call_timeout: Duration,
    /// Most calls this side may have waiting for replies. Default: 1024.
    pub max_calls_in_flight: usize,
    /// Most incoming calls and streams handled at once. A call beyond it waits
    /// for a slot (which stops reading from the peer); a stream beyond it is
    /// refused [`Busy`](crate::rpc::RemoteErrorCode::Busy). Default: 256.
    pub max_concurrent_handlers: usize,
    /// Credit window per incoming stream: the most bytes of one stream buffered
    /// before the application reads them. Default: 4 MiB.
    pub stream_window: u64,
    /// Most incoming streams open at once (each also takes a handler slot);
    /// more are refused with [`Busy`](crate::rpc::RemoteErrorCode::Busy).
    /// Default: 16.
    pub max_incoming_streams: usize,
    /// Shared memory of recent first handshake messages (responder side).
    pub replay_guard: Arc<Mutex<ReplayGuard>>,
    /// The wall clock, unix milliseconds, for handshake timestamps. Default: the
    /// system clock. Tests replace it to simulate clock skew.
    pub clock: Clock,
    /// Installs this side's RPC and stream handlers on every new connection
    /// before the peer may call it (see [`with_setup`](Self::with_setup)).
    /// Default: none.
    pub setup: Option<Setup>,
}

/// Installs handlers on a connection that was just verified, before the peer is
/// told it is ready (see [`ConnectionConfig::with_setup`]).
pub type Setup = Arc<dyn Fn(&super::Connection) + Send + Sync>;

/// A source of unix-millisecond timestamps.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

impl std::fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionConfig")
            .field("device", &self.handshake.keys.device_id())
            .field("trust_floor", &self.trust_floor)
            .field("ciphers", &self.handshake.ciphers)
            .field("codec", &self.codec)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("max_calls_in_flight", &self.max_calls_in_flight)
            .field("max_concurrent_handlers", &self.max_concurrent_handlers)
            .field("setup", &self.setup.is_some())
            .finish_non_exhaustive()
    }
}

impl ConnectionConfig {
    /// Defaults for a device with `keys` that judges peers with `trust`.
    pub fn new(keys: Arc<DeviceKeys>, trust: impl TrustPolicy) -> Self {
        let handshake = HandshakeConfig::new(keys);
        let window_ms = u64::try_from(handshake.timestamp_window.as_millis()).unwrap_or(u64::MAX);
        ConnectionConfig {
            handshake,
            trust: Arc::new(trust),
            trust_floor: TrustLevel::Known,
            codec: CodecConfig::default(),
            handshake_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(30),
            max_calls_in_flight: 1024,
            max_concurrent_handlers: 256,
            stream_window: Self::DEFAULT_STREAM_WINDOW,
            max_incoming_streams: 16,
            replay_guard: Arc::new(Mutex::new(ReplayGuard::new(window_ms, ReplayGuard::DEFAULT_CAPACITY))),
            clock: Arc::new(super::establish::unix_millis),
            setup: None,
        }
    }

    /// Runs `setup` on every connection made with this config once the handshake
    /// has verified the peer and before the peer may call: on the accepting side
    /// before the `Ready` message goes out, on the dialing side before the
    /// reader reads it. Handlers that `setup` registers with
    /// [`expose_rpc`](super::Connection::expose_rpc) or
    /// [`expose_stream`](super::Connection::expose_stream) therefore answer the
    /// peer's very first call; handlers registered after `connect` or `accept`
    /// return may miss it (the peer gets
    /// [`UnknownMethod`](crate::rpc::RemoteErrorCode::UnknownMethod)).
    ///
    /// Calling it again adds a step: earlier steps run first. `setup` runs
    /// synchronously on the task running the handshake, so it should only
    /// register handlers. A handler that keeps a clone of the connection keeps
    /// it open; keep [`remote`](super::Connection::remote) or other values
    /// instead.
    pub fn with_setup(mut self, setup: impl Fn(&super::Connection) + Send + Sync + 'static) -> Self {
        self.setup = Some(match self.setup.take() {
            None => Arc::new(setup),
            Some(first) => Arc::new(move |connection: &super::Connection| {
                first(connection);
                setup(connection);
            }),
        });
        self
    }

    /// Restricts (or reorders) the AEADs this side accepts for transport frames,
    /// its preference first; for example `[TransportCipher::ChaCha20Poly1305]` to
    /// never use AES-GCM. The default is [`TransportCipher::preferred`]. An empty
    /// list makes `connect` and `accept` fail with [`Error::InvalidInput`](crate::Error::InvalidInput).
    pub fn with_ciphers(mut self, ciphers: impl IntoIterator<Item = TransportCipher>) -> Self {
        self.handshake.ciphers = ciphers.into_iter().collect();
        self
    }
}
