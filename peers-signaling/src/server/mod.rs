//! [`SignalingServer`]: the socket.io namespace, standalone on its own address
//! or attached to a `SocketIo` that an existing axum router serves.

// The request-level state (`state.rs`): one process (`state_local.rs`), or
// several instances behind one Redis (`state_redis.rs` and `cluster*.rs`);
// without the `redis` feature, a stand-in that cannot exist (`no_cluster.rs`).
#[cfg(feature = "redis")]
mod cluster;
#[cfg(feature = "redis")]
mod cluster_budgets;
#[cfg(feature = "redis")]
mod cluster_held;
#[cfg(feature = "redis")]
mod cluster_presence;
#[cfg(feature = "redis")]
mod cluster_relay;
#[cfg(feature = "redis")]
mod cluster_sessions;
mod config;
mod connection;
mod http;
mod hub;
pub(crate) mod metrics;
#[cfg(not(feature = "redis"))]
mod no_cluster;
mod outgoing;
mod receive_page;
mod relay_requests;
mod session_requests;
mod state;
mod state_local;
#[cfg(feature = "redis")]
mod state_redis;
mod subscriptions;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use socketioxide::adapter::Adapter;
use socketioxide::{SocketIo, SocketIoBuilder};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use config::ServerConfig;
pub use receive_page::{RECEIVE_PAGE_CSP, RECEIVE_PAGE_PATH, ReceivePage};

use crate::error::{Error, Result};
use crate::notices::NoticeBoxes;
use crate::queue::OfflineQueue;
use crate::ratelimit::Limiters;
use crate::relay::RelayTable;
use crate::sessions::SessionTable;
use crate::store::StoreConfig;
#[cfg(feature = "redis")]
use cluster::Cluster;
use hub::Hub;
#[cfg(not(feature = "redis"))]
use no_cluster::cluster;
use state::SignalingState;

/// The current time in unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How often idle rate-limit keys and stale notices are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// The WebSocket read buffer of each connection. engineioxide's default is
/// 4 KiB per connection, held for the connection's life; signaling messages
/// are about 1 KiB, and the buffer grows for a longer one.
const WS_READ_BUFFER: usize = 1024;

/// Copies a request's URI and header values into allocations of their own.
///
/// engine.io keeps every connection's request head for the connection's life,
/// and hyper parses the URI and header values as slices of its HTTP/1 read
/// buffer (8–16 KiB), so without this each idle WebSocket connection would
/// keep that whole buffer alive (the signaling load bench measured 16 KiB of
/// its 30 KiB per idle device there). [`SignalingServer::bind`] adds it; add it
/// yourself when you [`attach`](SignalingServer::attach) to your own router:
///
/// ```
/// # async fn build(config: peers_signaling::ServerConfig) -> peers_signaling::Result<()> {
/// let (layer, io) = socketioxide::SocketIo::builder().build_layer();
/// let server = peers_signaling::SignalingServer::attach(&io, config)?;
/// let app = axum::Router::<()>::new()
///     .layer(layer)
///     .layer(axum::middleware::map_request(peers_signaling::detach_request_head));
/// # let _ = (server, app);
/// # Ok(())
/// # }
/// ```
pub async fn detach_request_head(mut request: axum::extract::Request) -> axum::extract::Request {
    for value in request.headers_mut().values_mut() {
        if let Ok(copy) = axum::http::HeaderValue::from_bytes(value.as_bytes()) {
            *value = copy;
        }
    }
    if let Ok(uri) = request.uri().to_string().parse() {
        *request.uri_mut() = uri;
    }
    request
}

/// State shared by the server handle, every connection and the timer task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    hub: Mutex<Hub>,
    pub(crate) limiters: Limiters,
    pub(crate) connections: AtomicUsize,
    pub(crate) next_peer: AtomicU64,
    expiry_changed: Notify,
    shutting_down: AtomicBool,
    /// The request-level state: this process's tables, or Redis.
    pub(crate) state: Arc<dyn SignalingState>,
    /// Redis mode: this instance's part (rooms, relay legs, presence).
    #[cfg(feature = "redis")]
    pub(crate) cluster: Option<Arc<Cluster>>,
    /// Each engine.io session's outgoing byte budget, by its `sid`.
    pub(crate) engine_sessions: Arc<outgoing::Sessions>,
    /// Presence subscriptions per address group.
    pub(crate) address_subscriptions: subscriptions::AddressSubscriptions,
    /// The configured public origins, written as registrations sign them.
    pub(crate) public_origins: Arc<[String]>,
}

