//! [`SocketIoServer`]: socketioxide on axum, listening on its own address, and the
//! options and builder settings it shares with an embedded [`SocketIoAcceptor`].

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt;
use peers_sdk::{CloseCode, CloseReason};
use socketioxide::{ParserConfig, SocketIo, SocketIoBuilder};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::tcp::PlainListener;
use crate::tls::TlsListener;
use crate::{FrameLimits, LanRange, SocketIoAcceptor, SocketIoSocket};

/// Settings of a [`SocketIoServer`] or an attached [`SocketIoAcceptor`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Where [`SocketIoServer::bind`] listens. Default: `127.0.0.1:0` (loopback,
    /// any free port); use `0.0.0.0:PORT` or `[::]:PORT` to serve a network.
    pub bind: SocketAddr,
    /// The socket.io request path. Default: `/socket.io`.
    pub path: String,
    /// The socket.io namespace our sockets join. Default: `/`.
    pub namespace: String,
    /// Most sockets open at once (accepted or waiting in the backlog); clients
    /// beyond it are refused with a `connect_error` saying so. Default: 256.
    pub max_connections: usize,
    /// Sockets waiting for [`accept`](SocketIoAcceptor::accept); beyond it new
    /// sockets are closed with [`CloseCode::LimitExceeded`]. Default: 64.
    pub accept_backlog: usize,
    /// Frame size and receive window.
    pub limits: FrameLimits,
    /// A client must send its hello within this time after joining. Default: 10 s.
    pub handshake_timeout: Duration,
    /// How long a socket's outgoing buffer may stay full before the transport is
    /// considered dead. Default: 30 s.
    pub stall_timeout: Duration,
    /// Extra address ranges that count as LAN for [`SocketInfo::locality`](peers_sdk::SocketInfo::locality).
    pub lan_ranges: Vec<LanRange>,
    /// Set `TCP_NODELAY` on accepted connections (so small frames are not held
    /// back by Nagle's algorithm). Default: true.
    pub tcp_nodelay: bool,
    /// Set `TCP_QUICKACK` on an accepted connection whenever a read finds it
    /// drained, so the server acknowledges at once instead of delaying its ACKs. Clients whose
    /// library leaves Nagle's algorithm on (`rust_socketio` does) otherwise hold
    /// a small message back until the previous one is acknowledged: up to 40 ms
    /// on Linux (see `docs/transport-socketio.md`). Default: true.
    pub tcp_quickack: bool,
    /// The most a connection's WebSocket reader takes from the socket per read, and
    /// the read buffer each connection holds for its life (it grows for a longer
    /// message). engineioxide's default is 4 KiB, which took a 1 GiB transfer in
    /// 262,144 reads. Default: 64 KiB (16 MiB for 256 connections).
    pub ws_read_buffer_size: usize,
    /// engine.io heartbeat: how often the server pings. Default: 25 s.
    pub ping_interval: Duration,
    /// engine.io heartbeat: how long a client may take to answer. Default: 20 s.
    pub ping_timeout: Duration,
    /// Serve over TLS (`https`/`wss`) with this rustls configuration; `None`
    /// (the default) serves plain HTTP. Build one with
    /// [`server_tls_config`](crate::server_tls_config) or
    /// [`server_tls_config_from_pem`](crate::server_tls_config_from_pem). Sockets
    /// then report [`TransportSecurity::confidential`](peers_sdk::socket::TransportSecurity::confidential)
    /// but offer no channel binding (see `docs/transport-socketio.md`). An
    /// attached [`SocketIoAcceptor`] is served by its owner and only reads it to
    /// report its sockets as confidential.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// With TLS: how long a client may take to finish the TLS handshake. Default: 10 s.
    pub tls_handshake_timeout: Duration,
    /// With TLS: most TLS handshakes in progress at once; further connections
    /// wait in the kernel's accept backlog. Default: 64.
    pub max_pending_tls_handshakes: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            path: "/socket.io".into(),
            namespace: "/".into(),
            max_connections: 256,
            accept_backlog: 64,
            limits: FrameLimits::default(),
            handshake_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            lan_ranges: Vec::new(),
            tcp_nodelay: true,
            tcp_quickack: true,
            ws_read_buffer_size: 64 * 1024,
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            tls: None,
            tls_handshake_timeout: Duration::from_secs(10),
            max_pending_tls_handshakes: 64,
        }
    }
}

