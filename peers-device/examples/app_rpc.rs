//! An application's own RPCs between its devices: a handler registered once
//! with [`ConnectionManager::on_connection`](peers_device::ConnectionManager::on_connection)
//! is installed on every connection before the peer is told it is ready, so the
//! very first call answers (no retry), whichever path the connection takes.
//!
//! Run it with `cargo run -p peers-device --example app_rpc`; its test checks
//! the answers.

use std::sync::Arc;
use std::time::Duration;

use peers_device::Device;
use peers_sdk::DeviceKeys;
use peers_sdk::rpc::RemoteError;

/// A device that answers `app:battery` with its own level.
async fn start(name: &str, battery: u8) -> Result<Device, Box<dyn std::error::Error>> {
    let device =
        Device::builder().keys(Arc::new(DeviceKeys::generate(name)?)).listen("127.0.0.1:0".parse()?).build().await?;
    device.manager().on_connection(move |connection, _peer| {
        connection.expose_rpc("app:battery", move |(): ()| async move { Ok::<_, RemoteError>(battery) });
    });
    Ok(device)
}

/// The phone asks the laptop for its battery level, and the other way round.
async fn run() -> Result<(u8, u8), Box<dyn std::error::Error>> {
    let (laptop, phone) = (start("laptop", 80).await?, start("phone", 35).await?);
    // No groups: peers for the application's own RPCs.
    laptop.add_peer(phone.info(), &[]).await?;
    phone.add_peer(laptop.info(), &[]).await?;
    tokio::time::timeout(Duration::from_secs(10), phone.connected(&laptop.id())).await?;
    let to_laptop = phone.manager().connection(&laptop.id()).ok_or("no connection to the laptop")?;
    let laptop_level: u8 = to_laptop.emit("app:battery", &()).await?;
    tokio::time::timeout(Duration::from_secs(10), laptop.connected(&phone.id())).await?;
    let to_phone = laptop.manager().connection(&phone.id()).ok_or("no connection to the phone")?;
    let phone_level: u8 = to_phone.emit("app:battery", &()).await?;
    println!("laptop battery {laptop_level}%, phone battery {phone_level}%");
    laptop.shutdown().await;
    phone.shutdown().await;
    Ok((laptop_level, phone_level))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_device_answers_the_first_call_with_its_own_level() {
        assert_eq!(super::run().await.unwrap(), (80, 35));
    }
}