impl Shared {
    pub(crate) fn hub(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn wake_expiry(&self) {
        self.expiry_changed.notify_one();
    }

    pub(crate) fn refusal(&self) -> Option<String> {
        if self.shutting_down.load(Ordering::Acquire) {
            Some("server is shutting down".into())
        } else if self.connections.load(Ordering::Acquire) >= self.config.max_connections {
            Some(format!("server_full: the server is at its connection limit ({})", self.config.max_connections))
        } else {
            None
        }
    }
}

/// The signaling server: registration by signed challenge, presence, relay of
/// signals with outcomes, the offline queue with expiry notices, ICE
/// configuration, rate limits and metrics.
///
/// Create it with [`bind`](Self::bind) (its own listener) or
/// [`attach`](Self::attach) (a namespace on your `SocketIo`, plus
/// [`http_routes`](Self::http_routes) for `/healthz` and `/metrics`). Dropping
/// it or calling [`shutdown`](Self::shutdown) stops its timer, removes the
/// namespace (disconnecting its clients) and, for a bound server, stops the
/// listener.
#[derive(Debug)]
pub struct SignalingServer {
    shared: Arc<Shared>,
    /// The expiry timer, and in Redis mode the heartbeat and Redis expiry loops.
    tasks: Vec<JoinHandle<()>>,
    /// The `SocketIo` the namespace lives on (ours when bound).
    io: AnyIo,
    listener: Option<Listener>,
}

/// A `SocketIo` with either adapter.
#[derive(Clone, Debug)]
enum AnyIo {
    Local(SocketIo),
    #[cfg(feature = "redis")]
    Redis(SocketIo<cluster::RedisIo>),
}

impl AnyIo {
    /// Disconnects the namespace's clients and removes the namespace.
    async fn remove_namespace(self, namespace: String) {
        async fn remove<A: Adapter>(io: SocketIo<A>, namespace: String) {
            if let Some(operators) = io.of(&namespace) {
                // Only this instance's clients: with the Redis adapter a
                // broadcast would reach every instance's.
                let _ = tokio::time::timeout(Duration::from_secs(2), operators.local().disconnect()).await;
            }
            // socketioxide refuses (panics) to delete "/" under its v4 protocol.
            if namespace != "/" {
                io.delete_ns(&namespace);
            }
        }
        match self {
            AnyIo::Local(io) => remove(io, namespace).await,
            #[cfg(feature = "redis")]
            AnyIo::Redis(io) => remove(io, namespace).await,
        }
    }