impl ServerOptions {
    /// Checks that the options can work.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, detail: &str| Err(Error::InvalidConfig { field, detail: detail.into() });
        self.limits.validate()?;
        if !self.path.starts_with('/') {
            return invalid("path", "must start with '/'");
        }
        if !self.namespace.starts_with('/') {
            return invalid("namespace", "must start with '/'");
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if self.ws_read_buffer_size == 0 {
            return invalid("ws_read_buffer_size", "must be at least 1");
        }
        if self.accept_backlog == 0 {
            return invalid("accept_backlog", "must be at least 1");
        }
        if self.handshake_timeout.is_zero() || self.stall_timeout.is_zero() {
            return invalid("handshake_timeout / stall_timeout", "must be positive");
        }
        if self.tls.is_some() && (self.tls_handshake_timeout.is_zero() || self.max_pending_tls_handshakes == 0) {
            return invalid("tls_handshake_timeout / max_pending_tls_handshakes", "must be positive");
        }
        Ok(())
    }
}

/// Applies `options`' transport limits to a socketioxide builder: request path,
/// heartbeat, the engine.io and WebSocket message limits (one maximum frame as
/// base64 text plus framing, [`FrameLimits::max_payload`]), one binary
/// attachment per event of at most one maximum frame, and a packet buffer deep
/// enough for a full receive window. Use it when the `SocketIo` is shared with
/// other namespaces; [`SocketIoServer::bind`] calls it for you.
pub fn configure_builder(builder: SocketIoBuilder, options: &ServerOptions) -> SocketIoBuilder {
    let payload = options.limits.max_payload();
    let window = usize::try_from(options.limits.recv_window_frames).unwrap_or(usize::MAX);
    builder
        .req_path(options.path.clone())
        .ping_interval(options.ping_interval)
        .ping_timeout(options.ping_timeout)
        .connect_timeout(options.handshake_timeout)
        .max_payload(payload as u64)
        .ws_max_message_size(payload)
        .ws_max_frame_size(payload)
        .ws_read_buffer_size(options.ws_read_buffer_size)
        // Outgoing frames are bounded by the peer's window; leave room for
        // control events and a peer whose window is larger than ours.
        .max_buffer_size(window.saturating_mul(4).max(1024))
        .with_parser(
            ParserConfig::common().max_incoming_binaries(1).max_incoming_binary_buf_size(options.limits.max_frame_size),
        )
}

/// A socket.io server on its own TCP listener, yielding [`SocketIoSocket`]s.
///
/// Shutting it down (or dropping it) closes every socket with
/// [`CloseCode::GoingAway`] ("server shutting down"), tells each client so,
/// and stops listening.
#[derive(Debug)]
pub struct SocketIoServer {
    acceptor: SocketIoAcceptor,
    io: SocketIo,
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    serve: Option<JoinHandle<()>>,
    path: String,
    tls: bool,
}

