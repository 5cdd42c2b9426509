//! A new transport in a few lines: [`Socket`] over a Unix domain socket, for
//! devices (or a daemon and its apps) on the same machine. [`FramedSocket`] does
//! the framing, backpressure and close; the transport only describes itself.
//!
//! Run it with `cargo run -p peers-sdk --all-features --example unix_transport`
//! (it sends an RPC both ways over a socket in a temporary directory); test it
//! against the `Socket` contract with
//! `cargo test -p peers-sdk --all-features --example unix_transport`.

use std::path::Path;
use std::sync::Arc;

use peers_sdk::rpc::RemoteError;
use peers_sdk::socket::{FramedSocket, Locality, SocketInfo, TransportKind};
use peers_sdk::{CloseReason, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, TrustLevel};
use tokio::net::{UnixListener, UnixStream};

/// A [`Socket`](peers_sdk::Socket) over one connected Unix stream: the same
/// machine, so loopback locality; no encryption of its own.
fn unix_socket(stream: UnixStream, path: &Path) -> FramedSocket {
    let info = SocketInfo::new(TransportKind::Other("unix".into()), 1024 * 1024)
        .with_locality(Locality::Loopback)
        .with_peer_addr(path.display().to_string());
    let (read, write) = stream.into_split();
    FramedSocket::from_halves(read, write, info)
}

/// A connected pair through a listener at `path`.
async fn unix_pair(path: &Path) -> std::io::Result<(FramedSocket, FramedSocket)> {
    let listener = UnixListener::bind(path)?;
    let (dialed, accepted) = tokio::join!(UnixStream::connect(path), listener.accept());
    Ok((unix_socket(dialed?, path), unix_socket(accepted?.0, path)))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (dialed, accepted) = unix_pair(&dir.path().join("peers.sock")).await?;
    let (app, daemon) = (Arc::new(DeviceKeys::generate("app")?), Arc::new(DeviceKeys::generate("daemon")?));
    let trust = |_: &DeviceInfo| TrustLevel::Trusted; // a demo; real code asks a TrustStore
    let (app, daemon) = tokio::join!(
        Connection::connect(Box::new(dialed), ConnectionConfig::new(app, trust), Some(daemon.device_id())),
        Connection::accept(Box::new(accepted), ConnectionConfig::new(daemon, trust)),
    );
    let (app, daemon) = (app?, daemon?);
    daemon.expose_rpc("len", |s: String| async move { Ok::<_, RemoteError>(s.len()) });
    let len: usize = app.emit("len", "over a unix socket").await?;
    println!("daemon says the string has {len} bytes");
    app.close(CloseReason::normal("done")).await;
    println!("daemon saw: {}", daemon.closed().await);
    Ok(())
}

#[cfg(test)]
mod tests {
    use peers_sdk::BoxSocket;

    use super::*;

    async fn pair() -> (BoxSocket, BoxSocket) {
        use std::sync::OnceLock;
        use std::sync::atomic::{AtomicU64, Ordering};
        // One directory for the test process; the conformance tests run in parallel.
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
        let path = dir.path().join(format!("{}.sock", NEXT.fetch_add(1, Ordering::Relaxed)));
        let (dialed, accepted) = unix_pair(&path).await.unwrap();
        (Box::new(dialed), Box::new(accepted))
    }

    peers_sdk::socket_conformance_tests!(pair);
}
