//! Helpers for the device-layer scenario tests (`tests/device_*.rs`): devices
//! with a `ConnectionManager` and SQLite engines on disk, linked over the real
//! transports on loopback (socket.io listeners and dialers, the signaling
//! server's frame relay, WebRTC signaled through the server or through device
//! messages).
//!
//! [`TestDevice`] lives on the test's runtime. [`FreezableDevice`] runs on a
//! runtime of its own thread, so a test can stop every one of its tasks at once,
//! as a suspended process would be stopped, and start them again.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peers_device::sync::{EngineOptions, SqliteSyncEngine};
use peers_device::transports::{
    DeviceMessageSignaling, ReconnectOptions, SignalingServerLink, SocketIoDialer, SocketIoListener, WebRtcDialer,
    WebRtcListener,
};
use peers_device::{ConnectionClass, ConnectionManager, GroupId, ManagerConfig, ManagerEvent};
use peers_sdk::rpc::{RemoteError, RemoteErrorCode};
use peers_sdk::{ConnectionConfig, DeviceId, DeviceInfo, DeviceKeys, TrustLevel};
use peers_transport_socketio::{ClientOptions, ServerOptions, SocketIoServer};
use peers_transport_webrtc::{WebRtcConfig, WebRtcEndpoint};
use tempfile::TempDir;
use tokio::sync::{mpsc, oneshot};

/// How long any one wait of these tests may take. Generous: the machine running
/// them may be busy; a passing test takes a fraction of it.
pub const WAIT: Duration = Duration::from_secs(30);

/// The RPC the tests call to prove a connection carries traffic: answers its
/// argument after a short delay, so calls are in flight while links change.
pub const ECHO: &str = "test:echo";

/// A manager config trusting every device, adjusted by `tune`.
pub fn config(keys: &Arc<DeviceKeys>, tune: impl FnOnce(&mut ManagerConfig)) -> ManagerConfig {
    let trust = |_: &DeviceInfo| TrustLevel::Trusted;
    let mut config = ManagerConfig::new(ConnectionConfig::new(keys.clone(), trust));
    tune(&mut config);
    config
}

/// A device: keys, a manager, and a SQLite database per group in a directory of
/// its own. Its listener, signaling link and WebRTC endpoint live as long as it.
#[derive(Debug)]
pub struct TestDevice {
    /// Its keys.
    pub keys: Arc<DeviceKeys>,
    /// Its manager.
    pub manager: ConnectionManager,
    config: ManagerConfig,
    data: Arc<TempDir>,
    groups: Vec<(String, Vec<DeviceId>)>,
    engines: HashMap<String, SqliteSyncEngine>,
    listener: Option<SocketIoListener>,
    online: Option<Online>,
}

/// A device's registration with the signaling server and its WebRTC endpoint.
#[derive(Debug)]
struct Online {
    link: SignalingServerLink,
    endpoint: Arc<WebRtcEndpoint>,
    _listener: WebRtcListener,
}

impl TestDevice {
    /// A device with the manager's default settings.
    pub fn new(name: &str) -> TestDevice {
        TestDevice::with(name, |_| {})
    }

    /// A device whose manager settings `tune` adjusts.
    pub fn with(name: &str, tune: impl FnOnce(&mut ManagerConfig)) -> TestDevice {
        let keys = Arc::new(DeviceKeys::generate(name).expect("device keys"));
        let config = config(&keys, tune);
        let data = Arc::new(tempfile::tempdir().expect("a data directory"));
        TestDevice::start(keys, config, data)
    }

