//! [`Daemon`]: a device that syncs its groups with the devices it trusts, as
//! `peers run` runs it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use peers_sdk::{ConnectionConfig, DeviceId, DeviceKeys, TrustLevel, TrustStore};
use peers_signaling::ClientOptions as SignalingOptions;
use peers_transport_socketio::{ClientOptions, ServerOptions, SocketIoServer};
use peers_transport_webrtc::{WebRtcConfig, WebRtcEndpoint};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use super::control::{self, ControlRequest, ControlResponse};
use super::data_dir::{DataDir, DataDirLock};
use super::members::Members;
use super::table::render_status;
use crate::error::{Error, Result};
use crate::group::GroupId;
use crate::manager::{ConnectionManager, ManagerConfig};
use crate::netmon::NetworkMonitor;
use crate::sync::{EngineOptions, SqliteSyncEngine};
use crate::transports::{
    ReconnectOptions, SignalingServerLink, SocketIoDialer, SocketIoListener, WebRtcDialer, WebRtcListener,
};

/// How often the daemon reads its interface addresses to notice a network change.
const NETWORK_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a starting daemon waits for a `peers` command that holds the data
/// directory for a moment.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Settings of [`Daemon::start`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DaemonOptions {
    /// Identity, trusted devices and databases.
    pub data_dir: DataDir,
    /// Where to accept socket.io connections (`None`: dial only).
    pub listen: Option<SocketAddr>,
    /// URLs other devices should dial, put in this device's share code. Default:
    /// the listening URL.
    pub advertise: Vec<String>,
    /// Groups to sync; their members are the trusted devices in them.
    pub groups: Vec<GroupId>,
    /// Signaling servers to register with (`http://host:port/`): members are
    /// then also reached over WebRTC signaled through them, and through their
    /// frame relay as the last resort. Several URLs are instances of one
    /// deployment to fail over between, in order of preference; empty: none.
    pub signaling: Vec<String>,
}

impl DaemonOptions {
    /// A daemon on `data_dir` listening on `listen`, syncing `groups`.
    pub fn new(data_dir: DataDir, listen: Option<SocketAddr>, groups: Vec<GroupId>) -> Self {
        DaemonOptions { data_dir, listen, advertise: Vec::new(), groups, signaling: Vec::new() }
    }
}

/// A running device.
#[derive(Debug)]
pub struct Daemon {
    manager: ConnectionManager,
    engines: HashMap<GroupId, SqliteSyncEngine>,
    listener: Option<SocketIoListener>,
    /// The control socket's task and path.
    control: Option<(JoinHandle<()>, PathBuf)>,
    share_code: String,
    /// Held for as long as the daemon runs.
    _signaling: Option<(Arc<SignalingServerLink>, WebRtcListener)>,
    /// Address changes, turned into `network_changed` calls.
    _network: NetworkMonitor,
    /// The data directory's lock, held for the daemon's whole life.
    _lock: DataDirLock,
}

impl Daemon {
    /// Takes the data directory's lock (waiting up to 5 s for a `peers`
    /// command holding it, failing with [`Error::DataDirInUse`] if another
    /// process keeps it), loads the identity
    /// and trusted devices, opens the groups' databases, listens, dials every
    /// trusted member, and answers the control socket. The lock is held until
    /// the daemon is dropped.
    pub async fn start(options: DaemonOptions) -> Result<Daemon> {
        let data = &options.data_dir;
        let keys = Arc::new(data.keys()?);
        let lock = data.lock(LOCK_WAIT).await?;
        let trust = TrustStore::new(TrustLevel::Unknown);
        let trusted = data.trusted()?;
        for device in &trusted {
            trust.set(device.info()?.device_id, TrustLevel::Trusted);
        }
        let listener = match options.listen {
            Some(bind) => {
                let mut server_options = ServerOptions::default();
                server_options.bind = bind;
                let server = SocketIoServer::bind(server_options)
                    .await
                    .map_err(|e| Error::Config { field: "listen", reason: e.to_string() })?;
                Some(server)
            }
            None => None,
        };
        let mut advertise = options.advertise.clone();
        if advertise.is_empty()
            && let Some(server) = &listener
        {
            advertise.push(server.url());
        }
        let mut connection = ConnectionConfig::new(keys.clone(), trust.clone());
        connection.handshake.addresses = advertise.clone();
        let share_code = keys.info(advertise)?.to_share_code();
        let manager = ConnectionManager::new(ManagerConfig::new(connection));

        let mut engines = HashMap::new();
        let me = keys.device_id();
        for group in &options.groups {
            std::fs::create_dir_all(data.root().join("groups"))
                .map_err(|source| Error::Io { what: "create the groups directory", source })?;
            let engine =
                SqliteSyncEngine::open(data.group_db(group), group.clone(), me, EngineOptions::default()).await?;
            let members: Vec<DeviceId> = data.members(group)?.iter().map(|i| i.device_id).collect();
            manager.add_group(Arc::new(engine.clone()), members).await;
            engines.insert(group.clone(), engine);
        }

        let dialer = SocketIoDialer::new(ClientOptions::default());
        let signaling = match options.signaling.is_empty() {
            false => Some(start_signaling(&manager, &options.signaling, &keys).await?),
            true => None,
        };
        let members = Arc::new(Members {
            data: data.clone(),
            trust,
            manager: manager.clone(),
            dialer: dialer.clone(),
            groups: options.groups.clone(),
            signaling: signaling.is_some(),
            writing: tokio::sync::Mutex::new(()),
        });
        for device in &trusted {
            members.admit(&device.info()?, &device.groups).await?;
        }
        manager.add_dialer(Arc::new(dialer));
        let listener = listener.map(|server| SocketIoListener::start(manager.clone(), server));
        if let Some(listener) = &listener {
            info!(url = listener.url(), "listening");
        }
        let socket = data.control_socket();
        let control = control::serve(socket.clone(), handler(manager.clone(), engines.clone(), members))?;
        let network = NetworkMonitor::start(NETWORK_POLL);
        tokio::spawn(on_network_change(network.changes(), manager.clone(), signaling.as_ref().map(|s| s.0.clone())));
        Ok(Daemon {
            manager,
            engines,
            listener,
            control: Some((control, socket)),
            share_code,
            _signaling: signaling,
            _network: network,
            _lock: lock,
        })
    }

