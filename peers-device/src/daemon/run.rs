//! [`Daemon`]: a device that syncs its groups with the devices it trusts, as
//! `peers run` runs it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;

#[cfg(unix)]
use super::control::{self, ControlRequest, ControlResponse};
use super::data_dir::{DataDir, DataDirLock};
use super::members::Members;
use super::sending;
use super::table::render_status;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::group::GroupId;
use crate::manager::ConnectionManager;
use crate::sync::{EngineOptions, SqliteSyncEngine};

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
    /// Where files that trusted devices send (`peers send --to`) are stored; `None`:
    /// `inbox` in the data directory.
    pub inbox: Option<PathBuf>,
}

impl DaemonOptions {
    /// A daemon on `data_dir` listening on `listen`, syncing `groups`.
    pub fn new(data_dir: DataDir, listen: Option<SocketAddr>, groups: Vec<GroupId>) -> Self {
        DaemonOptions { data_dir, listen, advertise: Vec::new(), groups, signaling: Vec::new(), inbox: None }
    }
}

/// A running device: a [`Device`] built from a data directory, and the control
/// socket of the `peers` commands.
#[derive(Debug)]
pub struct Daemon {
    device: Device,
    engines: HashMap<GroupId, SqliteSyncEngine>,
    /// The control socket's task and path.
    control: Option<(JoinHandle<()>, PathBuf)>,
    share_code: String,
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
        let trusted = data.trusted()?;
        let mut builder = Device::builder().keys(keys.clone());
        if let Some(bind) = options.listen {
            builder = builder.listen(bind);
        }
        for url in &options.advertise {
            builder = builder.advertise(url.clone());
        }
        for url in &options.signaling {
            builder = builder.signaling(url.clone());
        }
        let mut engines = HashMap::new();
        let me = keys.device_id();
        for group in &options.groups {
            std::fs::create_dir_all(data.root().join("groups"))
                .map_err(|source| Error::Io { what: "create the groups directory", source })?;
            let engine =
                SqliteSyncEngine::open(data.group_db(group), group.clone(), me, EngineOptions::default()).await?;
            builder = builder.group(Arc::new(engine.clone()));
            engines.insert(group.clone(), engine);
        }
        let device = builder.build().await?;
        let share_code = device.info().to_share_code();
        let members =
            Arc::new(Members { data: data.clone(), device: device.clone(), writing: tokio::sync::Mutex::new(()) });
        let inbox = options.inbox.clone().unwrap_or_else(|| data.root().join("inbox"));
        sending::accept_into(device.manager(), inbox);
        for trusted in &trusted {
            device.add_peer(&trusted.info()?, &trusted.groups).await?;
        }
        // The control socket is a Unix socket; elsewhere the daemon runs without one.
        #[cfg(unix)]
        let control = {
            let socket = data.control_socket();
            Some((control::serve(socket.clone(), handler(device.manager().clone(), engines.clone(), members))?, socket))
        };
        #[cfg(not(unix))]
        let control = {
            drop(members);
            None
        };
        Ok(Daemon { device, engines, control, share_code, _lock: lock })
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The manager.
    pub fn manager(&self) -> &ConnectionManager {
        self.device.manager()
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
        self.device.listen_url()
    }

    /// Closes every connection and stops listening.
    pub async fn shutdown(mut self) {
        if let Some((control, socket)) = self.control.take() {
            control.abort();
            let _ = std::fs::remove_file(socket);
        }
        self.device.shutdown().await;
    }
}

#[cfg(unix)]
fn handler(
    manager: ConnectionManager,
    engines: HashMap<GroupId, SqliteSyncEngine>,
    members: Arc<Members>,
) -> control::Handler {
    let engines = Arc::new(engines);
    let sends = Arc::new(sending::Sends::default());
    Arc::new(move |request| {
        let (manager, engines, members, sends) = (manager.clone(), engines.clone(), members.clone(), sends.clone());
        Box::pin(async move {
            let engine = |group: &GroupId| engines.get(group).ok_or_else(|| Error::UnknownGroup(group.to_string()));
            let result = match request {
                ControlRequest::Status => Ok(ControlResponse::Status { table: render_status(&manager.status()) }),
                ControlRequest::Info => Ok(ControlResponse::Info { share_code: members.device.info().to_share_code() }),
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
                ControlRequest::Send { device, paths } => match members.data.find_trusted(&device) {
                    Ok(info) => sends
                        .start(&manager, info.device_id, paths)
                        .await
                        .map(|(id, bytes)| ControlResponse::Sending { id, device: info.device_id.to_string(), bytes }),
                    Err(e) => Err(e),
                },
                ControlRequest::SendStatus { id } => match sends.state(id) {
                    Some(state) => Ok(ControlResponse::SendStatus { state }),
                    None => Err(Error::Daemon(format!("no transfer {id}"))),
                },
                ControlRequest::SendCancel { id } => match sends.cancel(id) {
                    Some(()) => Ok(ControlResponse::Done),
                    None => Err(Error::Daemon(format!("no transfer {id}"))),
                },
            };
            result.unwrap_or_else(|e| ControlResponse::Error { message: e.to_string() })
        })
    })
}
