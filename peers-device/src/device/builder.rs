//! [`DeviceBuilder`]: keys, trust, groups, listeners, dialers and a signaling
//! server wired with defaults.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use peers_sdk::{ConnectionConfig, DeviceInfo, DeviceKeys, TrustLevel, TrustPolicy, TrustStore};
use peers_signaling::SignalingClientOptions;
use peers_transport_socketio::{ClientOptions, ServerOptions, SocketIoServer};
use peers_transport_webrtc::{WebRtcConfig, WebRtcEndpoint};
use tracing::info;

use super::advertise::advertise_urls;
use super::{Device, DeviceInner, SignalingParts};
use crate::error::{Error, Result};
use crate::manager::{ConnectionManager, ManagerConfig};
use crate::netmon::{NetworkMonitor, interface_ips};
use crate::sync::SyncGroup;
use crate::transports::{
    ReconnectOptions, SignalingServerLink, SocketIoDialer, SocketIoListener, WebRtcDialer, WebRtcListener,
};

/// How often a device reads its interface addresses to notice a network change.
const NETWORK_POLL: Duration = Duration::from_secs(1);

/// Changes to the manager's settings, from [`DeviceBuilder::manager_config`].
type Tune = Box<dyn FnOnce(&mut ManagerConfig) + Send>;

/// Builds a [`Device`]; from [`Device::builder`]. Everything but the keys has a
/// default: no listener (dial only), no signaling server, no groups, and only
/// the devices added with [`Device::add_peer`] trusted.
#[must_use]
pub struct DeviceBuilder {
    keys: Option<Arc<DeviceKeys>>,
    trust: Option<Arc<dyn TrustPolicy>>,
    groups: Vec<Arc<dyn SyncGroup>>,
    listen: Option<SocketAddr>,
    advertise: Vec<String>,
    signaling: Vec<String>,
    tune: Option<Tune>,
    watch_network: bool,
}

impl std::fmt::Debug for DeviceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBuilder")
            .field("device", &self.keys.as_ref().map(|k| k.device_id()))
            .field("groups", &self.groups.iter().map(|g| g.group_id().to_string()).collect::<Vec<_>>())
            .field("listen", &self.listen)
            .field("signaling", &self.signaling)
            .finish_non_exhaustive()
    }
}

impl DeviceBuilder {
    pub(super) fn new() -> Self {
        DeviceBuilder {
            keys: None,
            trust: None,
            groups: Vec::new(),
            listen: None,
            advertise: Vec::new(),
            signaling: Vec::new(),
            tune: None,
            watch_network: true,
        }
    }

