//! P3: `Connection` throughput over WebRTC against a raw data channel of the same
//! library, in the same run.
//!
//! Rows, each on a fresh pair of peer connections on loopback (one process, a
//! two-worker runtime, in-memory signaling):
//!
//! - raw data channel: the `webrtc` library alone, one detached ordered channel,
//!   messages of the size our socket uses (its `max_frame_size`), the sender held
//!   at a 4 MiB buffered amount, the receiver counting bytes. The baseline.
//! - WebRtcSocket: our socket's `send`/`recv` with frames of `max_frame_size`.
//! - Connection, AEAD off: `sink(bytes)` RPCs of 1 MiB random payloads, 8 in
//!   flight; the DTLS fingerprints are bound, so our AEAD is skipped.
//! - Connection, AEAD on: the same with our AEAD kept (one side does not ask to
//!   skip it).
//!
//! MB/s count payload bytes delivered. Rows are interleaved in rounds and the best
//! round kept. `cargo bench -p peers-transport-webrtc --all-features --bench
//! webrtc_throughput`; `PEERS_BENCH_MIB` sets the bytes per cell (default 64).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use peers_sdk::rpc::RemoteError;
use peers_sdk::{Connection, ConnectionConfig, DeviceInfo, DeviceKeys, Socket, TrustLevel};
use peers_transport_webrtc::{MemorySignalingHub, WebRtcConfig, WebRtcEndpoint, WebRtcSocket};
use serde_bytes::ByteBuf;
use tokio::task::JoinSet;
use webrtc::api::APIBuilder;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::data_channel::RTCDataChannel;
use webrtc::ice::network_type::NetworkType;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;

const MIB: usize = 1024 * 1024;
const ROUNDS: usize = 5;
const HIGH_WATER: usize = 4 * MIB;
const RPC_PAYLOAD: usize = MIB;
const RPC_IN_FLIGHT: usize = 8;

fn total_bytes() -> usize {
    std::env::var("PEERS_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(64) * MIB
}

fn random_bytes(len: usize) -> Vec<u8> {
    peers_sdk::testdata::incompressible(len, 0x5eed)
}

fn trust_all(_: &DeviceInfo) -> TrustLevel {
    TrustLevel::Trusted
}

struct Devices {
    alice: Arc<DeviceKeys>,
    bob: Arc<DeviceKeys>,
    dialer: WebRtcEndpoint,
    listener: WebRtcEndpoint,
}

fn devices() -> Devices {
    let hub = MemorySignalingHub::new();
    let alice = Arc::new(DeviceKeys::generate("alice").expect("keys"));
    let bob = Arc::new(DeviceKeys::generate("bob").expect("keys"));
    let dialer = WebRtcEndpoint::new(Arc::new(hub.join(alice.device_id())), WebRtcConfig::loopback());
    let listener = WebRtcEndpoint::new(Arc::new(hub.join(bob.device_id())), WebRtcConfig::loopback());
    Devices { alice, bob, dialer, listener }
}

async fn socket_pair(devices: &Devices) -> (WebRtcSocket, WebRtcSocket) {
    let (a, b) = tokio::join!(devices.dialer.connect(devices.bob.device_id()), devices.listener.accept());
    (a.expect("dial"), b.expect("accept"))
}

/// The library alone: two peer connections, loopback candidates, one detached
/// channel; returns MB/s.
async fn raw_channel(message: usize, total: usize) -> f64 {
    async fn pc() -> Arc<RTCPeerConnection> {
        let mut settings = SettingEngine::default();
        settings.detach_data_channels();
        settings.set_include_loopback_candidate(true);
        settings.set_network_types(vec![NetworkType::Udp4]);
        settings.set_ip_filter(Box::new(|ip| ip.is_loopback()));
        let api = APIBuilder::new().with_setting_engine(settings).build();
        Arc::new(api.new_peer_connection(RTCConfiguration::default()).await.expect("pc"))
    }
    let (a, b) = (pc().await, pc().await);
    for (from, to) in [(&a, &b), (&b, &a)] {
        let to = Arc::downgrade(to);
        from.on_ice_candidate(Box::new(move |candidate| {
            let to = to.clone();
            Box::pin(async move {
                if let (Some(c), Some(to)) = (candidate, to.upgrade()) {
                    let _ = to.add_ice_candidate(c.to_json().expect("candidate")).await;
                }
            })
        }));
    }
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<Arc<RTCDataChannel>>(2);
    fn report_open(dc: &Arc<RTCDataChannel>, tx: tokio::sync::mpsc::Sender<Arc<RTCDataChannel>>) {
        let weak = Arc::downgrade(dc);
        dc.on_open(Box::new(move || {
            if let Some(dc) = weak.upgrade() {
                let _ = tx.try_send(dc);
            }
            Box::pin(async {})
        }));
    }
    let tx = open_tx.clone();
    b.on_data_channel(Box::new(move |dc| {
        report_open(&dc, tx.clone());
        Box::pin(async {})
    }));
    let dc = a.create_data_channel("raw", None).await.expect("channel");
    report_open(&dc, open_tx);
    let offer = a.create_offer(None).await.expect("offer");
    a.set_local_description(offer.clone()).await.expect("local");
    b.set_remote_description(offer).await.expect("remote");
    let answer = b.create_answer(None).await.expect("answer");
    b.set_local_description(answer.clone()).await.expect("local");
    a.set_remote_description(answer).await.expect("remote");
    let (first, second) = (open_rx.recv().await.expect("open"), open_rx.recv().await.expect("open"));
    let (sender, receiver) = if Arc::ptr_eq(&first, &dc) { (first, second) } else { (second, first) };
    let (sender, receiver) = (sender.detach().await.expect("detach"), receiver.detach().await.expect("detach"));
    let payload = Bytes::from(random_bytes(message));
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        while got < total {
            got += receiver.read(&mut buf).await.expect("read");
        }
    });
    let mut sent = 0;
    while sent < total {
        while sender.buffered_amount() > HIGH_WATER {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sender.write(&payload).await.expect("write");
        sent += message;
    }
    reader.await.expect("reader");
    let rate = total as f64 / started.elapsed().as_secs_f64() / 1e6;
    let _ = a.close().await;
    let _ = b.close().await;
    rate
}

