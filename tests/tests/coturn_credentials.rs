//! A real coturn, configured as docs/NAT.md documents, accepts the time-limited
//! credentials `peers-signaling` hands out (coturn's REST format, made by the
//! signaling server's own code), relays data with them, and refuses a password
//! made with another secret and an expired username.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peers_sdk::DeviceId;
use peers_signaling::ice::turn_credentials;
use peers_tests::coturn::{Coturn, CoturnConfig};
use tokio::net::UdpSocket;
use turn::client::{Client, ClientConfig};
use webrtc_util::Conn;

const REALM: &str = "peers";
const SECRET: &str = "test-secret";

async fn client(server: SocketAddr, username: &str, password: &str) -> Client {
    let conn = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let client = Client::new(ClientConfig {
        stun_serv_addr: server.to_string(),
        turn_serv_addr: server.to_string(),
        username: username.to_owned(),
        password: password.to_owned(),
        realm: REALM.to_owned(),
        software: String::new(),
        rto_in_ms: 0,
        conn,
        vnet: None,
    })
    .await
    .unwrap();
    client.listen().await.unwrap();
    client
}

/// Credentials for a device, expiring `valid_for` seconds from now.
fn credentials(secret: &str, valid_for: i64) -> (String, String) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let device: DeviceId = "5e".repeat(20).parse().unwrap();
    turn_credentials(secret.as_bytes(), &device, (now + valid_for) as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_relays_with_signaling_credentials_and_refuses_bad_ones() {
    let port = peers_tests::coturn::loopback_port();
    let mut config = CoturnConfig::new("127.0.0.1", port, REALM, SECRET);
    // The peer below is a plain socket on loopback.
    config.extra.push("allow-loopback-peers".into());
    let coturn = Coturn::start(None, &config).await;
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // STUN: the server reports our address.
    let (user, password) = credentials(SECRET, 300);
    let good = client(server, &user, &password).await;
    let mapped = good.send_binding_request().await.unwrap();
    assert_eq!(mapped.ip().to_string(), "127.0.0.1");

    // TURN: an allocation relays a datagram to a plain UDP peer.
    let relay = good.allocate().await.unwrap_or_else(|e| panic!("allocate: {e}\n{}", coturn.log_text()));
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    relay.send_to(b"through the relay", peer.local_addr().unwrap()).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"through the relay");
    assert_eq!(from, relay.local_addr().unwrap(), "the datagram came from the relayed address");
    good.close().await.unwrap();

    // A password made with another secret, and expired credentials, get no allocation.
    let (_, guessed) = credentials("guess", 300);
    let wrong = client(server, &user, &guessed).await;
    assert!(wrong.allocate().await.is_err());
    let (old, old_password) = credentials(SECRET, -10);
    let expired = client(server, &old, &old_password).await;
    assert!(expired.allocate().await.is_err());
}