    /// This device's identity (required). Keep it across runs (a daemon keeps it
    /// in its data directory): other devices trust this key.
    pub fn keys(mut self, keys: Arc<DeviceKeys>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Who else may connect: asked for every device not added with
    /// [`Device::add_peer`] (which are always trusted). Default: nobody else.
    pub fn trust_policy(mut self, policy: impl TrustPolicy) -> Self {
        self.trust = Some(Arc::new(policy));
        self
    }

    /// A group to sync, with the devices later added to it by
    /// [`Device::add_peer`]. Any [`SyncGroup`] will do; the reference engine is
    /// [`SqliteSyncEngine`](crate::sync::SqliteSyncEngine).
    pub fn group(mut self, group: Arc<dyn SyncGroup>) -> Self {
        self.groups.push(group);
        self
    }

    /// Accepts socket.io connections on `addr` (`0.0.0.0:0` for every
    /// interface and any port). Default: dial only.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// The URLs other devices should dial, put in [`Device::info`]. Default:
    /// the listener's URL, or one per interface address when it listens on
    /// every interface (never `0.0.0.0`).
    pub fn advertise(mut self, url: impl Into<String>) -> Self {
        self.advertise.push(url.into());
        self
    }

    /// A signaling server to register with (`http://host:port/`): devices are
    /// then also reached over WebRTC signaled through it, and through its frame
    /// relay as the last resort. Several calls name instances of one
    /// deployment, to fail over between in this order.
    pub fn signaling(mut self, url: impl Into<String>) -> Self {
        self.signaling.push(url.into());
        self
    }

    /// Changes the manager's settings (limits, timeouts) before it starts.
    pub fn manager_config(mut self, tune: impl FnOnce(&mut ManagerConfig) + Send + 'static) -> Self {
        self.tune = Some(Box::new(tune));
        self
    }

    /// Whether to watch the interface addresses and re-dial at once when they
    /// change (a laptop joins another network). Default: yes.
    pub fn watch_network(mut self, watch: bool) -> Self {
        self.watch_network = watch;
        self
    }

    /// Starts the device: binds the listener, registers with the signaling
    /// server (in the background, again after every disconnection), and serves
    /// the groups. Fails with [`Error::Config`] without keys, or for a
    /// listener that cannot bind or a signaling URL that does not parse.
    pub async fn build(self) -> Result<Device> {
        let keys = self.keys.ok_or(Error::Config { field: "keys", reason: "a device needs its keys".into() })?;
        for url in &self.signaling {
            url::Url::parse(url).map_err(|e| Error::Config { field: "signaling", reason: format!("{url}: {e}") })?;
        }
        let server = match self.listen {
            Some(bind) => {
                let mut options = ServerOptions::default();
                options.bind = bind;
                let server = SocketIoServer::bind(options)
                    .await
                    .map_err(|e| Error::Config { field: "listen", reason: e.to_string() })?;
                Some(server)
            }
            None => None,
        };
        let mut advertise = self.advertise;
        if advertise.is_empty()
            && let Some(server) = &server
        {
            let bound =
                SocketAddr::new(self.listen.map_or(server.local_addr().ip(), |a| a.ip()), server.local_addr().port());
            advertise = advertise_urls(&server.url(), bound, &interface_ips());
        }
        let info = keys.info(advertise)?;

        let peers = TrustStore::new(TrustLevel::Unknown);
        let policy = PeersFirst { peers: peers.clone(), rest: self.trust };
        let mut connection = ConnectionConfig::new(keys.clone(), policy);
        connection.handshake.addresses = info.addresses.clone();
        let mut config = ManagerConfig::new(connection);
        if let Some(tune) = self.tune {
            tune(&mut config);
        }
        let manager = ConnectionManager::new(config);
        let mut groups = Vec::new();
        for group in self.groups {
            groups.push(group.group_id().clone());
            manager.add_group(group, []).await;
        }

        let dialer = SocketIoDialer::new(ClientOptions::default());
        manager.add_dialer(Arc::new(dialer.clone()));
        let signaling = (!self.signaling.is_empty()).then(|| start_signaling(&manager, self.signaling, &keys));
        let listener = server.map(|server| SocketIoListener::start(manager.clone(), server));
        let listen_url = listener.as_ref().map(|l| l.url().to_owned());
        if let Some(url) = &listen_url {
            info!(%url, advertised = ?info.addresses, "listening");
        }
        let network = self.watch_network.then(|| {
            let monitor = NetworkMonitor::start(NETWORK_POLL);
            let link = signaling.as_ref().map(|s| s.link.clone());
            tokio::spawn(super::on_network_change(monitor.changes(), manager.clone(), link));
            monitor
        });
        Ok(Device {
            inner: Arc::new(DeviceInner {
                keys,
                info,
                manager,
                peers,
                dialer,
                groups,
                listen_url,
                listener: tokio::sync::Mutex::new(listener),
                signaling,
                _network: network,
            }),
        })
    }
}

/// Registers with the signaling servers at `urls` and adds WebRTC (signaled
/// through them) and their frame relay as ways to reach devices.
fn start_signaling(manager: &ConnectionManager, urls: Vec<String>, keys: &Arc<DeviceKeys>) -> SignalingParts {
    let config = WebRtcConfig::default();
    let link = SignalingServerLink::start(
        manager.clone(),
        urls,
        keys.clone(),
        SignalingClientOptions::default(),
        ReconnectOptions::default(),
        config.connect_timeout,
    );
    let endpoint = Arc::new(WebRtcEndpoint::new(link.signaling.clone(), config));
    let webrtc = WebRtcListener::start(manager.clone(), endpoint.clone());
    manager.add_dialer(Arc::new(WebRtcDialer::new(endpoint)));
    manager.add_dialer(link.relay.clone());
    SignalingParts { link: Arc::new(link), _webrtc: webrtc }
}

/// The devices added with `add_peer` are trusted; everyone else is asked of
/// the application's policy, if it gave one.
struct PeersFirst {
    peers: TrustStore,
    rest: Option<Arc<dyn TrustPolicy>>,
}

impl TrustPolicy for PeersFirst {
    fn trust_level<'a>(
        &'a self,
        remote: &'a DeviceInfo,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = TrustLevel> + Send + 'a>> {
        Box::pin(async move {
            match (self.peers.level(&remote.device_id), &self.rest) {
                (TrustLevel::Unknown, Some(rest)) => rest.trust_level(remote).await,
                (level, _) => level,
            }
        })
    }
}
