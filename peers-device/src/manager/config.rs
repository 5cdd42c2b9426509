//! Settings of the [`ConnectionManager`](super::ConnectionManager).

use std::sync::Arc;
use std::time::Duration;

use peers_sdk::{ConnectionConfig, DeviceKeys};

use super::backoff::BackoffOptions;
use super::health::HealthOptions;
use super::preference::PreferenceOptions;

/// Settings of the [`ConnectionManager`](super::ConnectionManager).
#[derive(Clone)]
#[non_exhaustive]
pub struct ManagerConfig {
    /// How connections are made: this device's keys, the trust policy and floor,
    /// timeouts. Every connection the manager makes or accepts uses a clone.
    pub connection: ConnectionConfig,
    /// The most connections held at once; a better newcomer evicts the least
    /// preferred. Default: 30.
    pub max_connections: usize,
    /// Incoming handshakes run at once, over every listener
    /// ([`serve`](super::ConnectionManager::serve)) and
    /// [`accept`](super::ConnectionManager::accept) call; more sockets wait in
    /// their listener's own bounded queue. Default: 64.
    pub max_handshakes: usize,
    /// Pings and the failures that close a connection.
    pub health: HealthOptions,
    /// Reconnection delays.
    pub backoff: BackoffOptions,
    /// When a connection takes over from another.
    pub preference: PreferenceOptions,
    /// How long a superseded connection may keep serving the calls already in
    /// flight on it before it is closed anyway. Default: 10 s.
    pub drain_timeout: Duration,
    /// Hops a device message may take. Default: 4.
    pub device_message_hops: u8,
    /// How long a device message lives. Default: 30 s.
    pub device_message_lifetime: Duration,
    /// Device messages of one kind delivered here and not yet read; when full,
    /// senders are told the device is busy. Default: 256.
    pub device_message_inbox: usize,
    /// Entries of connection history kept for [`status`](super::ConnectionManager::status).
    /// Default: 256.
    pub history: usize,
}

impl ManagerConfig {
    /// Defaults around a connection config (keys and trust policy).
    pub fn new(connection: ConnectionConfig) -> Self {
        ManagerConfig {
            connection,
            max_connections: 30,
            max_handshakes: 64,
            health: HealthOptions::default(),
            backoff: BackoffOptions::default(),
            preference: PreferenceOptions::default(),
            drain_timeout: Duration::from_secs(10),
            device_message_hops: 4,
            device_message_lifetime: Duration::from_secs(30),
            device_message_inbox: 256,
            history: 256,
        }
    }

    /// This device's keys.
    pub fn keys(&self) -> &Arc<DeviceKeys> {
        &self.connection.handshake.keys
    }
}

impl std::fmt::Debug for ManagerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerConfig")
            .field("device", &self.keys().device_id())
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}
