//! socket.io for the manager: a [`Dialer`] that reaches devices at the URLs
//! they advertise, and a [`SocketIoListener`] that hands every accepted socket
//! to the manager.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use peers_sdk::socket::Locality;
use peers_sdk::{BoxSocket, DeviceId};
use peers_transport_socketio::{ClientOptions, SocketIoServer, connect};

use crate::ConnectionClass;
use crate::manager::{ConnectionManager, DialError, Dialer, Serving};

/// The most URLs remembered per device.
const MAX_URLS_PER_DEVICE: usize = 8;

/// Dials devices over socket.io at the URLs set with
/// [`set_urls`](SocketIoDialer::set_urls) (for example those in their
/// `DeviceInfo` addresses), in order, until one answers.
#[derive(Clone, Debug, Default)]
pub struct SocketIoDialer {
    urls: Arc<RwLock<HashMap<DeviceId, Vec<String>>>>,
    options: ClientOptions,
}

impl SocketIoDialer {
    /// A dialer using `options` for every connection.
    pub fn new(options: ClientOptions) -> Self {
        SocketIoDialer { urls: Default::default(), options }
    }

    /// Where `device` listens (at most 8 URLs are kept).
    pub fn set_urls(&self, device: DeviceId, mut urls: Vec<String>) {
        urls.truncate(MAX_URLS_PER_DEVICE);
        self.urls.write().unwrap_or_else(|e| e.into_inner()).insert(device, urls);
    }

    fn urls(&self, device: &DeviceId) -> Vec<String> {
        self.urls.read().unwrap_or_else(|e| e.into_inner()).get(device).cloned().unwrap_or_default()
    }
}

/// The class a socket.io URL gives: local for loopback and private addresses
/// (and `localhost`), internet otherwise.
pub fn url_class(url: &str) -> ConnectionClass {
    let host = url::Url::parse(url).ok().and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()));
    let locality = match host.as_deref() {
        Some("localhost") => Locality::Loopback,
        Some(host) => host.parse::<IpAddr>().map_or(Locality::Internet, Locality::of_ip),
        None => Locality::Internet,
    };
    match locality {
        Locality::Loopback | Locality::Lan => ConnectionClass::Local,
        Locality::Internet => ConnectionClass::InternetDirect,
    }
}

#[async_trait]
impl Dialer for SocketIoDialer {
    fn name(&self) -> &str {
        "socket.io"
    }

    fn class_for(&self, device: &DeviceId) -> Option<ConnectionClass> {
        self.urls(device).iter().map(|u| url_class(u)).min()
    }

    fn timeout(&self) -> Duration {
        self.options.connect_timeout + Duration::from_secs(10)
    }

    async fn dial(&self, device: DeviceId) -> Result<BoxSocket, DialError> {
        let mut urls = self.urls(&device);
        urls.sort_by_key(|u| url_class(u));
        let mut failures = Vec::new();
        for url in urls {
            match connect(&url, self.options.clone()).await {
                Ok(socket) => return Ok(Box::new(socket)),
                Err(err) => failures.push((url, DialError::transport(err))),
            }
        }
        Err(if failures.is_empty() {
            DialError::NoRoute { why: "no socket.io URL known" }
        } else {
            DialError::AllFailed(failures)
        })
    }
}

/// Hands every socket a [`SocketIoServer`] accepts to a manager
/// ([`ConnectionManager::serve`]), and shuts the server down at the end.
#[derive(Debug)]
pub struct SocketIoListener {
    url: String,
    server: Arc<SocketIoServer>,
    serving: Serving,
}

impl SocketIoListener {
    /// Starts accepting on `server` for `manager`.
    pub fn start(manager: ConnectionManager, server: SocketIoServer) -> Self {
        let url = server.url();
        let server = Arc::new(server);
        let serving = manager.serve(server.clone());
        SocketIoListener { url, server, serving }
    }

    /// The URL devices dial.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops accepting and shuts the server down.
    pub async fn shutdown(self) {
        self.serving.stop().await;
        match Arc::try_unwrap(self.server) {
            Ok(server) => server.shutdown().await,
            // Not reachable (only the accept loop shared it); dropping it shuts
            // it down in the background.
            Err(server) => drop(server),
        }
    }
}
