//! Ours: a `Connection` (our handshake, AEAD, RPC and streams) over the socket.io
//! transport, and over WebRTC data channels (loopback ICE candidates, in-memory
//! signaling). Echoes are RPCs; stream cells are `open_stream` + `write` + `finish`,
//! which waits for the reader's handler.

use std::sync::Arc;
use std::time::{Duration, Instant};

use peers_sdk::rpc::{RemoteError, RemoteErrorCode};
use peers_sdk::{BoxSocket, CloseReason, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, TrustLevel};
use peers_transport_socketio::{ClientOptions, ServerOptions, SocketIoServer};
use peers_transport_webrtc::{MemorySignalingHub, WebRtcConfig, WebRtcEndpoint};
use serde_bytes::ByteBuf;

use crate::common::{ECHO, Figures, MIB, PIECES, Params, Pieces, mb_per_s, ms, spawn_listener, test_data};

fn trust_all(_: &DeviceInfo) -> TrustLevel {
    TrustLevel::Trusted
}

fn config(keys: &Arc<DeviceKeys>) -> ConnectionConfig {
    ConnectionConfig::new(keys.clone(), trust_all)
}

fn internal(e: impl std::fmt::Display) -> RemoteError {
    RemoteError::new(RemoteErrorCode::Internal, e.to_string())
}

/// Handlers both ends expose: `echo`, a `sink` stream that reads to the end, and
/// `source(total, piece)`, which streams `total` bytes back in `piece` writes.
fn expose(connection: &Connection, data: &'static [u8]) {
    connection.expose_rpc("echo", |data: ByteBuf| async move { Ok::<_, RemoteError>(data) });
    connection.expose_stream("sink", |(): (), mut reader: peers_sdk::StreamReader| async move {
        while reader.next().await.map_err(internal)?.is_some() {}
        Ok(())
    });
    let weak = connection.clone();
    connection.expose_rpc("source", move |(total, piece): (usize, usize)| {
        let connection = weak.clone();
        async move {
            write_stream(&connection, data, total, piece).await.map_err(internal)?;
            Ok::<_, RemoteError>(())
        }
    });
}

async fn write_stream(connection: &Connection, data: &[u8], total: usize, piece: usize) -> peers_sdk::Result<()> {
    let mut writer = connection.open_stream("sink", &()).await?;
    for bytes in Pieces::new(data, total, piece) {
        writer.write(bytes).await?;
    }
    writer.finish().await
}

async fn serve(socket: BoxSocket, keys: Arc<DeviceKeys>) {
    if let Ok(connection) = Connection::accept(socket, config(&keys)).await {
        expose(&connection, test_data());
        connection.closed().await;
    }
}

async fn drive(connection: Connection, started: Instant, params: &Params) -> Figures {
    let connect_ms = ms(started.elapsed());
    let data = test_data();
    expose(&connection, data);
    let ping = ByteBuf::from(data[..ECHO].to_vec());
    let _: ByteBuf = connection.emit("echo", &ping).await.unwrap();
    let first_echo_ms = ms(started.elapsed());
    let t = Instant::now();
    for _ in 0..params.echoes {
        let _: ByteBuf = connection.emit("echo", &ping).await.unwrap();
    }
    let round_trips_per_s = params.echoes as f64 / t.elapsed().as_secs_f64();
    let mut rates = Vec::new();
    for piece in PIECES {
        let t = Instant::now();
        write_stream(&connection, data, params.stream_bytes, piece).await.unwrap();
        rates.push(mb_per_s(params.stream_bytes, t.elapsed()));
    }
    let t = Instant::now();
    connection
        .emit_with_timeout::<_, ()>("source", &(params.stream_bytes, MIB), Duration::from_secs(300))
        .await
        .unwrap();
    rates.push(mb_per_s(params.stream_bytes, t.elapsed()));
    connection.close(CloseReason::normal("done")).await;
    Figures { connect_ms, first_echo_ms, round_trips_per_s, mb_per_s: rates }
}

pub fn socketio_round(params: &Params) -> Figures {
    let bob = Arc::new(DeviceKeys::generate("bob").unwrap());
    let alice = Arc::new(DeviceKeys::generate("alice").unwrap());
    let url = spawn_listener(move |ready| async move {
        let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
        let _ = ready.send(server.url());
        while let Some(socket) = server.accept().await {
            tokio::spawn(serve(Box::new(socket), bob.clone()));
        }
    });
    crate::common::runtime().block_on(async {
        let started = Instant::now();
        let socket = peers_transport_socketio::connect(&url, ClientOptions::default()).await.unwrap();
        let connection = Connection::connect(Box::new(socket), config(&alice), None).await.unwrap();
        drive(connection, started, params).await
    })
}

pub fn webrtc_round(params: &Params) -> Figures {
    let hub = MemorySignalingHub::new();
    let bob = Arc::new(DeviceKeys::generate("bob").unwrap());
    let alice = Arc::new(DeviceKeys::generate("alice").unwrap());
    let (listener_hub, bob_id) = (hub.clone(), bob.device_id());
    spawn_listener(move |ready| async move {
        let listener = WebRtcEndpoint::new(Arc::new(listener_hub.join(bob.device_id())), WebRtcConfig::loopback());
        let _ = ready.send(());
        while let Ok(socket) = listener.accept().await {
            tokio::spawn(serve(Box::new(socket), bob.clone()));
        }
    });
    crate::common::runtime().block_on(async {
        let dialer = WebRtcEndpoint::new(Arc::new(hub.join(alice.device_id())), WebRtcConfig::loopback());
        let started = Instant::now();
        let socket = dialer.connect(bob_id).await.unwrap();
        let connection = Connection::connect(Box::new(socket), config(&alice), Some(bob_id)).await.unwrap();
        drive(connection, started, params).await
    })
}
