//! [`ServerConfig`]: every setting of the signaling server.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::ice::IceSettings;
use crate::notices::NoticeLimits;
use crate::protocol::{DEFAULT_NAMESPACE, PayloadLimits};
use crate::queue::QueueLimits;
use crate::ratelimit::RateLimits;
use crate::relay::RelayLimits;
use crate::sessions::SessionLimits;
use crate::store::StoreConfig;

/// Settings of a [`SignalingServer`](crate::SignalingServer).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where [`SignalingServer::bind`](crate::SignalingServer::bind) listens.
    /// Default: `127.0.0.1:0` (loopback, any free port).
    pub bind: SocketAddr,
    /// The socket.io namespace. Default: `/signaling`.
    pub namespace: String,
    /// The socket.io request path. Default: `/socket.io`.
    pub path: String,
    /// Where the queue and notices live. Default: SQLite in `./peers-signaling-data`.
    pub store: StoreConfig,
    /// Offline queue bounds and times to live.
    pub queue: QueueLimits,
    /// Bounds of the notices kept for offline senders.
    pub notices: NoticeLimits,
    /// Size limits of signal bodies.
    pub payload: PayloadLimits,
    /// Most connections at once; more are refused with a `connect_error`.
    /// Default: 10,000.
    pub max_connections: usize,
    /// Most TCP connections at once from one address (an IPv6 /64), counted
    /// from accept, whether or not they ever open the namespace or register;
    /// more are closed at once. A long-polling client may use two or three.
    /// Needs [`SignalingServer::bind`](crate::SignalingServer::bind). Default: 128.
    pub max_connections_per_address: usize,
    /// The origins (`scheme://host[:port]`) clients dial this server by; a
    /// registration signature must cover one of them. Empty (the default):
    /// the `Host` header of the client's request, with either scheme, which
    /// stops a signature made for one host name from being used under
    /// another, but not a malicious server that relays (it chooses the
    /// `Host` header it sends): set this on a public server.
    pub public_origins: Vec<String>,
    /// A client must register within this time of connecting. Default: 10 s.
    pub registration_timeout: Duration,
    /// Most devices one connection (so one device: a device has one
    /// registered connection) may watch. Default: 1024.
    pub max_subscriptions: usize,
    /// Most devices the connections of one address (IPv4 address, IPv6 /64)
    /// may watch together, per instance; ids that name no device count too.
    /// Default: 8192.
    pub max_subscriptions_per_address: usize,
    /// Rate limits per device and per IP address.
    pub rate_limits: RateLimits,
    /// STUN and TURN servers handed out by `"ice-config"`.
    pub ice: IceSettings,
    /// Transfer sessions joined by a code.
    pub sessions: SessionLimits,
    /// The frame relay between two devices.
    pub relay: RelayLimits,
    /// Largest socket.io message a client may send (engine.io `max_payload`).
    /// Default: 128 KiB (a body of 64 KiB plus framing).
    pub max_payload: usize,
    /// Origins of the web pages that may use the server with
    /// socket.io-client's default transports (long-polling first), e.g.
    /// `https://app.example`; `*` allows every origin. The server answers
    /// their CORS preflights and adds the CORS headers to their requests.
    /// Needs [`SignalingServer::bind`](crate::SignalingServer::bind) (or
    /// [`SignalingServer::cors_layer`](crate::SignalingServer::cors_layer) on
    /// your router). Default: none (a page on another origin can use the
    /// WebSocket transport only).
    pub cors_origins: Vec<String>,
    /// Serve `/metrics` on this address only (not on [`bind`](Self::bind)).
    /// Needs [`SignalingServer::bind`](crate::SignalingServer::bind).
    /// Default: none (`/metrics` is on the server's own address).
    pub metrics_listen: Option<SocketAddr>,
    /// `/metrics` answers only requests carrying `Authorization: Bearer
    /// <token>` (16 to 256 visible ASCII characters), wherever it is served.
    /// Default: none (open to anyone who reaches it).
    pub metrics_token: Option<String>,
    /// Serve the receive page (peers-js's bundle, [`ReceivePage::load`](crate::ReceivePage::load))
    /// at `/receive/`, and tell the creator of a `pake` session where it is.
    /// Default: none (no page, no `receive_page` in replies).
    pub receive_page: Option<crate::ReceivePage>,
    /// Most bytes queued for one connection and not yet written to it
    /// (replies, signals, notices, relay frames). An emit that would go over
    /// it closes the connection: it is not reading. The queued messages a
    /// registration takes (at most `queue.per_device_bytes`) are counted but
    /// never refused. Needs [`SignalingServer::bind`](crate::SignalingServer::bind)
    /// (it meters its connections). Default: 512 KiB.
    pub max_outgoing_bytes: usize,
    /// A write to a client whose TCP window stays shut this long fails and
    /// closes the connection (its relays end, its buffer is freed), even if
    /// the client never closes TCP. Needs `bind`. Default: 5 s.
    pub write_stall_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            namespace: DEFAULT_NAMESPACE.into(),
            path: "/socket.io".into(),
            store: StoreConfig::default(),
            queue: QueueLimits::default(),
            notices: NoticeLimits::default(),
            payload: PayloadLimits::default(),
            max_connections: 10_000,
            max_connections_per_address: 128,
            public_origins: Vec::new(),
            registration_timeout: Duration::from_secs(10),
            max_subscriptions: 1024,
            max_subscriptions_per_address: 8192,
            rate_limits: RateLimits::default(),
            ice: IceSettings::default(),
            sessions: SessionLimits::default(),
            relay: RelayLimits::default(),
            max_payload: 128 * 1024,
            cors_origins: Vec::new(),
            metrics_listen: None,
            metrics_token: None,
            receive_page: None,
            max_outgoing_bytes: 512 * 1024,
            write_stall_timeout: Duration::from_secs(5),
        }
    }
}

