//! Dropping a device that is no longer trusted, at run time.

use peers_sdk::{CloseCode, CloseReason, Connection, DeviceId};

use super::api::{ConnectionManager, lock};

impl ConnectionManager {
    /// Stops keeping `device` connected and closes every connection to it
    /// (the active one and any standby or retiring ones). Its groups are not
    /// touched: remove it from them with
    /// [`remove_member`](Self::remove_member) first, and stop trusting it in
    /// the connection's trust policy so that it cannot simply connect again.
    pub async fn disconnect(&self, device: &DeviceId, why: &str) {
        self.forget(device);
        let connections: Vec<Connection> = lock(&self.inner.state)
            .devices
            .get(device)
            .map(|links| links.links.iter().map(|link| link.connection.clone()).collect())
            .unwrap_or_default();
        for connection in connections {
            connection.close(CloseReason::new(CloseCode::Refused, why)).await;
        }
    }
}
