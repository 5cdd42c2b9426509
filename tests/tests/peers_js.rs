//! The TypeScript implementation (`peers-js/`) against the Rust one, as real
//! processes: a Rust `SocketIoServer` + `Connection::accept` on loopback, and a
//! Node `peers-js` device (`peers-js/dist/examples/device.js`, built by
//! `npx tsc -p peers-js`) that dials it, completes the handshake with each
//! transport cipher, calls RPCs on the Rust side (a compressible answer that comes
//! Brotli-compressed, an incompressible 3 MiB one that comes in CHUNK frames), answers one the Rust side calls, streams 64 MiB
//! whose BLAKE3 both sides check, and receives a 9 MiB stream from the Rust side
//! under its own credit; the connection closed by either side, the other reporting the
//! reason; and the Rust side
//! refusing an untrusted JS device with a close reason the JS side reports.

use std::sync::Arc;
use std::time::Duration;

use peers_sdk::rpc::RemoteError;
use peers_sdk::socket::ClosedBy;
use peers_sdk::{
    CloseCode, CloseReason, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, TransportCipher, TrustLevel,
    TrustStore,
};
use peers_tests::JsClient;
use peers_tests::peers_js::{compressible_text, driver, expose_echo_and_upload, expose_text, pattern_blake3};
use peers_transport_socketio::{ServerOptions, SocketIoServer};
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(20);
const STREAM_MIB: usize = 64;

/// Length of the incompressible answer: three CHUNK frames and a bit.
const NOISE_LEN: usize = 3 * 1024 * 1024 + 5;

/// Bytes the Rust side streams to the driver (more than its 4 MiB window).
const DOWNLOAD_LEN: usize = 9 * 1024 * 1024 + 123;

/// Incompressible bytes: sent uncompressed, in CHUNK frames when over a frame.
fn noise(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new().update(b"peers-js noise").finalize_xof().fill(&mut out);
    out
}

fn spawn_driver(server: &SocketIoServer, rust: &DeviceKeys, cipher: &str, mib: usize) -> JsClient {
    let origin = format!("http://{}", server.local_addr());
    let id = rust.device_id().to_string();
    let mib = mib.to_string();
    JsClient::spawn(&driver("device.js"), &[&origin, &id, "--cipher", cipher, "--stream-mib", &mib])
}

async fn js_identity(js: &mut JsClient) -> DeviceInfo {
    let event = js.expect_event("identity", STEP).await;
    DeviceInfo::from_share_code(event["share_code"].as_str().expect("share code")).expect("the JS share code parses")
}

