//! Noticing that this device's network changed: the set of its interface
//! addresses is read every so often, and a change (a laptop joined another
//! Wi-Fi, a cable was pulled, a VPN came up) bumps a counter that the daemon
//! turns into [`ConnectionManager::network_changed`](crate::ConnectionManager::network_changed)
//! and [`SignalingServerLink::network_changed`](crate::transports::SignalingServerLink::network_changed).
//!
//! Polling is portable and cheap (one `getifaddrs` call per interval); an OS
//! notification (netlink, `SCNetworkReachability`) would be quicker to react,
//! and applications that have one can call `network_changed` themselves.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info};

/// Watches the interface addresses; stops when dropped.
#[derive(Debug)]
pub struct NetworkMonitor {
    changes: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl NetworkMonitor {
    /// Reads the addresses every `interval` (1 s is a good value). Must be
    /// called within a tokio runtime.
    pub fn start(interval: Duration) -> Self {
        let (tx, changes) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            let mut known = addresses().unwrap_or_default();
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // A failed read is not a change.
                let Some(now) = addresses() else { continue };
                if now != known {
                    info!(before = ?known, after = ?now, "network changed");
                    known = now;
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        });
        NetworkMonitor { changes, task }
    }

    /// A receiver that sees a new value at every change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }
}

impl Drop for NetworkMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// This device's non-loopback interface addresses (empty when they cannot be
/// read), for the URLs a device listening on every interface advertises.
pub(crate) fn interface_ips() -> Vec<IpAddr> {
    addresses().map(|set| set.into_iter().map(|(_, ip)| ip).collect()).unwrap_or_default()
}

/// This device's non-loopback interface addresses, with their interface
/// names; `None` when they cannot be read.
fn addresses() -> Option<BTreeSet<(String, IpAddr)>> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => {
            Some(interfaces.into_iter().filter(|i| !i.is_loopback()).map(|i| (i.name.clone(), i.ip())).collect())
        }
        Err(err) => {
            debug!(%err, "cannot read the interface addresses");
            None
        }
    }
}
