//! The ICE servers a device gets in reply to `"ice-config"` (the server's
//! settings and TURN credentials are `crate::ice`, behind the `server` feature).

use serde::{Deserialize, Serialize};

/// One ICE server, in the shape of WebRTC's `RTCIceServer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServerEntry {
    /// Its URLs.
    pub urls: Vec<String>,
    /// TURN username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The reply to `"ice-config"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceConfig {
    /// STUN and TURN servers; empty when the server has none configured.
    pub ice_servers: Vec<IceServerEntry>,
    /// When the TURN credentials expire (unix seconds), if there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}