impl ServerConfig {
    /// A configuration with an in-memory store (tests, ephemeral servers).
    pub fn in_memory() -> Self {
        ServerConfig { store: StoreConfig::Memory, ..ServerConfig::default() }
    }

    /// Checks every setting; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, detail: &str| Err(Error::InvalidConfig { field, detail: detail.into() });
        if !self.namespace.starts_with('/') {
            return invalid("namespace", "must start with '/'");
        }
        if !self.path.starts_with('/') {
            return invalid("path", "must start with '/'");
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if self.max_connections_per_address == 0 {
            return invalid("max_connections_per_address", "must be at least 1");
        }
        for origin in &self.public_origins {
            if let Err(detail) = crate::protocol::server_origin(origin) {
                return invalid("public_origins", &detail);
            }
        }
        if self.registration_timeout.is_zero() {
            return invalid("registration_timeout", "must be positive");
        }
        if self.max_subscriptions == 0 {
            return invalid("max_subscriptions", "must be at least 1");
        }
        if self.max_subscriptions_per_address < self.max_subscriptions {
            return invalid("max_subscriptions_per_address", "must be at least max_subscriptions");
        }
        if self.payload.max_body_bytes + 4096 > self.max_payload {
            return invalid("max_payload", "must exceed payload.max_body_bytes by at least 4 KiB");
        }
        if self.max_outgoing_bytes < 2 * self.max_payload {
            return invalid("max_outgoing_bytes", "must be at least twice max_payload");
        }
        for origin in &self.cors_origins {
            if let Err(detail) = super::http::cors_origin(origin) {
                return invalid("cors_origins", &detail);
            }
        }
        if let Some(token) = &self.metrics_token
            && (!(16..=256).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return invalid("metrics_token", "must be 16 to 256 visible ASCII characters");
        }
        if self.write_stall_timeout < Duration::from_millis(100) {
            return invalid("write_stall_timeout", "must be at least 100 ms");
        }
        self.store.validate()?;
        self.queue.validate()?;
        self.rate_limits.validate()?;
        self.ice.validate()?;
        self.sessions.validate()?;
        self.relay.validate()?;
        Ok(())
    }
}
