//! The signaling server mounted into an application's own axum router, on a
//! `SocketIo` it shares with the socket.io transport's acceptor: both
//! namespaces work side by side, and the router serves `/healthz`.

use std::net::SocketAddr;
use std::time::Duration;

use peers_sdk::{DeviceKeys, Socket};
use peers_signaling::{Outcome, ServerConfig, SignalKind, SignalingClient, SignalingClientOptions, SignalingServer};
use peers_transport_socketio::{ClientOptions as TransportOptions, ServerOptions, SocketIoAcceptor, configure_builder};
use serde_json::json;
use socketioxide::SocketIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STEP: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signaling_shares_a_router_and_a_socket_io_with_the_transport() {
    let transport_options = ServerOptions::default();
    let (layer, io) = configure_builder(SocketIo::builder(), &transport_options).build_layer();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = SocketIoAcceptor::attach(&io, transport_options, Some(addr)).unwrap();
    let signaling = SignalingServer::attach(&io, ServerConfig::in_memory()).unwrap();
    assert!(signaling.url().is_none(), "an attached server has no listener of its own");
    let app = axum::Router::new()
        .route("/app", axum::routing::get(|| async { "the application's own route" }))
        .merge(signaling.http_routes())
        .layer(layer)
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{addr}");

    // Signaling on /signaling.
    let alice =
        SignalingClient::connect(&url, &DeviceKeys::generate("alice").unwrap(), SignalingClientOptions::default())
            .await
            .unwrap();
    let bob = SignalingClient::connect(&url, &DeviceKeys::generate("bob").unwrap(), SignalingClientOptions::default())
        .await
        .unwrap();
    let mut bob_in = bob.incoming().unwrap();
    let sent = alice.send(bob.device_id(), SignalKind::Offer, json!({"sdp": "v=0"})).await.unwrap();
    assert_eq!(sent.outcome, Outcome::Delivered);
    assert_eq!(tokio::time::timeout(STEP, bob_in.recv()).await.unwrap().unwrap().id, sent.id);

    // The transport on / at the same time.
    let transport_url = format!("{url}/socket.io/");
    let (dialed, accepted) =
        tokio::join!(peers_transport_socketio::connect(&transport_url, TransportOptions::default()), acceptor.accept());
    let (dialed, accepted) = (dialed.unwrap(), accepted.unwrap());
    dialed.send(bytes::Bytes::from_static(b"frame")).await.unwrap();
    assert_eq!(tokio::time::timeout(STEP, accepted.recv()).await.unwrap().unwrap(), &b"frame"[..]);

    // The application's routes and ours.
    for (path, expected) in [("/app", "the application's own route"), ("/healthz", "ok")] {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut response = String::new();
        tokio::time::timeout(STEP, tcp.read_to_string(&mut response)).await.unwrap().unwrap();
        assert!(response.starts_with("HTTP/1.1 200") && response.ends_with(expected), "{path}: {response}");
    }

    // Shutting the signaling server down leaves the transport running.
    signaling.shutdown().await;
    tokio::time::timeout(STEP, alice.closed()).await.expect("signaling clients are disconnected");
    dialed.send(bytes::Bytes::from_static(b"still")).await.unwrap();
    assert_eq!(tokio::time::timeout(STEP, accepted.recv()).await.unwrap().unwrap(), &b"still"[..]);
}
