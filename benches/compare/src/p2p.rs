//! rust-libp2p: TCP (`TCP_NODELAY`), Noise XX, Yamux, one stream from
//! `libp2p-stream`; connect is until the dialer's swarm reports the connection
//! established (Noise and the multiplexer negotiated).

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, tcp, yamux};
use tokio_util::compat::FuturesAsyncReadCompatExt;

use crate::common::{Figures, Params, drive_stream, ms, serve_stream, spawn_listener};

const PROTOCOL: StreamProtocol = StreamProtocol::new("/peers-compare/0");

fn swarm() -> Swarm<libp2p_stream::Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

pub fn round(params: &Params) -> Figures {
    let (peer, addr): (PeerId, Multiaddr) = spawn_listener(|ready| async move {
        let mut swarm = swarm();
        let mut incoming = swarm.behaviour().new_control().accept(PROTOCOL).unwrap();
        swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        };
        let _ = ready.send((*swarm.local_peer_id(), addr));
        tokio::spawn(async move {
            while let Some((_, stream)) = incoming.next().await {
                let (rx, tx) = tokio::io::split(stream.compat());
                tokio::spawn(serve_stream(rx, tx));
            }
        });
        loop {
            swarm.select_next_some().await;
        }
    });
    crate::common::runtime().block_on(async {
        let mut swarm = swarm();
        let mut control = swarm.behaviour().new_control();
        let (established_tx, established_rx) = tokio::sync::oneshot::channel();
        let started = Instant::now();
        swarm.dial(addr.with_p2p(peer).unwrap()).unwrap();
        tokio::spawn(async move {
            let mut established = Some(established_tx);
            loop {
                if let SwarmEvent::ConnectionEstablished { .. } = swarm.select_next_some().await
                    && let Some(tx) = established.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        established_rx.await.unwrap();
        let connect_ms = ms(started.elapsed());
        let stream = control.open_stream(peer, PROTOCOL).await.unwrap();
        let (rx, tx) = tokio::io::split(stream.compat());
        drive_stream(rx, tx, started, connect_ms, params).await
    })
}
