//! Redis mode: presence subscriptions and announcements, with allow lists.
//!
//! A watcher `W` of device `D` joins two rooms: `w:<D>`, where `D`'s
//! presence goes while it has no allow list, and `w:<D>:<W>`, where it goes
//! to `W` alone while `D`'s list names `W`. So an announcement of a device
//! with a list is one broadcast to the rooms of the devices on it (socket.io
//! rooms cannot filter by who is in them), and a stranger, who is only in
//! `w:<D>`, never hears it. A list change tells the watchers who gain or
//! lose sight of the device, as if it had come online or gone offline.

use std::collections::HashSet;

use peers_sdk::DeviceId;
use tracing::warn;

use super::cluster::{Cluster, unavailable};
use super::connection::{Connection, lock};
use super::hub::too_many_subscriptions;
use crate::protocol::{AllowList, PresenceNotice, Rejection, events};

/// Where `device`'s presence goes while it has no list.
fn everyone_room(device: &DeviceId) -> String {
    format!("w:{device}")
}

/// Where `device`'s presence goes to `watcher` while its list names it.
fn watcher_room(device: &DeviceId, watcher: &DeviceId) -> String {
    format!("w:{device}:{watcher}")
}

fn rooms_of<'a>(device: &DeviceId, watchers: impl IntoIterator<Item = &'a DeviceId>) -> Vec<String> {
    watchers.into_iter().map(|watcher| watcher_room(device, watcher)).collect()
}

/// Emits `device`'s presence to the sockets in `to` but not in `except`.
async fn emit(cluster: &Cluster, device: &DeviceId, online: bool, to: Vec<String>, except: Vec<String>) {
    if to.is_empty() {
        return;
    }
    let notice = PresenceNotice { device: device.to_string(), online };
    if let Err(err) = cluster.emit_rooms(to, except, events::PRESENCE, &notice).await {
        warn!(%device, %err, "could not announce presence");
    }
}

/// Tells the watchers `allow` lets see `device` that it came online or went
/// offline.
pub(super) async fn announce(cluster: &Cluster, device: &DeviceId, online: bool, allow: Option<&AllowList>) {
    let rooms = match allow {
        None => vec![everyone_room(device)],
        Some(list) => rooms_of(device, list.iter()),
    };
    emit(cluster, device, online, rooms, Vec::new()).await;
}

/// `device` (online) replaced its list `old` with `new`: watchers that gain
/// sight of it hear "online", those that lose it "offline".
pub(super) async fn allow_changed(
    cluster: &Cluster,
    device: &DeviceId,
    old: Option<&AllowList>,
    new: Option<&AllowList>,
) {
    match (old, new) {
        (None, None) => {}
        (None, Some(new)) => {
            emit(cluster, device, false, vec![everyone_room(device)], rooms_of(device, new.iter())).await;
        }
        (Some(old), None) => {
            emit(cluster, device, true, vec![everyone_room(device)], rooms_of(device, old.iter())).await;
        }
        (Some(old), Some(new)) => {
            let gained = rooms_of(device, new.iter().filter(|d| !old.contains(d)));
            let lost = rooms_of(device, old.iter().filter(|d| !new.contains(d)));
            emit(cluster, device, true, gained, Vec::new()).await;
            emit(cluster, device, false, lost, Vec::new()).await;
        }
    }
}

/// Subscribes to (joins the rooms of) or unsubscribes from devices. A
/// subscription returns those online that allow the watcher (a device that
/// does not is looked up as its shadow, never online).
pub(super) async fn subscribe(
    cluster: &Cluster,
    conn: &Connection,
    devices: Vec<DeviceId>,
    add: bool,
) -> Result<Vec<DeviceId>, Rejection> {
    let watcher = conn.registered()?;
    let socket = conn.peer.socket.upgrade();
    {
        let mut watching = lock(&conn.watching);
        if add {
            let max = conn.shared.config.max_subscriptions;
            let new = devices.iter().filter(|d| !watching.contains(d)).collect::<HashSet<_>>().len();
            if watching.len() + new > max {
                return Err(too_many_subscriptions(max, watching.len()));
            }
            conn.shared.address_subscriptions.reserve(conn.ip(), new)?;
        }
        for device in &devices {
            let changed = if add { watching.insert(*device) } else { watching.remove(device) };
            if changed && !add {
                conn.shared.address_subscriptions.release(conn.ip(), 1);
            }
            if let (true, Some(socket)) = (changed, &socket) {
                for room in [everyone_room(device), watcher_room(device, &watcher)] {
                    if add { socket.join_room(room) } else { socket.leave_room(room) }
                }
            }
        }
    }
    if !add {
        return Ok(Vec::new());
    }
    let addressed = cluster.state.addresses(&watcher, &devices).await.map_err(unavailable)?;
    cluster.state.online(&addressed).await.map_err(unavailable)
}
