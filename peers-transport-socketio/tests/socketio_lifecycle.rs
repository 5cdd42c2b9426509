//! Servers that stop, refuse or vanish, as a client sees it.

use std::time::{Duration, Instant};

use peers_sdk::conformance::connect_trusting;
use peers_sdk::rpc::RemoteError;
use peers_sdk::socket::ClosedBy;
use peers_sdk::{CloseCode, Connection, Error, Socket};
use peers_transport_socketio::{ClientOptions, ServerOptions, SocketIoServer, SocketIoSocket, connect};

const PROMPT: Duration = Duration::from_secs(5);

async fn dial(server: &SocketIoServer) -> (SocketIoSocket, SocketIoSocket) {
    let url = server.url();
    let (dialed, accepted) = tokio::join!(connect(&url, ClientOptions::default()), server.accept());
    (dialed.unwrap(), accepted.unwrap())
}

/// Alice (client) and Bob (behind the server), with a call from Alice that Bob
/// never answers.
async fn hanging_call(
    server: &SocketIoServer,
) -> (Connection, Connection, tokio::task::JoinHandle<peers_sdk::Result<()>>) {
    let (dialed, accepted) = dial(server).await;
    let (alice, bob) = connect_trusting(Box::new(dialed), Box::new(accepted)).await;
    bob.expose_rpc("hang", |(): ()| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, RemoteError>(())
    });
    let call = tokio::spawn({
        let alice = alice.clone();
        async move { alice.emit_with_timeout::<_, ()>("hang", &(), Duration::from_secs(60)).await }
    });
    // Let the call reach Bob.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(alice.pending_calls(), 1);
    (alice, bob, call)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_shutdown_closes_the_client_with_a_reason_and_fails_pending_calls() {
    let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
    let (alice, _bob, call) = hanging_call(&server).await;
    let started = Instant::now();
    server.shutdown().await;
    let reason = tokio::time::timeout(PROMPT, alice.closed()).await.expect("client never saw the shutdown");
    assert_eq!(reason.code, CloseCode::GoingAway, "{reason}");
    assert!(reason.message.contains("server shutting down"), "{reason}");
    let err = tokio::time::timeout(PROMPT, call).await.expect("pending call hung").unwrap().unwrap_err();
    assert!(matches!(err, Error::Closed { .. }), "pending call failed with {err}");
    assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_server_closes_the_client_too() {
    let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
    let (client, _accepted) = dial(&server).await;
    drop(server);
    let reason = tokio::time::timeout(PROMPT, client.closed()).await.expect("client never saw the drop");
    assert_eq!((reason.code, reason.by), (CloseCode::GoingAway, ClosedBy::Remote), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_vanishes_without_a_reason_is_a_transport_failure() {
    let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
    let (alice, _bob, call) = hanging_call(&server).await;
    // Close every engine.io connection without our close notice, as a crashing
    // or foreign server would.
    server.socket_io().close().await;
    let reason = tokio::time::timeout(PROMPT, alice.closed()).await.expect("client never noticed");
    assert_eq!(reason.code, CloseCode::TransportFailure, "{reason}");
    let err = tokio::time::timeout(PROMPT, call).await.expect("pending call hung").unwrap().unwrap_err();
    assert!(matches!(err, Error::Closed { .. }), "pending call failed with {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused_with_a_reason() {
    let mut options = ServerOptions::default();
    options.max_connections = 1;
    let server = SocketIoServer::bind(options).await.unwrap();
    let (first, accepted) = dial(&server).await;
    let err = connect(&server.url(), ClientOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("connection limit"), "{err}");
    assert_eq!(server.acceptor().connections(), 1);
    // Closing the first frees the slot.
    first.close(peers_sdk::CloseReason::normal("done")).await;
    tokio::time::timeout(PROMPT, accepted.closed()).await.unwrap();
    drop(accepted);
    let deadline = Instant::now() + PROMPT;
    while server.acceptor().connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (again, _accepted) = dial(&server).await;
    again.send(bytes::Bytes::from_static(b"ok")).await.unwrap();
}

#[tokio::test]
async fn dialing_nothing_fails_cleanly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = connect(&format!("http://{addr}/"), ClientOptions::default()).await.unwrap_err();
    assert!(matches!(err, peers_transport_socketio::Error::Connect { .. }), "{err}");
    let err = connect("ftp://example.com/", ClientOptions::default()).await.unwrap_err();
    assert!(matches!(err, peers_transport_socketio::Error::InvalidUrl { .. }), "{err}");
}
