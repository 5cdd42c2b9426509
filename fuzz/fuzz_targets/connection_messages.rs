//! Plays a verified peer that sends arbitrary messages on a `Connection`: RPC
//! calls, replies and failures, stream opens, data, credit, ends, resets, and
//! raw bytes that are no envelope at all. The connection must never panic
//! (a panic in any of its tasks aborts the process under libFuzzer), must end
//! every case either open or closed with a reason, and must leave nothing
//! behind: every task it started ends once it closes.
//!
//! The peer skips the handshake (`Connection::without_handshake`, a
//! `test-utils` constructor) so a case costs microseconds rather than a
//! handshake's key agreement and signatures; what follows the handshake is
//! byte for byte what a verified peer can send (frames are not sealed, which
//! only removes the AEAD's open step, fuzzed apart from this).
//!
//! Input layout: messages, each a selector byte, then for envelopes a stream
//! or call id byte, a number byte and a body (a length byte and that many
//! bytes); a selector of 12 or more sends the body alone as a raw message.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use peers_sdk::codec::{CodecConfig, FrameEncoder};
use peers_sdk::rpc::{RemoteError, RemoteErrorCode};
use peers_sdk::socket::{CloseCode, CloseReason, MemorySocket, Socket};
use peers_sdk::{Connection, ConnectionConfig, ConnectionState, DeviceInfo, DeviceKeys, TrustLevel};
use serde::Serialize;

/// The envelope as `docs/protocol.md` gives it (MessagePack, serde's named
/// enum encoding), written here from the document, not from the crate.
#[derive(Serialize)]
enum Wire {
    Ready,
    Call { id: u64, method: String },
    Reply { id: u64 },
    Fail { id: u64, error: RemoteError },
    Close { reason: CloseReason },
    StreamOpen { id: u64, name: String },
    StreamAccept { id: u64, window: u64 },
    StreamData { id: u64 },
    StreamEnd { id: u64 },
    StreamReset { id: u64, error: RemoteError },
    StreamCredit { id: u64, bytes: u64 },
    StreamDone { id: u64, error: Option<RemoteError> },
}

const MAX_FRAME: usize = 16 * 1024;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    keys: Arc<DeviceKeys>,
    remote: DeviceInfo,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        runtime: tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime"),
        keys: Arc::new(DeviceKeys::generate("victim").expect("keys")),
        remote: DeviceKeys::generate("peer").and_then(|keys| keys.info(Vec::new())).expect("keys"),
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    fixture.runtime.block_on(run(fixture, data));
});

async fn run(fixture: &Fixture, data: &[u8]) {
    let (ours, theirs) = MemorySocket::pair(64, MAX_FRAME);
    let mut config =
        ConnectionConfig::new(fixture.keys.clone(), |_: &DeviceInfo| TrustLevel::Trusted).with_setup(|connection| {
            connection.expose_rpc("echo", |bytes: serde_bytes::ByteBuf| async move { Ok(bytes) });
            connection.expose_stream("sink", |_meta: u8, mut reader| async move {
                while let Ok(Some(_)) = reader.next().await {}
                Ok(())
            });
        });
    config.max_concurrent_handlers = 4;
    config.max_incoming_streams = 2;
    config.stream_window = 4096;
    config.call_timeout = Duration::from_millis(50);
    let codec = CodecConfig { max_message_size: 64 * 1024, ..CodecConfig::default() };
    config.codec = codec.clone();
    let connection = Connection::without_handshake(Box::new(ours), config, fixture.remote.clone());
    let theirs = Arc::new(theirs);
    // The victim's side of things the peer can answer: a call (id 1) and a stream.
    let call = {
        let connection = connection.clone();
        tokio::spawn(async move { connection.emit::<_, u32>("x", &1u32).await })
    };
    let writer = {
        let connection = connection.clone();
        tokio::spawn(async move {
            let mut writer = connection.open_stream("up", &0u8).await?;
            writer.write(&[7; 5000]).await?;
            writer.finish().await
        })
    };
    // Whatever the victim sends is read and dropped.
    let drain = {
        let theirs = theirs.clone();
        tokio::spawn(async move { while theirs.recv().await.is_ok() {} })
    };
    let mut encoder = FrameEncoder::new(codec);
    for message in messages(data) {
        let Ok(frames) = encoder.encode(&message, MAX_FRAME, 0, 0) else { continue };
        for frame in frames {
            if theirs.send(frame.freeze()).await.is_err() {
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
    if !matches!(connection.state(), ConnectionState::Closed(_)) {
        connection.close(CloseReason::new(CloseCode::Normal, "done")).await;
    }
    let reason = connection.closed().await;
    assert!(reason.message.len() <= CloseReason::MAX_MESSAGE_LEN);
    drop(connection);
    let _ = call.await;
    let _ = writer.await;
    theirs.close(CloseReason::new(CloseCode::Normal, "done")).await;
    let _ = drain.await;
}

/// The messages `data` describes.
fn messages(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some((&selector, rest)) = data.split_first() {
        let (id, number, body, rest) = match rest {
            [id, number, len, tail @ ..] => {
                let len = usize::from(*len).min(tail.len());
                (u64::from(*id % 4), u64::from(*number), &tail[..len], &tail[len..])
            }
            _ => (0, 0, rest, &[][..]),
        };
        data = rest;
        let error = || RemoteError::new(RemoteErrorCode::Handler, String::from_utf8_lossy(body));
        let name = || ["echo", "sink", "none", "up"][usize::from(number as u8 % 4)].to_owned();
        let envelope = match selector {
            0 => Wire::Ready,
            1 => Wire::Call { id, method: name() },
            2 => Wire::Reply { id },
            3 => Wire::Fail { id, error: error() },
            4 => Wire::Close { reason: CloseReason::new(CloseCode::Normal, String::from_utf8_lossy(body)) },
            5 => Wire::StreamOpen { id, name: name() },
            6 => Wire::StreamAccept { id, window: number * 256 },
            7 => Wire::StreamData { id },
            8 => Wire::StreamEnd { id },
            9 => Wire::StreamReset { id, error: error() },
            10 => Wire::StreamCredit { id, bytes: number * 256 },
            11 => Wire::StreamDone { id, error: (number & 1 == 1).then(error) },
            _ => {
                out.push(body.to_vec());
                continue;
            }
        };
        let Ok(mut message) = rmp_serde::to_vec_named(&envelope) else { continue };
        message.extend_from_slice(body);
        out.push(message);
    }
    out
}