/// The whole exchange; the connection is closed by the Rust side, or by the JS side
/// when `close_by_js`: either way the other side reports the reason.
async fn full_exchange(js_cipher: &str, rust_cipher: TransportCipher, close_by_js: bool) {
    let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
    let keys = Arc::new(DeviceKeys::generate("rust-user").unwrap());
    let mut js = spawn_driver(&server, &keys, js_cipher, STREAM_MIB);
    let js_info = js_identity(&mut js).await;
    let trust = TrustStore::new(TrustLevel::Unknown);
    trust.set(js_info.device_id, TrustLevel::Trusted);

    let (uploads_tx, mut uploads) = mpsc::unbounded_channel();
    let config = ConnectionConfig::new(keys.clone(), trust)
        .with_ciphers([rust_cipher])
        .with_setup(move |connection| expose_echo_and_upload(connection, &uploads_tx))
        .with_setup(|connection| {
            expose_text(connection);
            connection.expose_rpc("rust.noise", |len: usize| async move {
                Ok::<_, RemoteError>(serde_bytes::ByteBuf::from(noise(len)))
            });
        });
    let socket = tokio::time::timeout(STEP, server.accept()).await.expect("the JS device dials").expect("server up");
    let connection = tokio::time::timeout(STEP, Connection::accept(Box::new(socket), config))
        .await
        .expect("handshake in time")
        .expect("the JS device completes the handshake");
    assert_eq!(connection.remote().device_id, js_info.device_id);
    assert_eq!(connection.cipher(), Some(rust_cipher), "both sides sealed with the negotiated cipher");

    let connected = js.expect_event("connected", STEP).await;
    assert_eq!(connected["peer"], keys.device_id().to_string(), "{connected}");
    let echo = js.expect_event("echo", STEP).await;
    assert_eq!(echo["reply"]["text"], "HELLO FROM PEERS-JS", "{echo}");
    assert_eq!(echo["reply"]["n"], 42, "{echo}");

    let text_event = js.expect_event("text", STEP).await;
    assert_eq!(text_event["length"], 300_000, "{text_event}");
    assert_eq!(
        text_event["blake3"],
        blake3::hash(compressible_text(300_000).as_bytes()).to_hex().as_str(),
        "{text_event}"
    );

    let noise_event = js.expect_event("noise", STEP).await;
    assert_eq!(noise_event["length"], NOISE_LEN, "{noise_event}");
    assert_eq!(noise_event["blake3"], blake3::hash(&noise(NOISE_LEN)).to_hex().as_str(), "{noise_event}");

    let streamed = js.expect_event("streamed", Duration::from_secs(120)).await;
    let upload = uploads.recv().await.expect("the upload handler finished");
    let size = (STREAM_MIB as u64) << 20;
    assert_eq!((upload.declared, upload.received), (size, size), "every byte arrived");
    assert_eq!(streamed["bytes"], size, "{streamed}");
    let expected = pattern_blake3(STREAM_MIB);
    assert_eq!(upload.blake3, expected, "the Rust side received the driver's pattern");
    assert_eq!(streamed["blake3"], expected, "the JS side hashed what it sent");

    // Rust to JS: a stream the JS reader takes under its own credit.
    let download: Vec<u8> = (0..DOWNLOAD_LEN).map(|i| (i * 13 + (i >> 12)) as u8).collect();
    let mut writer = connection.open_stream("download", "from rust").await.expect("the JS side accepts the stream");
    for piece in download.chunks(100_000) {
        writer.write(piece).await.expect("write within the JS side's credit");
    }
    writer.finish().await.expect("the JS handler reports success");
    let downloaded = js.expect_event("downloaded", STEP).await;
    assert_eq!(downloaded["meta"], "from rust", "{downloaded}");
    assert_eq!(downloaded["bytes"], DOWNLOAD_LEN, "{downloaded}");
    assert_eq!(downloaded["blake3"], blake3::hash(&download).to_hex().as_str(), "{downloaded}");

    let reversed: String = connection.emit("js.reverse", "peers-js").await.expect("the JS handler answers");
    assert_eq!(reversed, "sj-sreep");
    let unknown = connection.emit::<_, String>("js.missing", &()).await.expect_err("no such method");
    assert!(unknown.to_string().contains("UnknownMethod"), "{unknown}");

    if close_by_js {
        let () = connection.emit("js.close", &()).await.expect("the JS side agrees to close");
        let reason = tokio::time::timeout(STEP, connection.closed()).await.expect("the JS side closes");
        assert_eq!((reason.code, reason.message.as_str(), reason.by), (CloseCode::Normal, "js done", ClosedBy::Remote));
        let closed = js.expect_event("closed", STEP).await;
        assert_eq!(closed["reason"]["by"], "Local", "{closed}");
    } else {
        connection.close(CloseReason::new(CloseCode::Normal, "rust done")).await;
        let closed = js.expect_event("closed", STEP).await;
        assert_eq!(closed["reason"]["code"], "Normal", "{closed}");
        assert_eq!(closed["reason"]["message"], "rust done", "{closed}");
        assert_eq!(closed["reason"]["by"], "Remote", "{closed}");
    }
    let (status, stderr) = js.wait(STEP).await;
    assert!(status.success(), "driver failed: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_device_over_socketio_with_chacha20_poly1305() {
    full_exchange("chacha", TransportCipher::ChaCha20Poly1305, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_device_over_socketio_with_aes_256_gcm() {
    full_exchange("aes", TransportCipher::Aes256Gcm, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_js_device_is_refused_with_a_reason_it_reports() {
    let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
    let keys = Arc::new(DeviceKeys::generate("rust-user").unwrap());
    let mut js = spawn_driver(&server, &keys, "chacha", 1);
    let js_info = js_identity(&mut js).await;
    let config = ConnectionConfig::new(keys.clone(), TrustStore::new(TrustLevel::Unknown));
    let socket = tokio::time::timeout(STEP, server.accept()).await.expect("the JS device dials").expect("server up");
    let refused = tokio::time::timeout(STEP, Connection::accept(Box::new(socket), config))
        .await
        .expect("handshake in time")
        .expect_err("an Unknown device is below the Known floor");
    assert!(refused.to_string().contains(&js_info.device_id.to_string()), "{refused}");
    let event = js.expect_event("refused", STEP).await;
    assert_eq!(event["kind"], "Closed", "{event}");
    assert_eq!(event["code"], "Refused", "{event}");
    let message = event["message"].as_str().unwrap_or_default();
    assert!(message.contains("handshake failed") && message.contains("below the required Known"), "{event}");
    assert!(message.contains(&js_info.device_id.to_string()), "the reason names the refused device: {event}");
}
