//! A STUN and TURN server for the tests, from webrtc-rs's `turn` crate, with an
//! auth handler for the time-limited credentials our signaling server hands out
//! (the coturn REST format).
//!
//! The `turn` crate's own `LongTermAuthHandler` reads the whole username as the
//! expiry time; coturn's format, which the signaling server uses, is
//! `"<expiry unix time>:<device id>"` with the password
//! `base64(HMAC-SHA1(shared secret, username))`. [`RestAuthHandler`] accepts that
//! format and refuses expired or malformed usernames.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use tokio::net::UdpSocket;
use turn::auth::{AuthHandler, generate_auth_key};
use turn::relay::relay_static::RelayAddressGeneratorStatic;
use turn::server::Server;
use turn::server::config::{ConnConfig, ServerConfig};
use webrtc_util::vnet::net::Net;

/// Checks coturn-REST usernames against a shared secret.
#[derive(Debug)]
pub struct RestAuthHandler {
    secret: String,
}

impl RestAuthHandler {
    /// A handler for credentials made with `secret`.
    pub fn new(secret: impl Into<String>) -> Self {
        RestAuthHandler { secret: secret.into() }
    }

    /// The password for `username` (what the signaling server hands out).
    pub fn password(&self, username: &str) -> String {
        let mut mac = Hmac::<Sha1>::new_from_slice(self.secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(username.as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    }
}

impl AuthHandler for RestAuthHandler {
    fn auth_handle(&self, username: &str, realm: &str, _src: SocketAddr) -> Result<Vec<u8>, turn::Error> {
        let expiry = username
            .split_once(':')
            .map_or(username, |(expiry, _)| expiry)
            .parse::<u64>()
            .map_err(|_| turn::Error::Other(format!("username {username:?} is not <expiry>:<id>")))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if expiry < now {
            return Err(turn::Error::Other(format!("credentials of {username:?} expired")));
        }
        Ok(generate_auth_key(username, realm, &self.password(username)))
    }
}

/// A running STUN/TURN server on UDP.
pub struct TurnServer {
    server: Server,
    addr: SocketAddr,
}

impl std::fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl TurnServer {
    /// Listens on `listen` (UDP) and relays from `relay_ip`, accepting
    /// credentials made with `secret` in `realm`.
    pub async fn start(listen: SocketAddr, relay_ip: IpAddr, realm: &str, secret: &str) -> Result<Self, turn::Error> {
        let conn = Arc::new(UdpSocket::bind(listen).await?);
        let addr = conn.local_addr()?;
        let server = Server::new(ServerConfig {
            conn_configs: vec![ConnConfig {
                conn,
                relay_addr_generator: Box::new(RelayAddressGeneratorStatic {
                    relay_address: relay_ip,
                    address: relay_ip.to_string(),
                    net: Arc::new(Net::new(None)),
                }),
            }],
            realm: realm.to_owned(),
            auth_handler: Arc::new(RestAuthHandler::new(secret)),
            channel_bind_timeout: Duration::from_secs(0),
            alloc_close_notify: None,
        })
        .await?;
        Ok(TurnServer { server, addr })
    }

    /// The UDP address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `stun:` and `turn:` URLs for it.
    pub fn urls(&self) -> (String, String) {
        (format!("stun:{}", self.addr), format!("turn:{}?transport=udp", self.addr))
    }

    /// Stops it.
    pub async fn close(self) {
        let _ = self.server.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_unexpired_rest_usernames_only() {
        let handler = RestAuthHandler::new("s3cret");
        let src: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let later = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 60;
        let username = format!("{later}:abcdef");
        let key = handler.auth_handle(&username, "peers", src).unwrap();
        assert_eq!(key, generate_auth_key(&username, "peers", &handler.password(&username)));
        assert!(handler.auth_handle("1000:abcdef", "peers", src).is_err(), "expired");
        assert!(handler.auth_handle("soon:abcdef", "peers", src).is_err(), "malformed");
        // Another secret gives another key, so the client's MESSAGE-INTEGRITY fails.
        assert_ne!(RestAuthHandler::new("other").password(&username), handler.password(&username));
    }
}
