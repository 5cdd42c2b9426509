//! WebRTC over the real signaling server: [`Device`] is a registered device with
//! its `WebRtcEndpoint`, signaling through `peers-device`'s `ServerSignaling`
//! (the transport crate does not import the signaling crate; the device crate
//! joins them).

use std::sync::Arc;

use peers_device::transports::ServerSignaling;
use peers_sdk::{DeviceId, DeviceKeys};
use peers_signaling::{ServerConfig, SignalingClient, SignalingClientOptions, SignalingServer};
use peers_transport_webrtc::{WebRtcConfig, WebRtcEndpoint};

/// A signaling server on 127.0.0.1 with an in-memory store.
pub async fn signaling_server() -> SignalingServer {
    SignalingServer::bind(ServerConfig::in_memory()).await.expect("signaling server")
}

/// A device registered with the server at `url`, with its WebRTC endpoint.
#[derive(Debug)]
pub struct Device {
    /// Its keys.
    pub keys: Arc<DeviceKeys>,
    /// Its endpoint.
    pub endpoint: WebRtcEndpoint,
}

impl Device {
    /// Generates keys, registers with the server and starts an endpoint.
    pub async fn register(url: &str, name: &str, config: WebRtcConfig) -> Device {
        let keys = Arc::new(DeviceKeys::generate(name).expect("keys"));
        let client = SignalingClient::connect(url, &keys, SignalingClientOptions::default()).await.expect("register");
        let signaling = ServerSignaling::over_client(client, config.connect_timeout).expect("incoming signals");
        let endpoint = WebRtcEndpoint::new(Arc::new(signaling), config);
        Device { keys, endpoint }
    }

    /// The device's id.
    pub fn id(&self) -> DeviceId {
        self.keys.device_id()
    }
}

/// `pattern(seed, length)`: the frame bytes the JavaScript drivers check
/// (`tests/js/webrtc_signaling.mjs`).
pub fn pattern(seed: u32, length: usize) -> Vec<u8> {
    (0..length).map(|j| (seed as usize * 131 + j * 7 + (j >> 8)) as u8).collect()
}