    /// Closes every connection of the `SocketIo`.
    async fn close(self) {
        let closing = async {
            match self {
                AnyIo::Local(io) => io.close().await,
                #[cfg(feature = "redis")]
                AnyIo::Redis(io) => io.close().await,
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
    }
}

#[derive(Debug)]
struct Listener {
    io: AnyIo,
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    serve: Option<JoinHandle<()>>,
    /// Where `/metrics` is served when it has an address of its own, and
    /// that server (aborted with the listener).
    metrics_addr: Option<SocketAddr>,
    metrics_serve: Option<JoinHandle<()>>,
}

impl SignalingServer {
    /// Opens the store, restores the queue and registers the namespace on
    /// `io`. Build `io` with a `max_payload` of at least
    /// [`ServerConfig::max_payload`] (socketioxide's default, 100 kB, is enough
    /// for the default body limit), and serve the router with
    /// `into_make_service_with_connect_info::<SocketAddr>()` so per-IP limits
    /// apply. Must be called inside a tokio runtime.
    ///
    /// The Redis store ([`StoreConfig::Redis`]) needs [`bind`](Self::bind):
    /// it brings its own socket.io adapter.
    pub fn attach(io: &SocketIo, config: ServerConfig) -> Result<SignalingServer> {
        Self::attachable(&config)?;
        Self::attach_local(io, config)
    }

    fn attach_local(io: &SocketIo, config: ServerConfig) -> Result<SignalingServer> {
        config.validate()?;
        if matches!(config.store, StoreConfig::Redis { .. }) {
            return Err(Error::InvalidConfig {
                field: "store",
                detail: "the Redis store needs SignalingServer::bind (it brings its own socket.io adapter)".into(),
            });
        }
        let shared = Arc::new(Self::open_state(config, Arc::new(state_local::LocalState))?);
        io.ns(shared.config.namespace.clone(), connection::Namespace { shared: shared.clone() });
        Ok(Self::start(shared, AnyIo::Local(io.clone())))
    }

    /// Refuses what only [`bind`](Self::bind) can serve.
    fn attachable(config: &ServerConfig) -> Result<()> {
        if config.metrics_listen.is_some() {
            return Err(Error::InvalidConfig {
                field: "metrics_listen",
                detail: "needs SignalingServer::bind (an attached server's routes are served by the application)"
                    .into(),
            });
        }
        Ok(())
    }

    fn start(shared: Arc<Shared>, io: AnyIo) -> SignalingServer {
        let mut tasks = vec![tokio::spawn(run_timer(Arc::downgrade(&shared)))];
        tasks.extend(shared.state.spawn_tasks(&shared));
        http::install_recorder();
        metrics::start();
        SignalingServer { shared, tasks, io, listener: None }
    }

    fn builder(config: &ServerConfig) -> SocketIoBuilder {
        SocketIo::builder()
            .req_path(config.path.clone())
            .max_payload(config.max_payload as u64)
            .ws_max_message_size(config.max_payload)
            .ws_max_frame_size(config.max_payload)
            .max_buffer_size(config.queue.per_device_messages.saturating_add(1024))
            .ws_read_buffer_size(WS_READ_BUFFER)
    }

    /// Listens on [`ServerConfig::bind`] and serves the namespace, `/healthz`
    /// and `/metrics`. With [`StoreConfig::Redis`] it first connects to Redis.
    pub async fn bind(config: ServerConfig) -> Result<SignalingServer> {
        config.validate()?;
        let bind = config.bind;
        let listener =
            TcpListener::bind(bind).await.map_err(|source| Error::Bind { addr: bind.to_string(), source })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind { addr: bind.to_string(), source })?;
        let metrics = match config.metrics_listen {
            Some(addr) => Some(serve_metrics(addr, config.metrics_token.as_deref()).await?),
            None => None,
        };
        let (mut server, app) = if matches!(config.store, StoreConfig::Redis { .. }) {
            cluster::attach(config).await?
        } else {
            let (layer, io) = Self::builder(&config).build_layer();
            let server = Self::attach_local(&io, config)?;
            let app = server.http_routes().layer(layer);
            (server, app)
        };
        let io = server.io.clone();
        let metering = outgoing::Metering {
            sessions: server.shared.engine_sessions.clone(),
            max_outgoing_bytes: server.shared.config.max_outgoing_bytes,
            path: server.shared.config.path.clone(),
        };
        let mut app = app
            .layer(axum::middleware::from_fn_with_state(metering, outgoing::meter_requests))
            .layer(axum::middleware::map_request(detach_request_head));
        if let Some(cors) = server.cors_layer() {
            // Outermost: a preflight is answered before socket.io sees it.
            app = app.layer(cors);
        }
        let app = app.into_make_service_with_connect_info::<outgoing::ClientConn>();
        let (stop, stopped) = oneshot::channel::<()>();
        let listener = outgoing::MeteredListener {
            inner: listener,
            stall_timeout: server.shared.config.write_stall_timeout,
            max_per_address: server.shared.config.max_connections_per_address,
            per_address: Arc::default(),
        };
        let served = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        let serve = tokio::spawn(async move {
            if let Err(err) = served.into_future().await {
                warn!(%err, "signaling server stopped");
            }
        });
        info!(%local_addr, namespace = %server.shared.config.namespace, "signaling server listening");
        let (metrics_addr, metrics_serve) = metrics.unzip();
        if let Some(addr) = metrics_addr {
            info!(%addr, "metrics served on their own address");
        }
        server.listener =
            Some(Listener { io, local_addr, stop: Some(stop), serve: Some(serve), metrics_addr, metrics_serve });
        Ok(server)
    }

    fn open_state(config: ServerConfig, state: Arc<dyn SignalingState>) -> Result<Shared> {
        let mut store = config.store.open()?;
        let snapshot = store.load()?;
        let mut queue = OfflineQueue::new(config.queue.clone());
        let restored = snapshot.messages.len();
        queue.restore(snapshot.messages);
        let mut notices = NoticeBoxes::new(config.notices.clone());
        notices.restore(snapshot.notices);
        let mut sessions = SessionTable::new(config.sessions.clone());
        sessions.restore(snapshot.sessions);
        let relays = RelayTable::new(config.relay.clone());
        if restored > 0 {
            info!(messages = restored, notices = notices.len(), "restored the offline queue");
        }
        let public_origins =
            config.public_origins.iter().filter_map(|origin| crate::protocol::server_origin(origin).ok()).collect();
        Ok(Shared {
            public_origins,
            address_subscriptions: subscriptions::AddressSubscriptions::new(config.max_subscriptions_per_address),
            limiters: Limiters::new(&config.rate_limits, &config.sessions),
            config,
            hub: Mutex::new(Hub::new(queue, notices, sessions, relays, store)),
            connections: AtomicUsize::new(0),
            next_peer: AtomicU64::new(1),
            expiry_changed: Notify::new(),
            shutting_down: AtomicBool::new(false),
            state,
            #[cfg(feature = "redis")]
            cluster: None,
            engine_sessions: Arc::default(),
        })
    }

    /// `/healthz` (200 "ok"), `/metrics` (Prometheus text, behind
    /// [`ServerConfig::metrics_token`] if set; absent when
    /// [`ServerConfig::metrics_listen`] serves it elsewhere) and the receive
    /// page when [`ServerConfig::receive_page`] is set, to merge into your
    /// router.
    pub fn http_routes(&self) -> Router {
        let config = &self.shared.config;
        let routes = match config.metrics_listen {
            Some(_) => http::health(),
            None => http::health().merge(http::metrics(config.metrics_token.as_deref())),
        };
        match &config.receive_page {
            Some(page) => routes.merge(page.routes()),
            None => routes,
        }
    }

    /// The CORS layer for [`ServerConfig::cors_origins`] (`None` when the
    /// list is empty). [`bind`](Self::bind) adds it; add it to your router
    /// (outermost) when you [`attach`](Self::attach).
    pub fn cors_layer(&self) -> Option<tower_http::cors::CorsLayer> {
        http::cors(&self.shared.config.cors_origins)
    }

    /// The address `/metrics` is served on when
    /// [`ServerConfig::metrics_listen`] is set (the bound one, with its port).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.metrics_addr)
    }