    /// The manager.
    pub fn manager(&self) -> &ConnectionManager {
        &self.manager
    }

    /// The engine of `group`.
    pub fn engine(&self, group: &GroupId) -> Option<&SqliteSyncEngine> {
        self.engines.get(group)
    }

    /// This device's share code (with the advertised URLs).
    pub fn share_code(&self) -> &str {
        &self.share_code
    }

    /// The URL this device listens on.
    pub fn url(&self) -> Option<&str> {
        self.listener.as_ref().map(SocketIoListener::url)
    }

    /// Closes every connection and stops listening.
    pub async fn shutdown(mut self) {
        if let Some((control, socket)) = self.control.take() {
            control.abort();
            let _ = std::fs::remove_file(socket);
        }
        self.manager.shutdown().await;
        if let Some(listener) = self.listener.take() {
            listener.shutdown().await;
        }
    }
}

/// Tells the manager and the signaling link about each network change, until
/// the monitor stops.
async fn on_network_change(
    mut changes: watch::Receiver<u64>,
    manager: ConnectionManager,
    link: Option<Arc<SignalingServerLink>>,
) {
    while changes.changed().await.is_ok() {
        manager.network_changed();
        if let Some(link) = &link {
            link.network_changed();
        }
    }
}

/// Registers with the signaling server at `urls` and adds WebRTC (signaled
/// through it) and its frame relay as ways to reach devices.
async fn start_signaling(
    manager: &ConnectionManager,
    urls: &[String],
    keys: &Arc<DeviceKeys>,
) -> Result<(Arc<SignalingServerLink>, WebRtcListener)> {
    for url in urls {
        url::Url::parse(url).map_err(|e| Error::Config { field: "signaling", reason: format!("{url}: {e}") })?;
    }
    let config = WebRtcConfig::default();
    // Registers in the background and again after every disconnection.
    let link = SignalingServerLink::start(
        manager.clone(),
        urls.to_vec(),
        keys.clone(),
        SignalingOptions::default(),
        ReconnectOptions::default(),
        config.connect_timeout,
    );
    let endpoint = Arc::new(WebRtcEndpoint::new(link.signaling.clone(), config));
    let listener = WebRtcListener::start(manager.clone(), endpoint.clone());
    manager.add_dialer(Arc::new(WebRtcDialer::new(endpoint)));
    manager.add_dialer(link.relay.clone());
    Ok((Arc::new(link), listener))
}

fn handler(
    manager: ConnectionManager,
    engines: HashMap<GroupId, SqliteSyncEngine>,
    members: Arc<Members>,
) -> control::Handler {
    let engines = Arc::new(engines);
    Arc::new(move |request| {
        let (manager, engines, members) = (manager.clone(), engines.clone(), members.clone());
        Box::pin(async move {
            let engine = |group: &GroupId| engines.get(group).ok_or_else(|| Error::UnknownGroup(group.to_string()));
            let result = match request {
                ControlRequest::Status => Ok(ControlResponse::Status { table: render_status(&manager.status()) }),
                ControlRequest::Put { group, key, value } => match engine(&group) {
                    Ok(engine) => engine.put(&key, &value).await.map(|_| ControlResponse::Done),
                    Err(e) => Err(e),
                },
                ControlRequest::Get { group, key } => match engine(&group) {
                    Ok(engine) => engine.get(&key).await.map(|value| ControlResponse::Value { value }),
                    Err(e) => Err(e),
                },
                ControlRequest::Trust { share_code, groups } => {
                    members.trust(&share_code, &groups).await.map(|(info, groups)| ControlResponse::Trusted {
                        device: info.device_id.to_string(),
                        user: info.user_id,
                        groups,
                    })
                }
                ControlRequest::Untrust { device } => members
                    .untrust(&device)
                    .await
                    .map(|info| ControlResponse::Untrusted { device: info.device_id.to_string() }),
            };
            result.unwrap_or_else(|e| ControlResponse::Error { message: e.to_string() })
        })
    })
}
