//! The peers-sdk `Socket` conformance suite over real WebRTC data channels on
//! loopback, with the dialing and the accepting side each as `a` in turn.

mod common;

use peers_sdk::BoxSocket;

async fn pair() -> (BoxSocket, BoxSocket) {
    let (dialed, accepted) = common::socket_pair().await;
    (Box::new(dialed), Box::new(accepted))
}

peers_sdk::socket_conformance_tests!(pair);