impl SocketIoServer {
    /// Listens on `options.bind` and starts serving.
    pub async fn bind(options: ServerOptions) -> Result<SocketIoServer> {
        options.validate()?;
        let (service, io) = configure_builder(SocketIo::builder(), &options).build_svc();
        let listener = TcpListener::bind(options.bind)
            .await
            .map_err(|source| Error::Bind { addr: options.bind.to_string(), source })?;
        let local_addr =
            listener.local_addr().map_err(|source| Error::Bind { addr: options.bind.to_string(), source })?;
        let (nodelay, quickack) = (options.tcp_nodelay, options.tcp_quickack);
        let path = options.path.clone();
        let tls = options.tls.clone();
        let (tls_timeout, max_handshakes) = (options.tls_handshake_timeout, options.max_pending_tls_handshakes);
        let acceptor = SocketIoAcceptor::attach(&io, options, Some(local_addr))?;
        let app = Router::new().fallback_service(service).into_make_service_with_connect_info::<SocketAddr>();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let secure = tls.is_some();
        let served: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match tls {
            None => {
                // See docs/transport-socketio.md section 4: `TCP_NODELAY` so our own
                // writes are never held back by Nagle's algorithm, quick ACKs so the
                // client's are not (its library leaves Nagle on). The no-op tap only
                // gives axum its connect info (the peer address) for this listener.
                let listener = PlainListener::new(listener, nodelay, quickack).tap_io(|_| {});
                Box::pin(axum::serve(listener, app).with_graceful_shutdown(shutdown).into_future())
            }
            Some(config) => {
                // `TCP_NODELAY` is set before the TLS handshake. The no-op tap only
                // gives axum its connect info (the peer address) for this listener.
                let listener =
                    TlsListener::new(listener, config, (nodelay, quickack), tls_timeout, max_handshakes).tap_io(|_| {});
                Box::pin(axum::serve(listener, app).with_graceful_shutdown(shutdown).into_future())
            }
        };
        let serve = tokio::spawn(async move {
            if let Err(err) = served.await {
                warn!(%err, "socket.io server stopped");
            }
        });
        debug!(%local_addr, tls = secure, "socket.io server listening");
        Ok(SocketIoServer { acceptor, io, local_addr, stop: Some(stop), serve: Some(serve), path, tls: secure })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL a client dials: `http://ADDR/PATH/`, or `https://ADDR/PATH/` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}/", self.local_addr, self.path.trim_end_matches('/'))
    }

    /// Whether it serves over TLS ([`ServerOptions::tls`]).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The next accepted socket; `None` after shutdown.
    pub async fn accept(&self) -> Option<SocketIoSocket> {
        self.acceptor.accept().await
    }

    /// The acceptor (connection count, shutdown).
    pub fn acceptor(&self) -> &SocketIoAcceptor {
        &self.acceptor
    }

    /// The socketioxide instance, to add namespaces or inspect connections.
    pub fn socket_io(&self) -> &SocketIo {
        &self.io
    }

    /// Closes every socket with [`CloseCode::GoingAway`], tells each client,
    /// and stops listening. Returns within a few seconds even if clients do
    /// not cooperate.
    pub async fn shutdown(mut self) {
        self.acceptor.shutdown(CloseReason::new(CloseCode::GoingAway, "server shutting down")).await;
        stop_serving(self.io.clone(), self.stop.take(), self.serve.take()).await;
    }
}

/// The sockets [`SocketIoServer::accept`] yields; `None` after shutdown.
#[async_trait::async_trait]
impl peers_sdk::socket::Listener for SocketIoServer {
    fn name(&self) -> &str {
        "socket.io"
    }

    async fn accept(&self) -> Option<peers_sdk::BoxSocket> {
        Some(Box::new(SocketIoServer::accept(self).await?))
    }
}

async fn stop_serving(io: SocketIo, stop: Option<oneshot::Sender<()>>, serve: Option<JoinHandle<()>>) {
    // Ends the WebSocket connections still open (graceful HTTP shutdown leaves
    // upgraded connections alone).
    let _ = tokio::time::timeout(Duration::from_secs(2), io.close()).await;
    if let Some(stop) = stop {
        let _ = stop.send(());
    }
    if let Some(serve) = serve {
        let abort = serve.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), serve).await.is_err() {
            abort.abort();
        }
    }
}

impl Drop for SocketIoServer {
    /// Like [`shutdown`](SocketIoServer::shutdown), in the background.
    fn drop(&mut self) {
        if self.serve.is_none() {
            return;
        }
        let reason = CloseReason::new(CloseCode::GoingAway, "server shutting down");
        let cores = self.acceptor.shutdown_now(&reason);
        let (io, stop, serve) = (self.io.clone(), self.stop.take(), self.serve.take());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = tokio::time::timeout(crate::socket::CLOSE_TIMEOUT * 2, async {
                        for core in cores {
                            core.wait_writer_done().await;
                        }
                    })
                    .await;
                    stop_serving(io, stop, serve).await;
                });
            }
            Err(_) => {
                if let Some(serve) = serve {
                    serve.abort();
                }
            }
        }
    }
}
