//! Two devices that cannot dial each other (no listener, as behind NATs) sync
//! through a signaling server: it registers them, signals WebRTC between them
//! and relays their frames until a direct path works. Here the server runs in
//! the same process; point `.signaling(..)` at a `peers-signaling` deployment
//! in real life.
//!
//! Run it with `cargo run -p peers-device --example nat_daemon`; its test checks
//! the value arrived.

use std::sync::Arc;
use std::time::Duration;

use peers_device::sync::{EngineOptions, SqliteSyncEngine};
use peers_device::{Device, GroupId};
use peers_sdk::DeviceKeys;
use peers_signaling::{ServerConfig, SignalingServer};

/// A device with no listener, reachable only through the signaling server.
async fn start(
    name: &str,
    group: &GroupId,
    signaling: &str,
) -> Result<(Device, SqliteSyncEngine), Box<dyn std::error::Error>> {
    let keys = Arc::new(DeviceKeys::generate(name)?);
    let engine = SqliteSyncEngine::in_memory(group.clone(), keys.device_id(), EngineOptions::default()).await?;
    let device = Device::builder().keys(keys).signaling(signaling).group(Arc::new(engine.clone())).build().await?;
    Ok((device, engine))
}

async fn run() -> Result<Option<Vec<u8>>, Box<dyn std::error::Error>> {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await?;
    let url = server.url().ok_or("the signaling server has no URL")?;
    let backups = GroupId::new("backups")?;
    let (home, home_data) = start("home", &backups, &url).await?;
    let (office, office_data) = start("office", &backups, &url).await?;
    home.add_peer(office.info(), std::slice::from_ref(&backups)).await?;
    office.add_peer(home.info(), std::slice::from_ref(&backups)).await?;
    let class = tokio::time::timeout(Duration::from_secs(20), home.connected(&office.id())).await?;
    println!("home ↔ office over {class}");

    let mut arriving = office_data.subscribe();
    home_data.put("last-backup", b"2026-12-06").await?;
    tokio::time::timeout(Duration::from_secs(20), async {
        while arriving.recv().await.is_ok_and(|change| change.key != "last-backup") {}
    })
    .await?;
    let value = office_data.get("last-backup").await?;
    println!("the office has last-backup = {:?}", value.as_deref().map(String::from_utf8_lossy));
    home.shutdown().await;
    office.shutdown().await;
    server.shutdown().await;
    Ok(value)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_write_crosses_through_the_signaling_server() {
        assert_eq!(super::run().await.unwrap().as_deref(), Some(&b"2026-12-06"[..]));
    }
}