    fn start(keys: Arc<DeviceKeys>, config: ManagerConfig, data: Arc<TempDir>) -> TestDevice {
        let manager = ConnectionManager::new(config.clone());
        manager.on_connection(|connection, _| {
            connection.expose_rpc(ECHO, |n: u64| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok::<_, RemoteError>(n)
            });
        });
        TestDevice {
            keys,
            manager,
            config,
            data,
            groups: Vec::new(),
            engines: HashMap::new(),
            listener: None,
            online: None,
        }
    }

    /// This device.
    pub fn id(&self) -> DeviceId {
        self.keys.device_id()
    }

    /// Joins `group` with `members` (other devices): opens the group's database
    /// in this device's directory and adds it to the manager.
    pub async fn join(&mut self, group: &str, members: &[DeviceId]) -> SqliteSyncEngine {
        let id = GroupId::new(group).expect("a valid group id");
        let path: PathBuf = self.data.path().join(format!("{group}.sqlite3"));
        let engine = SqliteSyncEngine::open(path, id, self.id(), EngineOptions::default()).await.expect("engine");
        self.manager.add_group(Arc::new(engine.clone()), members.iter().copied()).await;
        self.groups.push((group.to_owned(), members.to_vec()));
        self.engines.insert(group.to_owned(), engine.clone());
        engine
    }

    /// The engine of `group`.
    ///
    /// # Panics
    ///
    /// When this device did not join it.
    pub fn engine(&self, group: &str) -> &SqliteSyncEngine {
        self.engines.get(group).unwrap_or_else(|| panic!("not in group {group}"))
    }

    /// Accepts socket.io connections on 127.0.0.1 (any port) from now on;
    /// returns the URL to dial.
    pub async fn listen(&mut self) -> String {
        if self.listener.is_none() {
            let server = SocketIoServer::bind(ServerOptions::default()).await.expect("socket.io listener");
            self.listener = Some(SocketIoListener::start(self.manager.clone(), server));
        }
        self.listener.as_ref().map(|l| l.url().to_owned()).unwrap_or_default()
    }

    /// Keeps `peer` connected, dialing it over socket.io at `url` (with the
    /// manager's backoff, redialing after drops).
    pub fn keep_dialing(&self, peer: DeviceId, url: &str) {
        let dialer = SocketIoDialer::new(ClientOptions::default());
        dialer.set_urls(peer, vec![url.to_owned()]);
        self.manager.add_dialer(Arc::new(dialer));
        self.manager.keep_connected(peer);
    }

    /// Dials `url` once over socket.io and runs the handshake, expecting
    /// `expected` (any device if `None`).
    pub async fn dial_once(&self, url: &str, expected: Option<DeviceId>) -> peers_device::Result<DeviceId> {
        let socket =
            peers_transport_socketio::connect(url, ClientOptions::default()).await.expect("socket.io connects");
        self.manager.dial(Box::new(socket), expected).await
    }

    /// Registers with the signaling server at `url` and starts accepting WebRTC
    /// connections signaled through it and relays asked for through it.
    pub async fn go_online(&mut self, url: &str) {
        let config = WebRtcConfig::default();
        let link = SignalingServerLink::start(
            self.manager.clone(),
            url.to_owned(),
            self.keys.clone(),
            peers_signaling::SignalingClientOptions::default(),
            ReconnectOptions::default(),
            config.connect_timeout,
        );
        link.registered(WAIT).await.expect("registered with the signaling server");
        let endpoint = Arc::new(WebRtcEndpoint::new(link.signaling.clone(), config));
        let listener = WebRtcListener::start(self.manager.clone(), endpoint.clone());
        self.online = Some(Online { link, endpoint, _listener: listener });
    }

    fn online(&self) -> &Online {
        self.online.as_ref().expect("go_online first")
    }

    /// Waits until the signaling server holds this device's trust set as its
    /// allow list (after trusting a device that is about to dial it).
    pub async fn sync_allow(&self) {
        self.online().link.sync_allow().await;
    }

    /// Adds the signaling server's frame relay as a dialer.
    pub fn dial_through_relay(&self) {
        self.manager.add_dialer(self.online().link.relay.clone());
    }

    /// Adds WebRTC, signaled through the signaling server, as a dialer.
    pub fn dial_webrtc(&self) {
        self.manager.add_dialer(Arc::new(WebRtcDialer::new(self.online().endpoint.clone())));
    }

    /// Opens one relayed connection to `peer` through the signaling server.
    pub async fn relay_once(&self, peer: DeviceId) -> peers_device::Result<DeviceId> {
        let socket = peers_device::Dialer::dial(&*self.online().link.relay, peer).await.expect("a relay");
        self.manager.dial(socket, Some(peer)).await
    }

    /// Opens one WebRTC connection to `peer`, signaled through the server.
    pub async fn webrtc_once(&self, peer: DeviceId) -> peers_device::Result<DeviceId> {
        let socket = self.online().endpoint.connect(peer).await.expect("a WebRTC connection");
        self.manager.dial(Box::new(socket), Some(peer)).await
    }

    /// A WebRTC endpoint signaling through device messages over this device's
    /// connections (no server), accepting into the manager; returns the dialer.
    pub fn webrtc_over_device_messages(&self) -> (WebRtcDialer, WebRtcListener) {
        let signaling = Arc::new(DeviceMessageSignaling::new(self.manager.clone()));
        let endpoint = Arc::new(WebRtcEndpoint::new(signaling, WebRtcConfig::default()));
        (WebRtcDialer::new(endpoint.clone()), WebRtcListener::start(self.manager.clone(), endpoint))
    }

    /// The class of the connection calls to `peer` use now.
    pub fn active_class(&self, peer: &DeviceId) -> Option<ConnectionClass> {
        self.manager.status().active(peer).map(|c| c.class)
    }

    /// Every event recorded in the manager's history.
    pub fn history(&self) -> Vec<ManagerEvent> {
        self.manager.status().history.into_iter().map(|h| h.event).collect()
    }

    /// Goes offline: closes every connection and the listener, and closes the
    /// databases. [`restart`](Self::restart) brings the same device back.
    pub async fn stop(mut self) -> StoppedDevice {
        self.manager.shutdown().await;
        if let Some(listener) = self.listener.take() {
            listener.shutdown().await;
        }
        StoppedDevice { keys: self.keys, config: self.config, data: self.data, groups: self.groups }
    }
}

