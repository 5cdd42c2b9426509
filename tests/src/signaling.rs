//! Helpers for the signaling tests (`tests/signaling_*.rs`): a signaling server
//! on loopback and the origin the JavaScript drivers dial.

use peers_signaling::{ServerConfig, SignalingServer};

/// The JavaScript signaling driver in `tests/js/`.
pub const SIGNALING_DRIVER: &str = "signaling_client.mjs";

/// A signaling server on 127.0.0.1 (any port) with an in-memory store.
///
/// # Panics
///
/// When it cannot bind.
pub async fn signaling_server() -> SignalingServer {
    SignalingServer::bind(ServerConfig::in_memory()).await.expect("signaling server binds on loopback")
}

/// The origin (`http://127.0.0.1:PORT`) to give a JavaScript driver:
/// socket.io-client takes the namespace from the URL's path.
///
/// # Panics
///
/// When the server was attached rather than bound.
pub fn signaling_origin(server: &SignalingServer) -> String {
    server.url().expect("a bound server has a URL")
}
