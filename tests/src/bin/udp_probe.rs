//! A UDP probe for the network-lab tests, run inside namespaces:
//!
//! - `udp_probe echo ADDR...`: answers every datagram with the address it came
//!   from (`seen <addr>`); prints `ready` once bound.
//! - `udp_probe ask SERVER...`: from one socket, asks each server and prints
//!   `<server> <address the server saw>` or `<server> timeout` (2 s).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, addrs)) = args.split_first() else {
        eprintln!("usage: udp_probe echo|ask ADDR...");
        std::process::exit(2);
    };
    let addrs: Vec<SocketAddr> = addrs.iter().map(|a| a.parse().expect("ip:port")).collect();
    match mode.as_str() {
        "echo" => {
            let mut tasks = Vec::new();
            for addr in addrs {
                let socket = UdpSocket::bind(addr).await.expect("bind");
                tasks.push(tokio::spawn(async move {
                    let mut buf = [0u8; 512];
                    while let Ok((_, from)) = socket.recv_from(&mut buf).await {
                        let _ = socket.send_to(format!("seen {from}").as_bytes(), from).await;
                    }
                }));
            }
            println!("ready");
            for task in tasks {
                let _ = task.await;
            }
        }
        "ask" => {
            let socket = UdpSocket::bind("0.0.0.0:0").await.expect("bind");
            for server in addrs {
                let _ = socket.send_to(b"?", server).await;
                let mut buf = [0u8; 512];
                match tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf)).await {
                    Ok(Ok((n, _))) => {
                        let reply = String::from_utf8_lossy(&buf[..n]);
                        println!("{server} {}", reply.trim_start_matches("seen "));
                    }
                    _ => println!("{server} timeout"),
                }
            }
        }
        _ => {
            eprintln!("unknown mode {mode}");
            std::process::exit(2);
        }
    }
}
