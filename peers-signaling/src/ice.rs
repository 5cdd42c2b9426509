//! ICE server configuration handed to devices: STUN URLs and TURN servers with
//! time-limited credentials in the coturn REST format.
//!
//! ```text
//! username   = "<expiry unix seconds>:<device id>"
//! credential = base64(HMAC-SHA1(shared secret, username))
//! ```
//!
//! coturn (`use-auth-secret`, `static-auth-secret=<secret>`) accepts such a
//! credential until the expiry time in its username.

use std::time::Duration;

use hmac::{Hmac, Mac};
use peers_sdk::DeviceId;
use sha1::Sha1;

pub use crate::protocol::{IceConfig, IceServerEntry};

use crate::error::{Error, Result};
use crate::protocol::encode;

/// The server's ICE settings.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IceSettings {
    /// STUN URLs (`stun:host:port`).
    pub stun_urls: Vec<String>,
    /// TURN URLs (`turn:host:port?transport=udp`, `turns:…`); handed out only
    /// with credentials, so they need [`turn_secret`](Self::turn_secret).
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN server.
    pub turn_secret: Option<String>,
    /// How long TURN credentials stay valid. Default (when zero): 10 minutes
    /// (a leaked credential is worth little); at most 24 hours.
    pub credential_ttl: Duration,
}

impl std::fmt::Debug for IceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceSettings")
            .field("stun_urls", &self.stun_urls)
            .field("turn_urls", &self.turn_urls)
            .field("turn_secret", &self.turn_secret.as_ref().map(|_| "<hidden>"))
            .field("credential_ttl", &self.credential_ttl)
            .finish()
    }
}

/// Default lifetime of TURN credentials.
pub const DEFAULT_CREDENTIAL_TTL: Duration = Duration::from_secs(600);
/// Longest lifetime of TURN credentials.
pub const MAX_CREDENTIAL_TTL: Duration = Duration::from_secs(24 * 3600);

impl IceSettings {
    /// Checks URLs and the TURN secret; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, detail: String| Err(Error::InvalidConfig { field, detail });
        for url in &self.stun_urls {
            if !(url.starts_with("stun:") || url.starts_with("stuns:")) || url.len() > 256 {
                return invalid("ice.stun_urls", format!("{url:?} is not a stun: or stuns: URL"));
            }
        }
        for url in &self.turn_urls {
            if !(url.starts_with("turn:") || url.starts_with("turns:")) || url.len() > 256 {
                return invalid("ice.turn_urls", format!("{url:?} is not a turn: or turns: URL"));
            }
        }
        if !self.turn_urls.is_empty() && self.turn_secret.as_deref().is_none_or(str::is_empty) {
            return invalid("ice.turn_secret", "TURN URLs need a shared secret".into());
        }
        if self.credential_ttl > MAX_CREDENTIAL_TTL {
            return invalid("ice.credential_ttl", format!("{:?} is over {MAX_CREDENTIAL_TTL:?}", self.credential_ttl));
        }
        Ok(())
    }

    fn ttl(&self) -> Duration {
        if self.credential_ttl.is_zero() { DEFAULT_CREDENTIAL_TTL } else { self.credential_ttl }
    }

    /// The configuration for `device` at `now_s` (unix seconds).
    pub fn config_for(&self, device: &DeviceId, now_s: u64) -> IceConfig {
        let mut servers = Vec::new();
        if !self.stun_urls.is_empty() {
            servers.push(IceServerEntry { urls: self.stun_urls.clone(), username: None, credential: None });
        }
        let mut expires_at = None;
        if let (false, Some(secret)) = (self.turn_urls.is_empty(), &self.turn_secret) {
            let expiry = now_s.saturating_add(self.ttl().as_secs());
            let (username, credential) = turn_credentials(secret.as_bytes(), device, expiry);
            servers.push(IceServerEntry {
                urls: self.turn_urls.clone(),
                username: Some(username),
                credential: Some(credential),
            });
            expires_at = Some(expiry);
        }
        IceConfig { ice_servers: servers, expires_at }
    }
}

/// coturn REST credentials for `device`, valid until `expiry` (unix seconds).
pub fn turn_credentials(secret: &[u8], device: &DeviceId, expiry: u64) -> (String, String) {
    let username = format!("{expiry}:{device}");
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let credential = match Hmac::<Sha1>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            encode(&mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    (username, credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_coturn_rest_format() {
        let device: DeviceId = "ab".repeat(20).parse().unwrap();
        let (username, credential) = turn_credentials(b"secret", &device, 1_700_000_000);
        assert_eq!(username, format!("1700000000:{device}"));
        // Independently: HMAC-SHA1 computed by hand from the definition.
        let mut mac = Hmac::<Sha1>::new_from_slice(b"secret").unwrap();
        mac.update(username.as_bytes());
        assert_eq!(credential, encode(&mac.finalize().into_bytes()));
        assert_eq!(credential.len(), 28, "base64 of 20 bytes");
        let (_, other) = turn_credentials(b"other", &device, 1_700_000_000);
        assert_ne!(credential, other);
    }

    #[test]
    fn config_lists_stun_and_turn_with_expiry() {
        let settings = IceSettings {
            stun_urls: vec!["stun:127.0.0.1:3478".into()],
            turn_urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
            turn_secret: Some("s".into()),
            credential_ttl: Duration::from_secs(600),
        };
        settings.validate().unwrap();
        let device: DeviceId = "cd".repeat(20).parse().unwrap();
        let config = settings.config_for(&device, 1000);
        assert_eq!(config.ice_servers.len(), 2);
        assert_eq!(config.expires_at, Some(1600));
        assert_eq!(config.ice_servers[1].username.as_deref(), Some(format!("1600:{device}").as_str()));
        let no_secret = IceSettings { turn_secret: None, ..settings.clone() };
        assert!(no_secret.validate().unwrap_err().to_string().contains("ice.turn_secret"));
        let bad_url = IceSettings { stun_urls: vec!["http://x".into()], ..settings };
        assert!(bad_url.validate().is_err());
    }
}
