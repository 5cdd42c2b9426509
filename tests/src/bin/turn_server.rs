//! A STUN/TURN server for the NAT tests, run inside a network namespace:
//! `turn_server LISTEN RELAY_IP REALM SECRET`. Prints `listening <addr>` and runs
//! until killed.

use std::net::{IpAddr, SocketAddr};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, relay, realm, secret] = args.as_slice() else {
        eprintln!("usage: turn_server LISTEN RELAY_IP REALM SECRET");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse().expect("LISTEN is ip:port");
    let relay: IpAddr = relay.parse().expect("RELAY_IP is an ip");
    let server = peers_tests::turn::TurnServer::start(listen, relay, realm, secret).await.expect("turn server");
    println!("listening {}", server.addr());
    let _ = tokio::signal::ctrl_c().await;
    server.close().await;
}
