//! The smallest embedding of `peers-device`: two devices of one user keep a
//! group in sync over the LAN. Each is a [`Device`] built in a few lines; each
//! adds the other (in a real application, from the other's share code); a
//! write on one shows up on the other.
//!
//! Run it with `cargo run -p peers-device --example embed_sync`; its test
//! (`cargo test -p peers-device --example embed_sync`) checks the value arrived.

use std::sync::Arc;
use std::time::Duration;

use peers_device::sync::{EngineOptions, SqliteSyncEngine};
use peers_device::{Device, GroupId};
use peers_sdk::DeviceKeys;

/// A device syncing `group`, listening on loopback (a LAN address works the same).
async fn start(name: &str, group: &GroupId) -> Result<(Device, SqliteSyncEngine), Box<dyn std::error::Error>> {
    let keys = Arc::new(DeviceKeys::generate(name)?);
    let engine = SqliteSyncEngine::in_memory(group.clone(), keys.device_id(), EngineOptions::default()).await?;
    let device =
        Device::builder().keys(keys).listen("127.0.0.1:0".parse()?).group(Arc::new(engine.clone())).build().await?;
    Ok((device, engine))
}

/// Writes on the laptop and returns what the phone then holds.
async fn run() -> Result<Option<Vec<u8>>, Box<dyn std::error::Error>> {
    let notes = GroupId::new("notes")?;
    let (laptop, laptop_notes) = start("laptop", &notes).await?;
    let (phone, phone_notes) = start("phone", &notes).await?;
    println!("laptop advertises {:?}", laptop.info().addresses);

    laptop.add_peer(phone.info(), std::slice::from_ref(&notes)).await?;
    phone.add_peer(laptop.info(), std::slice::from_ref(&notes)).await?;
    let class = tokio::time::timeout(Duration::from_secs(10), laptop.connected(&phone.id())).await?;
    println!("connected over {class}");

    let mut arriving = phone_notes.subscribe();
    laptop_notes.put("greeting", b"hello from the laptop").await?;
    tokio::time::timeout(Duration::from_secs(10), async {
        while arriving.recv().await.is_ok_and(|change| change.key != "greeting") {}
    })
    .await?;
    let value = phone_notes.get("greeting").await?;
    println!("the phone has greeting = {:?}", value.as_deref().map(String::from_utf8_lossy));
    laptop.shutdown().await;
    phone.shutdown().await;
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
    async fn the_write_reaches_the_other_device() {
        assert_eq!(super::run().await.unwrap().as_deref(), Some(&b"hello from the laptop"[..]));
    }
}
