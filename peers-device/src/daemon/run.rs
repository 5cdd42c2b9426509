//! [`Daemon`]: a device that syncs its groups with the devices it trusts, as
//! `peers run` runs it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use peers_sdk::{ConnectionConfig, DeviceId, DeviceKeys, TrustLevel, TrustStore};
use peers_signaling::ClientOptions as SignalingOptions;
use peers_transport_socketio::{ClientOptions, ServerOptions, SocketIoServer};
use peers_transport_webrtc::{WebRtcConfig, WebRtcEndpoint};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use super::control::{self, ControlRequest, ControlResponse};
use super::data_dir::DataDir;
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
    control: Option<JoinHandle<()>>,
    share_code: String,
    /// Held for as long as the daemon runs.
    _signaling: Option<(Arc<SignalingServerLink>, WebRtcListener)>,
    /// Address changes, turned into `network_changed` calls.
    _network: NetworkMonitor,
}

impl Daemon {
    /// Loads the identity and trusted devices, opens the groups' databases,
    /// listens, dials every trusted member, and answers the control socket.
    pub async fn start(options: DaemonOptions) -> Result<Daemon> {
        let data = &options.data_dir;
        let keys = Arc::new(data.keys()?);
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
        let mut connection = ConnectionConfig::new(keys.clone(), trust);
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
        for device in &trusted {
            let info = device.info()?;
            if !device.groups.iter().any(|g| options.groups.contains(g)) {
                continue;
            }
            if !info.addresses.is_empty() {
                dialer.set_urls(info.device_id, info.addresses.clone());
            }
            if !info.addresses.is_empty() || signaling.is_some() {
                manager.keep_connected(info.device_id);
            }
        }
        manager.add_dialer(Arc::new(dialer));
        let listener = listener.map(|server| SocketIoListener::start(manager.clone(), server, 64));
        if let Some(listener) = &listener {
            info!(url = listener.url(), "listening");
        }
        let control = control::serve(data.control_socket(), handler(manager.clone(), engines.clone()))?;
        let network = NetworkMonitor::start(NETWORK_POLL);
        tokio::spawn(on_network_change(network.changes(), manager.clone(), signaling.as_ref().map(|s| s.0.clone())));
        Ok(Daemon {
            manager,
            engines,
            listener,
            control: Some(control),
            share_code,
            _signaling: signaling,
            _network: network,
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
        if let Some(control) = self.control.take() {
            control.abort();
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

fn handler(manager: ConnectionManager, engines: HashMap<GroupId, SqliteSyncEngine>) -> control::Handler {
    let engines = Arc::new(engines);
    Arc::new(move |request| {
        let (manager, engines) = (manager.clone(), engines.clone());
        Box::pin(async move {
            let result = match request {
                ControlRequest::Status => Ok(ControlResponse::Status { table: render_status(&manager.status()) }),
                ControlRequest::Put { group, key, value } => match engines.get(&group) {
                    Some(engine) => engine.put(&key, value.as_bytes()).await.map(|_| ControlResponse::Done),
                    None => Err(Error::UnknownGroup(group.to_string())),
                },
                ControlRequest::Get { group, key } => match engines.get(&group) {
                    Some(engine) => engine
                        .get(&key)
                        .await
                        .map(|v| ControlResponse::Value { value: v.map(|v| String::from_utf8_lossy(&v).into_owned()) }),
                    None => Err(Error::UnknownGroup(group.to_string())),
                },
            };
            result.unwrap_or_else(|e| ControlResponse::Error { message: e.to_string() })
        })
    })
}
