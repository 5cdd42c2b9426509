//! Two devices connect over the in-memory socket pair, authenticate each other and
//! call RPCs both ways.
//!
//! Run with `cargo run -p peers-sdk --example two_devices`.

use std::sync::Arc;

use peers_sdk::rpc::RemoteError;
use peers_sdk::{CloseReason, Connection, ConnectionConfig, DeviceKeys, MemorySocket, TrustLevel, TrustStore};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();

    // Each device has its own identity; both belong to the same user here.
    let laptop = Arc::new(DeviceKeys::generate("alice")?);
    let phone = Arc::new(DeviceKeys::generate("alice")?);

    // Each trusts the other explicitly; everyone else stays Unknown (refused).
    let laptop_trust = TrustStore::new(TrustLevel::Unknown);
    laptop_trust.set(phone.device_id(), TrustLevel::SelfDevice);
    let phone_trust = TrustStore::new(TrustLevel::Unknown);
    phone_trust.set(laptop.device_id(), TrustLevel::SelfDevice);

    let (a, b) = MemorySocket::pair(64, 64 * 1024);
    let (phone_conn, laptop_conn) = tokio::join!(
        Connection::connect(Box::new(a), ConnectionConfig::new(phone.clone(), phone_trust), Some(laptop.device_id())),
        Connection::accept(Box::new(b), ConnectionConfig::new(laptop.clone(), laptop_trust)),
    );
    let (phone_conn, laptop_conn) = (phone_conn?, laptop_conn?);

    laptop_conn.expose_rpc("add", |(x, y): (i64, i64)| async move { Ok::<_, RemoteError>(x + y) });
    phone_conn.expose_rpc("battery", |(): ()| async { Ok::<_, RemoteError>(87u8) });

    let sum: i64 = phone_conn.emit("add", &(40, 2)).await?;
    let battery: u8 = laptop_conn.emit("battery", &()).await?;
    println!("phone  {} -> laptop: add(40, 2) = {sum}", phone.device_id());
    println!("laptop {} -> phone: battery() = {battery}%", laptop.device_id());
    println!(
        "peer seen by the laptop: {} (trust {:?}, encrypted: {})",
        laptop_conn.remote().device_id,
        laptop_conn.trust(),
        laptop_conn.is_encrypted()
    );

    phone_conn.close(CloseReason::normal("demo finished")).await;
    println!("laptop saw the close: {}", laptop_conn.closed().await);
    Ok(())
}
