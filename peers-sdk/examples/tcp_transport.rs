//! How to add a transport: [`Socket`] over plain tokio TCP, then an authenticated
//! [`Connection`] with RPC both ways on top of it.
//!
//! TCP carries a byte stream and a [`Socket`] carries whole frames;
//! [`FramedSocket`] draws the frame boundaries (a kind byte and a 32-bit length
//! per frame, checked before anything is allocated), applies backpressure, and
//! carries the close reason. So the whole transport is the two functions below:
//! describe the socket, hand over the stream's halves.
//!
//! Run it with `cargo run -p peers-sdk --all-features --example tcp_transport`; test
//! it against the `Socket` contract with
//! `cargo test -p peers-sdk --all-features --example tcp_transport`.

use std::sync::Arc;

use peers_sdk::rpc::RemoteError;
use peers_sdk::socket::{FramedSocket, SocketInfo, TransportKind};
use peers_sdk::{CloseReason, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, Socket, TrustLevel};
use tokio::net::{TcpListener, TcpStream};

/// A [`Socket`] over one connected TCP stream. Plain TCP: no encryption and
/// nothing to bind the handshake to, so the security is the default (none); the
/// connection's own handshake and AEAD provide both.
fn tcp_socket(stream: TcpStream, max_frame_size: usize) -> std::io::Result<FramedSocket> {
    stream.set_nodelay(true)?;
    let info =
        SocketInfo::new(TransportKind::Tcp, max_frame_size).with_ip_addrs(stream.local_addr()?, stream.peer_addr()?);
    let (read, write) = stream.into_split();
    Ok(FramedSocket::from_halves(read, write, info))
}

/// Dials `listener` and accepts the call at once: a connected pair of sockets.
async fn tcp_pair(listener: &TcpListener, max_frame_size: usize) -> std::io::Result<(FramedSocket, FramedSocket)> {
    let (dialed, accepted) = tokio::join!(TcpStream::connect(listener.local_addr()?), listener.accept());
    Ok((tcp_socket(dialed?, max_frame_size)?, tcp_socket(accepted?.0, max_frame_size)?))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let (dialed, accepted) = tcp_pair(&listener, 1024 * 1024).await?;
    println!("tcp: {:?} -> {:?}", dialed.info().local_addr, dialed.info().peer_addr);

    let alice = Arc::new(DeviceKeys::generate("alice")?);
    let bob = Arc::new(DeviceKeys::generate("bob")?);
    // A real application asks a TrustStore or the user; this demo trusts everyone.
    let trust = |_: &DeviceInfo| TrustLevel::Trusted;
    let (dialer, listener) = tokio::join!(
        Connection::connect(Box::new(dialed), ConnectionConfig::new(alice.clone(), trust), Some(bob.device_id())),
        Connection::accept(Box::new(accepted), ConnectionConfig::new(bob, trust)),
    );
    let (dialer, listener) = (dialer?, listener?);
    println!(
        "connected: {} <-> {} over {:?} ({:?}), encrypted: {}",
        listener.remote().user_id,
        dialer.remote().user_id,
        dialer.socket_info().transport,
        dialer.socket_info().locality,
        dialer.is_encrypted(),
    );

    listener.expose_rpc("add", |(x, y): (i64, i64)| async move { Ok::<_, RemoteError>(x + y) });
    dialer.expose_rpc("greet", |name: String| async move { Ok::<_, RemoteError>(format!("hello, {name}")) });
    let sum: i64 = dialer.emit("add", &(2, 40)).await?;
    println!("alice -> bob  add(2, 40) = {sum}");
    let greeting: String = listener.emit("greet", "bob").await?;
    println!("bob -> alice  greet(\"bob\") = {greeting:?}");

    dialer.close(CloseReason::normal("demo done")).await;
    println!("bob saw: {}", listener.closed().await);
    Ok(())
}

#[cfg(test)]
mod tests {
    use peers_sdk::BoxSocket;

    use super::*;

    async fn pair() -> (BoxSocket, BoxSocket) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (dialed, accepted) = tcp_pair(&listener, 256 * 1024).await.unwrap();
        (Box::new(dialed), Box::new(accepted))
    }

    peers_sdk::socket_conformance_tests!(pair);
}
