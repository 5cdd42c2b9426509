//! `Connection` throughput over the in-memory socket pair, with our AEAD on and off.
//!
//! Each row sends messages of one size through an RPC, `sink(bytes) -> u32`, with
//! many calls in flight at once (a window of spawned `emit`s), so the figure is
//! throughput, not round-trip latency. MB/s count payload bytes delivered to the
//! handler.
//!
//! - AEAD on: a plain `MemorySocket` pair; every frame is sealed, once with each
//!   transport cipher (`ConnectionConfig::with_ciphers` forces it): ChaCha20-Poly1305
//!   and AES-256-GCM (negotiated by default where the CPU has AES instructions).
//! - AEAD off: a pair that claims `confidential: true` and a matching channel
//!   binding, so the handshake skips our AEAD (`is_encrypted()` is checked).
//! - Baseline: the raw `MemorySocket`, each frame a fresh copy of the payload (one
//!   memcpy), sent and received; no codec, no RPC, no sealing.
//! - AEAD floor: the cipher alone sealing and opening the same frames and a small
//!   reply, in place, with no I/O. It bounds what AEAD-on can reach: the
//!   `model` column is the on/off ratio a stack whose only extra cost is this AEAD
//!   work would show, `floor / (floor + off)`.
//!
//! Payloads are random, so the default Brotli setting finds nothing to compress
//! (1 MiB messages are sampled and sent as they are; 1 KiB ones are below the 4 KiB
//! threshold); one row uses compressible JSON-like data. Everything runs on one
//! current-thread runtime: the figures are one core's work for both ends. Modes
//! are interleaved in rounds and the best round kept.
//!
//! `cargo bench -p peers-sdk --bench throughput`; shorter: append `-- --quick`, or
//! set `PEERS_BENCH_SECONDS` to the seconds spent on each cell (default 2).

mod common;

use std::borrow::Cow;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use peers_sdk::handshake::TransportCipher;
use peers_sdk::rpc::RemoteError;
use peers_sdk::socket::{ChannelBinding, TransportSecurity};
use peers_sdk::{CloseReason, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, MemorySocket, Socket, TrustLevel};
use ring::aead;
use serde_bytes::ByteBuf;
use tokio::task::JoinSet;

/// Largest socket frame, as a WebRTC data channel would allow.
const MAX_FRAME: usize = 256 * 1024;
/// Frames each direction of the memory pair buffers.
const SOCKET_CAPACITY: usize = 64;
const ROUNDS: u32 = 3;
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn cell_budget() -> Duration {
    common::budget(2.0, Duration::from_millis(300))
}

fn random_bytes(len: usize) -> Vec<u8> {
    peers_sdk::testdata::incompressible(len, 0x5eed)
}

/// JSON-like records that Brotli shrinks to about a quarter.
fn compressible_bytes(len: usize) -> Vec<u8> {
    let mut out = String::with_capacity(len + 128);
    let mut i = 0u64;
    while out.len() < len {
        i += 1;
        let r = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        out.push_str(&format!(
            "{{\"id\":{i},\"device\":\"dev-{:02x}\",\"ts\":{},\"kind\":\"note\",\"value\":{}}},\n",
            (r >> 56) % 24,
            1_760_000_000_000 + (r >> 20) % 1_000_000,
            (r >> 40) % 10_000,
        ));
    }
    out.truncate(len);
    out.into_bytes()
}

/// A connected pair over memory sealing with `cipher`; `bound` makes the transport
/// claim confidentiality and a channel binding, so our AEAD is skipped.
async fn connect(bound: bool, cipher: TransportCipher) -> (Connection, Connection) {
    let security = if bound {
        TransportSecurity {
            confidential: true,
            channel_binding: Some(ChannelBinding {
                kind: Cow::Borrowed("bench-binding"),
                local: vec![1; 32],
                remote: vec![2; 32],
            }),
        }
    } else {
        TransportSecurity::default()
    };
    let (a, b) = MemorySocket::pair_with_security(SOCKET_CAPACITY, MAX_FRAME, security);
    let alice = Arc::new(DeviceKeys::generate("alice").unwrap());
    let bob = Arc::new(DeviceKeys::generate("bob").unwrap());
    let trust = |_: &DeviceInfo| TrustLevel::Trusted;
    let (dialer, listener) = tokio::join!(
        Connection::connect(Box::new(a), ConnectionConfig::new(alice, trust).with_ciphers([cipher]), None),
        Connection::accept(Box::new(b), ConnectionConfig::new(bob, trust)),
    );
    let (dialer, listener) = (dialer.unwrap(), listener.unwrap());
    assert_eq!(dialer.is_encrypted(), !bound, "AEAD mode is not the one asked for");
    assert_eq!(listener.is_encrypted(), !bound);
    if !bound {
        assert_eq!(dialer.cipher(), Some(cipher), "negotiated another cipher");
    }
    listener.expose_rpc("sink", |data: ByteBuf| async move { Ok::<_, RemoteError>(data.len() as u32) });
    (dialer, listener)
}

