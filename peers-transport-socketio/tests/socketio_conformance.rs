//! The `Socket` conformance suite over a real socket.io server and client on
//! loopback, with each side as `a` in turn.

use peers_sdk::BoxSocket;
use peers_transport_socketio::{ClientOptions, ServerOptions, SocketIoServer, connect};

/// A fresh server on 127.0.0.1:0, dialed by the client: (client socket, accepted
/// server socket).
async fn pair() -> (BoxSocket, BoxSocket) {
    let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
    let url = server.url();
    let (dialed, accepted) = tokio::join!(connect(&url, ClientOptions::default()), server.accept());
    let pair: (BoxSocket, BoxSocket) = (Box::new(dialed.unwrap()), Box::new(accepted.unwrap()));
    // Dropping the server would close both sockets; it lives as long as the
    // test's runtime, which stops its tasks at the end of the test.
    std::mem::forget(server);
    pair
}

peers_sdk::socket_conformance_tests!(pair);
