//! The peer that `tests/webrtc_killed_peer.rs` kills: registers with the signaling
//! server at `$1`, prints `VICTIM <device id>`, accepts one WebRTC connection,
//! answers two RPCs that never return, prints `READY`, and waits to be killed.

use std::time::Duration;

use peers_sdk::rpc::RemoteError;
use peers_sdk::{Connection, ConnectionConfig, DeviceInfo, TrustLevel};
use peers_tests::webrtc::Device;
use peers_transport_webrtc::WebRtcConfig;

#[tokio::main]
async fn main() {
    let url = std::env::args().nth(1).expect("usage: webrtc_victim SIGNALING_URL");
    let bob = Device::register(&url, "victim", WebRtcConfig::loopback()).await;
    println!("VICTIM {}", bob.id());
    let socket = bob.endpoint.accept().await.expect("accept");
    let trust = |_: &DeviceInfo| TrustLevel::Trusted;
    let connection =
        Connection::accept(Box::new(socket), ConnectionConfig::new(bob.keys.clone(), trust)).await.expect("handshake");
    connection.expose_rpc("stall", |(): ()| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, RemoteError>(())
    });
    connection.expose_rpc("upload", |data: serde_bytes::ByteBuf| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, RemoteError>(data.len() as u64)
    });
    println!("READY");
    tokio::time::sleep(Duration::from_secs(3600)).await;
}
