//! The in-memory pair passes the `Socket` conformance suite.

use peers_sdk::{BoxSocket, MemorySocket};

async fn pair() -> (BoxSocket, BoxSocket) {
    let (a, b) = MemorySocket::pair(64, 64 * 1024);
    (Box::new(a), Box::new(b))
}

peers_sdk::socket_conformance_tests!(pair);