    /// The address a bound server listens on (`None` when attached).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().map(|l| l.local_addr)
    }

    /// The base URL of a bound server (`http://ADDR`); clients dial it.
    pub fn url(&self) -> Option<String> {
        self.local_addr().map(|addr| format!("http://{addr}"))
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }

    /// Messages and bytes in this process's offline queue now (with the
    /// Redis store the queue lives in Redis and this is `(0, 0)`).
    pub fn queue_depth(&self) -> (usize, usize) {
        self.shared.hub().queue_mut().depth()
    }

    /// Stops accepting connections, disconnects every client of the namespace
    /// and, for a bound server, stops listening. The store keeps what is queued.
    pub async fn shutdown(mut self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        self.io.clone().remove_namespace(self.shared.config.namespace.clone()).await;
        // After the clients are gone, so that Redis mode's relay closes reach
        // the other instances.
        self.shared.state.flush(&self.shared, Duration::from_secs(1)).await;
        self.tasks.iter().for_each(JoinHandle::abort);
        if let Some(mut listener) = self.listener.take() {
            if let Some(metrics) = listener.metrics_serve.take() {
                metrics.abort();
            }
            listener.io.clone().close().await;
            if let Some(stop) = listener.stop.take() {
                let _ = stop.send(());
            }
            if let Some(serve) = listener.serve.take() {
                let abort = serve.abort_handle();
                if tokio::time::timeout(Duration::from_secs(2), serve).await.is_err() {
                    abort.abort();
                }
            }
        }
        debug!("signaling server shut down");
    }
}

impl Drop for SignalingServer {
    /// Like [`shutdown`](SignalingServer::shutdown), in the background.
    fn drop(&mut self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        self.tasks.iter().for_each(JoinHandle::abort);
        if self.listener.is_none()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // Attached: remove the namespace from the owner's `SocketIo`.
            runtime.spawn(self.io.clone().remove_namespace(self.shared.config.namespace.clone()));
        }
        if let Some(mut listener) = self.listener.take() {
            if let Some(metrics) = listener.metrics_serve.take() {
                metrics.abort();
            }
            if let Some(stop) = listener.stop.take() {
                let _ = stop.send(());
            }
            let io = listener.io.clone();
            let serve = listener.serve.take();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    io.close().await;
                    if let Some(serve) = serve {
                        serve.abort();
                    }
                });
            }
        }
    }
}

/// Serves `/metrics` (and `/healthz`) on `addr`; returns the bound address
/// and the serving task.
async fn serve_metrics(addr: SocketAddr, token: Option<&str>) -> Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr: addr.to_string(), source })?;
    let bound = listener.local_addr().map_err(|source| Error::Bind { addr: addr.to_string(), source })?;
    let app = http::health().merge(http::metrics(token));
    let serve = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            warn!(%err, "the metrics server stopped");
        }
    });
    Ok((bound, serve))
}

/// Expires queued messages at their deadlines and sweeps idle state.
async fn run_timer(shared: std::sync::Weak<Shared>) {
    let mut next_sweep = tokio::time::Instant::now() + SWEEP_INTERVAL;
    loop {
        let Some(strong) = shared.upgrade() else { return };
        let now = now_ms();
        let next = strong.state.expire(&strong, now);
        if tokio::time::Instant::now() >= next_sweep {
            strong.limiters.sweep();
            next_sweep = tokio::time::Instant::now() + SWEEP_INTERVAL;
        }
        let wait = next.map_or(SWEEP_INTERVAL, |deadline| Duration::from_millis(deadline.saturating_sub(now)));
        let wake = Arc::clone(&strong);
        drop(strong);
        tokio::select! {
            () = tokio::time::sleep(wait.min(SWEEP_INTERVAL)) => {}
            () = wake.expiry_changed.notified() => {}
        }
    }
}
