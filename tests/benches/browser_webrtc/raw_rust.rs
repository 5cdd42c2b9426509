//! The raw webrtc-rs peer of the bench (`--raw-rust 1`): what the page's second raw
//! `RTCDataChannel` talks to. No peers code above the library: a peer connection with
//! the settings the Rust device's `WebRtcSocket` runs on (the library's defaults with
//! detached data channels, as `WebRtcConfig::default()` gives on every interface), and
//! a read loop shaped like the socket's: `max_receive_message` bytes at a time, each
//! message copied out and passed through a bounded queue of `receive_queue` frames to
//! a task that counts them. Every `round` bytes it sends the text "done <round>".
//!
//! Signaling is one line each way on a loopback TCP connection from the driver
//! (`tests/js/peers_js_bench.mjs`): the page's offer as a JSON string, then our answer
//! as one, every candidate in it (gathering finished first).

use std::sync::Arc;

use bytes::Bytes;
use peers_transport_webrtc::WebRtcConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use webrtc::api::APIBuilder;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::data::data_channel::DataChannel;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Listens on loopback; returns the port the driver connects to. Each connection is one
/// offer, answered with a peer that counts `round`-byte rounds.
pub(crate) async fn listen(round: u64) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the raw peer's signaling");
    let port = listener.local_addr().expect("local addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Err(error) = answer(stream, round).await {
                    eprintln!("raw webrtc-rs peer: {error}");
                }
            });
        }
    });
    port
}

async fn answer(stream: tokio::net::TcpStream, round: u64) -> Result<(), Failure> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let offer: String = serde_json::from_str(&line)?;
    let config = WebRtcConfig::default();
    let mut settings = SettingEngine::default();
    settings.detach_data_channels();
    let api = APIBuilder::new().with_setting_engine(settings).build();
    let pc = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await?);
    let (open_tx, mut open_rx) = mpsc::channel::<Arc<DataChannel>>(1);
    pc.on_data_channel(Box::new(move |dc| {
        let open_tx = open_tx.clone();
        let weak = Arc::downgrade(&dc);
        dc.on_open(Box::new(move || {
            Box::pin(async move {
                if let Some(dc) = weak.upgrade()
                    && let Ok(detached) = dc.detach().await
                {
                    let _ = open_tx.send(detached).await;
                }
            })
        }));
        Box::pin(async {})
    }));
    pc.set_remote_description(RTCSessionDescription::offer(offer)?).await?;
    let answer = pc.create_answer(None).await?;
    let local = local_description(&pc, answer).await?;
    write.write_all(format!("{}\n", serde_json::to_string(&local.sdp)?).as_bytes()).await?;
    let channel = open_rx.recv().await.ok_or("the raw channel never opened")?;
    let (frames_tx, mut frames) = mpsc::channel::<Bytes>(config.receive_queue.max(1));
    let counter = {
        let channel = Arc::clone(&channel);
        tokio::spawn(async move {
            let mut received = 0u64;
            while let Some(frame) = frames.recv().await {
                received += frame.len() as u64;
                if received == round {
                    received = 0;
                    let done = Bytes::from(format!("done {round}"));
                    if channel.write_data_channel(&done, true).await.is_err() {
                        return;
                    }
                }
            }
        })
    };
    let mut buf = vec![0u8; config.max_receive_message];
    loop {
        match channel.read_data_channel(&mut buf).await {
            Ok((0, false)) | Err(_) => break,
            Ok((n, _)) => {
                if frames_tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    }
    drop(frames_tx);
    let _ = counter.await;
    let _ = pc.close().await;
    Ok(())
}

/// Sets the local description and waits until every candidate is in it.
async fn local_description(
    pc: &RTCPeerConnection,
    sdp: RTCSessionDescription,
) -> Result<RTCSessionDescription, Failure> {
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(sdp).await?;
    let _ = gathered.recv().await;
    pc.local_description().await.ok_or_else(|| "no local description".into())
}
