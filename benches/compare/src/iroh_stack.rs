//! iroh: QUIC with TLS keyed by each endpoint's ed25519 key, dialed by endpoint id
//! and direct address. No relay and no address lookup: only loopback is used.

use std::time::Instant;

use iroh::{Endpoint, EndpointAddr};

use crate::common::{Figures, Params, drive_stream, ms, serve_stream, spawn_listener};

const ALPN: &[u8] = b"peers-compare/0";

async fn endpoint(alpns: Vec<Vec<u8>>) -> Endpoint {
    iroh::endpoint::Builder::empty()
        .preset(iroh::endpoint::presets::Minimal)
        .bind_addr("127.0.0.1:0")
        .unwrap()
        .alpns(alpns)
        .bind()
        .await
        .unwrap()
}

pub fn round(params: &Params) -> Figures {
    let addr: EndpointAddr = spawn_listener(|ready| async move {
        let endpoint = endpoint(vec![ALPN.to_vec()]).await;
        let _ = ready.send(endpoint.addr());
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else { return };
                while let Ok((tx, rx)) = connection.accept_bi().await {
                    tokio::spawn(serve_stream(rx, tx));
                }
            });
        }
    });
    crate::common::runtime().block_on(async {
        let endpoint = endpoint(vec![]).await;
        let started = Instant::now();
        let connection = endpoint.connect(addr, ALPN).await.unwrap();
        let connect_ms = ms(started.elapsed());
        let (tx, rx) = connection.open_bi().await.unwrap();
        let figures = drive_stream(rx, tx, started, connect_ms, params).await;
        connection.close(0u32.into(), b"done");
        endpoint.close().await;
        figures
    })
}
