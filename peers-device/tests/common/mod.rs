//! Shared harness of the integration tests: devices with a manager and SQLite
//! engines, linked over in-memory sockets that can pose as any transport; the
//! `peers` binary as a process ([`cli`]); files to transfer ([`files`]); the
//! `peers-signaling` binary as a process, killed and restarted ([`signaling`]).

#![allow(dead_code, unreachable_pub)]

pub mod cli;
pub mod daemons;
pub mod files;
pub mod signaling;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use peers_device::sync::{EngineOptions, SqliteSyncEngine};
use peers_device::{ConnectionManager, GroupId, ManagerConfig};
use peers_sdk::socket::{Locality, TransportKind};
use peers_sdk::{
    BoxSocket, CloseReason, ConnectionConfig, DeviceId, DeviceInfo, DeviceKeys, MemorySocket, Socket, SocketInfo,
    SocketState, TrustLevel,
};
use peers_sdk::{PathInfo, PathKind};

pub const WAIT: Duration = Duration::from_secs(15);

pub struct Node {
    pub id: DeviceId,
    pub keys: Arc<DeviceKeys>,
    pub manager: ConnectionManager,
    pub engines: HashMap<String, SqliteSyncEngine>,
}

/// A device whose manager uses `tune` on its default config.
pub fn node_with(name: &str, tune: impl FnOnce(&mut ManagerConfig)) -> Node {
    let keys = Arc::new(DeviceKeys::generate(name).unwrap());
    let trust = |_: &DeviceInfo| TrustLevel::Trusted;
    let mut config = ManagerConfig::new(ConnectionConfig::new(keys.clone(), trust));
    tune(&mut config);
    Node { id: keys.device_id(), keys, manager: ConnectionManager::new(config), engines: HashMap::new() }
}

pub fn node(name: &str) -> Node {
    node_with(name, |_| {})
}

impl Node {
    /// Joins `group` with `members` (other devices), creating its engine.
    pub async fn join(&mut self, group: &str, members: &[DeviceId]) -> SqliteSyncEngine {
        let id = GroupId::new(group).unwrap();
        let engine = SqliteSyncEngine::in_memory(id, self.id, EngineOptions::default()).await.unwrap();
        self.manager.add_group(Arc::new(engine.clone()), members.iter().copied()).await;
        self.engines.insert(group.to_owned(), engine.clone());
        engine
    }

    pub fn engine(&self, group: &str) -> &SqliteSyncEngine {
        &self.engines[group]
    }
}

/// An in-memory socket that reports another transport and locality, and the
/// path that transport reports (WebRTC: a direct path; the server relay: itself).
#[derive(Debug)]
pub struct PosingSocket {
    inner: MemorySocket,
    info: SocketInfo,
    path: Option<PathKind>,
}

#[async_trait]
impl Socket for PosingSocket {
    fn info(&self) -> &SocketInfo {
        &self.info
    }
    async fn send(&self, frame: Bytes) -> peers_sdk::Result<()> {
        self.inner.send(frame).await
    }
    async fn recv(&self) -> peers_sdk::Result<Bytes> {
        self.inner.recv().await
    }
    async fn close(&self, reason: CloseReason) {
        self.inner.close(reason).await
    }
    fn state(&self) -> SocketState {
        self.inner.state()
    }
    async fn closed(&self) -> CloseReason {
        self.inner.closed().await
    }
    fn path(&self) -> Option<PathInfo> {
        self.path.map(PathInfo::new)
    }
}

/// A socket pair posing as `transport` seen at `locality`.
pub fn pair(transport: TransportKind, locality: Locality) -> (BoxSocket, BoxSocket) {
    let (near, far) = MemorySocket::pair(64, 1 << 20);
    let pose = |inner: MemorySocket| -> BoxSocket {
        let mut info = inner.info().clone();
        info.transport = transport.clone();
        info.locality = locality;
        let path = match transport {
            TransportKind::WebRtc => Some(PathKind::Direct),
            TransportKind::Relay => Some(PathKind::ServerRelay),
            _ => None,
        };
        Box::new(PosingSocket { inner, info, path })
    };
    (pose(near), pose(far))
}

/// `a` dials `b` over a pair posing as `transport` at `locality`.
pub async fn link(a: &Node, b: &Node, transport: TransportKind, locality: Locality) {
    let (near, far) = pair(transport, locality);
    let (dialed, accepted) = tokio::join!(a.manager.dial(near, Some(b.id)), b.manager.accept(far));
    assert_eq!(dialed.unwrap(), b.id);
    assert_eq!(accepted.unwrap(), a.id);
}

/// A local (LAN) link.
pub async fn link_local(a: &Node, b: &Node) {
    link(a, b, TransportKind::Memory, Locality::Lan).await;
}

/// Waits until `engine` holds `value` at `key`.
pub async fn wait_value(engine: &SqliteSyncEngine, key: &str, value: Option<&[u8]>) {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            if engine.get(key).await.unwrap().as_deref() == value {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(found.is_ok(), "{key} never became {value:?}");
}

/// Waits until `check` holds, polling.
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let found = tokio::time::timeout(WAIT, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(found.is_ok(), "timed out waiting for {what}");
}

/// The most bytes verified while each class of path carried the transfer, as the
/// status watch showed them.
pub async fn bytes_by_path(
    mut status: tokio::sync::watch::Receiver<peers_device::transfer::Status>,
) -> Vec<(peers_device::ConnectionClass, u64)> {
    let mut seen: Vec<(peers_device::ConnectionClass, u64)> = vec![];
    loop {
        let now = *status.borrow_and_update();
        if let Some(class) = now.class {
            match seen.last_mut() {
                Some((last, bytes)) if *last == class => *bytes = (*bytes).max(now.progress.bytes_done),
                _ => seen.push((class, now.progress.bytes_done)),
            }
        }
        if status.changed().await.is_err() {
            return seen;
        }
    }
}
