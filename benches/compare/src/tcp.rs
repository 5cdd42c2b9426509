//! Plain tokio TCP with `TCP_NODELAY`: the floor, with no security at all.

use std::time::Instant;

use tokio::net::{TcpListener, TcpStream};

use crate::common::{Figures, Params, drive_stream, ms, serve_stream, spawn_listener};

pub fn round(params: &Params) -> Figures {
    let addr = spawn_listener(|ready| async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _ = ready.send(listener.local_addr().unwrap());
        while let Ok((tcp, _)) = listener.accept().await {
            tcp.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let (rx, tx) = tcp.into_split();
                serve_stream(rx, tx).await;
            });
        }
    });
    crate::common::runtime().block_on(async {
        let started = Instant::now();
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let connect_ms = ms(started.elapsed());
        let (rx, tx) = tcp.into_split();
        drive_stream(rx, tx, started, connect_ms, params).await
    })
}
