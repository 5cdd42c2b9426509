//! The test STUN/TURN server accepts the coturn-REST credentials the signaling
//! server hands out, relays data, and refuses wrong or expired credentials.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peers_tests::turn::{RestAuthHandler, TurnServer};
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

fn username(valid_for: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    format!("{}:5e1f0000000000000000000000000000000000aa", now + valid_for)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_with_rest_credentials_and_refuses_bad_ones() {
    let server =
        TurnServer::start("127.0.0.1:0".parse().unwrap(), "127.0.0.1".parse().unwrap(), REALM, SECRET).await.unwrap();
    let auth = RestAuthHandler::new(SECRET);

    // STUN: the server reports our address.
    let user = username(300);
    let good = client(server.addr(), &user, &auth.password(&user)).await;
    let mapped = good.send_binding_request().await.unwrap();
    assert_eq!(mapped.ip().to_string(), "127.0.0.1");

    // TURN: an allocation relays a datagram to a plain UDP peer.
    let relay = good.allocate().await.unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    relay.send_to(b"through the relay", peer.local_addr().unwrap()).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"through the relay");
    assert_eq!(from, relay.local_addr().unwrap(), "the datagram came from the relayed address");
    good.close().await.unwrap();

    // A password made with another secret, and expired credentials, get no allocation.
    let wrong = client(server.addr(), &user, &RestAuthHandler::new("guess").password(&user)).await;
    assert!(wrong.allocate().await.is_err());
    let old = username(-10);
    let expired = client(server.addr(), &old, &auth.password(&old)).await;
    assert!(expired.allocate().await.is_err());
    server.close().await;
}