async fn socket_rate(devices: &Devices, total: usize) -> (f64, usize) {
    let (a, b) = socket_pair(devices).await;
    let frame = Bytes::from(random_bytes(a.info().max_frame_size));
    let size = frame.len();
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < total {
            got += b.recv().await.expect("recv").len();
        }
        b
    });
    let mut sent = 0;
    while sent < total {
        a.send(frame.clone()).await.expect("send");
        sent += size;
    }
    let _b = reader.await.expect("reader");
    (total as f64 / started.elapsed().as_secs_f64() / 1e6, size)
}

async fn connection_rate(devices: &Devices, total: usize, skip_aead: bool) -> f64 {
    let (a, b) = socket_pair(devices).await;
    let alice_config = ConnectionConfig::new(devices.alice.clone(), trust_all);
    let mut bob_config = ConnectionConfig::new(devices.bob.clone(), trust_all);
    bob_config.handshake.skip_aead_when_bound = skip_aead;
    let (alice, bob) = tokio::join!(
        Connection::connect(Box::new(a), alice_config, Some(devices.bob.device_id())),
        Connection::accept(Box::new(b), bob_config),
    );
    let (alice, bob) = (Arc::new(alice.expect("connect")), bob.expect("accept"));
    assert_eq!(alice.is_encrypted(), !skip_aead);
    bob.expose_rpc("sink", |data: ByteBuf| async move { Ok::<_, RemoteError>(data.len() as u32) });
    let payload = ByteBuf::from(random_bytes(RPC_PAYLOAD));
    let calls = total / RPC_PAYLOAD;
    let started = Instant::now();
    let mut in_flight = JoinSet::new();
    for _ in 0..calls {
        if in_flight.len() >= RPC_IN_FLIGHT {
            in_flight.join_next().await.expect("call").expect("task");
        }
        let (alice, payload) = (alice.clone(), payload.clone());
        in_flight.spawn(async move {
            let n: u32 = alice.emit_with_timeout("sink", &payload, Duration::from_secs(120)).await.expect("sink");
            assert_eq!(n as usize, RPC_PAYLOAD);
        });
    }
    while let Some(done) = in_flight.join_next().await {
        done.expect("task");
    }
    (calls * RPC_PAYLOAD) as f64 / started.elapsed().as_secs_f64() / 1e6
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let total = total_bytes();
        let devices = devices();
        let (mut raw, mut socket, mut off, mut on) = (0f64, 0f64, 0f64, 0f64);
        let mut frame = 0;
        for round in 0..ROUNDS {
            let (rate, size) = socket_rate(&devices, total).await;
            frame = size;
            socket = socket.max(rate);
            raw = raw.max(raw_channel(frame, total).await);
            off = off.max(connection_rate(&devices, total, true).await);
            on = on.max(connection_rate(&devices, total, false).await);
            eprintln!("round {round}: raw {raw:.1}, socket {socket:.1}, connection off {off:.1}, on {on:.1} MB/s");
        }
        println!("P3: throughput over WebRTC on loopback, {} MiB per cell, best of {ROUNDS} rounds", total / MIB);
        println!(
            "messages of {frame} bytes on the data channel; RPCs of {} MiB, {RPC_IN_FLIGHT} in flight",
            RPC_PAYLOAD / MIB
        );
        println!();
        println!("| path | MB/s | × raw |");
        println!("|---|---|---|");
        for (name, rate) in [
            ("raw data channel (webrtc 0.17.2)", raw),
            ("WebRtcSocket", socket),
            ("Connection, AEAD off (DTLS bound)", off),
            ("Connection, AEAD on", on),
        ] {
            println!("| {name} | {rate:.1} | {:.2} |", rate / raw);
        }
    });
}