/// A device that went offline, with its keys and databases.
#[derive(Debug)]
pub struct StoppedDevice {
    keys: Arc<DeviceKeys>,
    config: ManagerConfig,
    data: Arc<TempDir>,
    groups: Vec<(String, Vec<DeviceId>)>,
}

impl StoppedDevice {
    /// Starts the device again: a new manager with the same keys and settings,
    /// its groups reopened from their databases.
    pub async fn restart(self) -> TestDevice {
        let mut device = TestDevice::start(self.keys, self.config, self.data);
        for (group, members) in self.groups {
            device.join(&group, &members).await;
        }
        device
    }
}

enum Command {
    /// Block the device's thread until the sender is dropped; acknowledge first.
    Freeze(oneshot::Sender<()>, std::sync::mpsc::Receiver<()>),
}

/// A device (a manager and a socket.io listener, no groups) running on a
/// single-threaded runtime of its own thread. Every task of its connections runs
/// there, so [`freeze`](Self::freeze) stops it answering anything, as `SIGSTOP`
/// would stop a process, while its sockets stay open.
#[derive(Debug)]
pub struct FreezableDevice {
    /// Its keys.
    pub keys: Arc<DeviceKeys>,
    /// Its manager (its tasks run on the device's own thread).
    pub manager: ConnectionManager,
    /// Its socket.io URL.
    pub url: String,
    commands: mpsc::UnboundedSender<Command>,
    thaw: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

impl FreezableDevice {
    /// Starts the device on its own thread.
    pub async fn start(name: &str) -> FreezableDevice {
        let keys = Arc::new(DeviceKeys::generate(name).expect("device keys"));
        let config = config(&keys, |_| {});
        let (ready_tx, ready_rx) = oneshot::channel();
        let (commands, mut inbox) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name(format!("device-{name}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                runtime.block_on(async move {
                    let manager = ConnectionManager::new(config);
                    let server = SocketIoServer::bind(ServerOptions::default()).await.expect("socket.io listener");
                    let listener = SocketIoListener::start(manager.clone(), server);
                    let _ = ready_tx.send((manager.clone(), listener.url().to_owned()));
                    while let Some(Command::Freeze(frozen, thaw)) = inbox.recv().await {
                        let _ = frozen.send(());
                        // Blocks the runtime's only thread: nothing of this device runs.
                        let _ = thaw.recv();
                    }
                    manager.shutdown().await;
                    listener.shutdown().await;
                });
            })
            .expect("a device thread");
        let (manager, url) = ready_rx.await.expect("the device thread started");
        FreezableDevice { keys, manager, url, commands, thaw: std::sync::Mutex::new(None) }
    }

    /// This device.
    pub fn id(&self) -> DeviceId {
        self.keys.device_id()
    }

    /// Stops every task of the device until [`thaw`](Self::thaw).
    pub async fn freeze(&self) {
        let (thaw, frozen_until) = std::sync::mpsc::channel();
        let (frozen, is_frozen) = oneshot::channel();
        self.commands.send(Command::Freeze(frozen, frozen_until)).expect("the device thread runs");
        is_frozen.await.expect("the device froze");
        *self.thaw.lock().unwrap_or_else(|e| e.into_inner()) = Some(thaw);
    }

    /// Lets the device run again.
    pub fn thaw(&self) {
        self.thaw.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl Drop for FreezableDevice {
    fn drop(&mut self) {
        // Thawed, the thread sees its command channel closed and shuts down.
        self.thaw();
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Waits until `check` holds, polling every 10 ms.
///
/// # Panics
///
/// When it does not within [`WAIT`].
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {WAIT:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the future `check` makes returns true, polling every 10 ms.
///
/// # Panics
///
/// When it does not within [`WAIT`].
pub async fn wait_until_async<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {WAIT:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `engine` holds `value` at `key` (`None`: not set).
pub async fn wait_for_value(engine: &SqliteSyncEngine, key: &str, value: Option<&[u8]>) {
    let what = format!("{key} to become {:?}", value.map(String::from_utf8_lossy));
    wait_until_async(&what, || async { engine.get(key).await.expect("read").as_deref() == value }).await;
}

/// Whether `result` is the remote side's refusal with `code`.
pub fn refused_with<T>(result: &peers_sdk::Result<T>, code: RemoteErrorCode) -> bool {
    matches!(result, Err(peers_sdk::Error::Remote(e)) if e.code == code)
}