/// Calls `sink(payload)` with `window` calls in flight for about `budget`; MB/s.
async fn rpc_rate(dialer: &Connection, payload: &Arc<Vec<u8>>, window: usize, budget: Duration) -> f64 {
    let mut calls = JoinSet::new();
    let mut delivered = 0usize;
    let start = Instant::now();
    let spawn = |calls: &mut JoinSet<_>| {
        let (dialer, payload) = (dialer.clone(), payload.clone());
        calls.spawn(async move { dialer.emit::<_, u32>("sink", serde_bytes::Bytes::new(&payload)).await });
    };
    for _ in 0..window {
        spawn(&mut calls);
    }
    while let Some(done) = calls.join_next().await {
        let len = done.unwrap().unwrap() as usize;
        assert_eq!(len, payload.len());
        delivered += len;
        if start.elapsed() < budget {
            spawn(&mut calls);
        }
    }
    delivered as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// The baseline: the payload copied into fresh frames and sent over a raw pair.
async fn raw_rate(payload: &Arc<Vec<u8>>, budget: Duration) -> f64 {
    let (a, b) = MemorySocket::pair(SOCKET_CAPACITY, MAX_FRAME);
    let payload = payload.clone();
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        while start.elapsed() < budget {
            for chunk in payload.chunks(MAX_FRAME) {
                a.send(Bytes::copy_from_slice(chunk)).await.unwrap();
            }
        }
        a.close(CloseReason::normal("done")).await;
    });
    let mut received = 0usize;
    while let Ok(frame) = b.recv().await {
        received += black_box(frame).len();
    }
    sender.await.unwrap();
    received as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// The AEAD floor of `cipher` (`ring`, as the connection uses it): seal and open
/// every frame of `payload` and a 32-byte reply, in place; MB/s of payload.
fn aead_floor_rate(cipher: TransportCipher, payload: &[u8], budget: Duration) -> f64 {
    let algorithm = match cipher {
        TransportCipher::Aes256Gcm => &aead::AES_256_GCM,
        _ => &aead::CHACHA20_POLY1305,
    };
    let key = || aead::LessSafeKey::new(aead::UnboundKey::new(algorithm, &[7; 32]).unwrap());
    let (seal, open) = (key(), key());
    let mut frames: Vec<Vec<u8>> = payload.chunks(MAX_FRAME).map(<[u8]>::to_vec).collect();
    frames.push(vec![0; 32]);
    let mut counter = 0u64;
    let mut done = 0usize;
    let start = Instant::now();
    while start.elapsed() < budget {
        for frame in &mut frames {
            counter += 1;
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&counter.to_le_bytes());
            let nonce = || aead::Nonce::assume_unique_for_key(nonce);
            let tag = seal.seal_in_place_separate_tag(nonce(), aead::Aad::empty(), frame).unwrap();
            frame.extend_from_slice(tag.as_ref());
            let len = open.open_in_place(nonce(), aead::Aad::empty(), frame).unwrap().len();
            frame.truncate(len);
        }
        done += payload.len();
    }
    done as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn main() {
    let budget = cell_budget();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ciphers = [TransportCipher::ChaCha20Poly1305, TransportCipher::Aes256Gcm];
    let (plain_dialer, _plain_listener) = runtime.block_on(connect(true, ciphers[0]));
    let sealed: Vec<(Connection, Connection)> =
        ciphers.iter().map(|&cipher| runtime.block_on(connect(false, cipher))).collect();

    println!(
        "throughput benchmark: {budget:?} per cell, best of {ROUNDS} interleaved rounds, \
         one current-thread runtime, socket frames of at most 256 KiB"
    );
    let line = "-".repeat(131);
    println!("{line}");
    println!(
        "{:<20} {:>6} {:>9} {:>18} {:>11} {:>11} {:>11} {:>11} {:>7} {:>7} {:>7}",
        "data",
        "size",
        "in flight",
        "AEAD",
        "raw socket",
        "AEAD floor",
        "AEAD off",
        "AEAD on",
        "on/off",
        "model",
        "on/raw"
    );
    println!("{:<20} {:>6} {:>9} {:>18} {:>11} {:>11} {:>11} {:>11}", "", "", "", "", "MB/s", "MB/s", "MB/s", "MB/s");
    println!("{line}");
    let rows: [(&str, Vec<u8>, usize); 3] = [
        ("random", random_bytes(KIB), 128),
        ("random", random_bytes(MIB), 8),
        ("compressible (JSON)", compressible_bytes(MIB), 8),
    ];
    for (data, payload, window) in rows {
        let payload = Arc::new(payload);
        let slice = budget / ROUNDS;
        let (mut raw, mut off) = (0f64, 0f64);
        let (mut floor, mut on) = ([0f64; 2], [0f64; 2]);
        runtime.block_on(async {
            // Warm-up: allocator, code paths, the peers' buffers.
            rpc_rate(&plain_dialer, &payload, window, slice / 10).await;
            for (dialer, _) in &sealed {
                rpc_rate(dialer, &payload, window, slice / 10).await;
            }
            for _ in 0..ROUNDS {
                raw = raw.max(raw_rate(&payload, slice).await);
                off = off.max(rpc_rate(&plain_dialer, &payload, window, slice).await);
                for (i, (dialer, _)) in sealed.iter().enumerate() {
                    floor[i] = floor[i].max(aead_floor_rate(ciphers[i], &payload, slice));
                    on[i] = on[i].max(rpc_rate(dialer, &payload, window, slice).await);
                }
            }
        });
        let size = if payload.len() >= MIB { format!("{} MiB", payload.len() / MIB) } else { "1 KiB".into() };
        for (i, cipher) in ciphers.iter().enumerate() {
            let (floor, on) = (floor[i], on[i]);
            println!(
                "{data:<20} {size:>6} {window:>9} {:>18} {raw:>11.0} {floor:>11.0} {off:>11.0} {on:>11.0} {:>7.2} {:>7.2} {:>7.3}",
                cipher.to_string(),
                on / off,
                floor / (floor + off),
                on / raw
            );
        }
    }
    println!("{line}");
    println!("target: AEAD on / off >= 0.8. For compressible data MB/s count bytes before compression.");
}
