//! Frames whose bytes the transport must take care with, over a real socket.io
//! server and client on loopback, in both directions: 0x1e (engine.io's record
//! separator, which `rust_socketio` splits incoming messages at) and 0x1d (the
//! escape byte), at every density, in frames up to the largest allowed.

use bytes::Bytes;
use peers_sdk::Socket;
use peers_transport_socketio::{ClientOptions, FrameLimits, ServerOptions, SocketIoServer, SocketIoSocket, connect};

async fn dial(server: &SocketIoServer) -> (SocketIoSocket, SocketIoSocket) {
    let url = server.url();
    let (dialed, accepted) = tokio::join!(connect(&url, ClientOptions::default()), server.accept());
    (dialed.unwrap(), accepted.unwrap())
}

/// Frames of `len` bytes made of 0x1e, of 0x1d, of both alternating, of runs of
/// each between ordinary bytes, and pseudo-random bytes (the density of an
/// encrypted frame).
fn awkward_frames(len: usize) -> Vec<Bytes> {
    let mut state = 0x9e37_79b9_u32;
    let random = (0..len).map(|_| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state as u8
    });
    let patterned = |f: fn(usize) -> u8| Bytes::from((0..len).map(f).collect::<Vec<u8>>());
    vec![
        Bytes::from(vec![0x1e; len]),
        Bytes::from(vec![0x1d; len]),
        patterned(|i| if i % 2 == 0 { 0x1e } else { 0x1d }),
        patterned(|i| [0x1e, 0x1e, 0x41, 0x1d, 0x1d, 0x01, 0x02, 0x1d][i % 8]),
        // Ends on the escape byte and starts on the separator.
        patterned(|i| {
            if i == 0 {
                0x1e
            } else if i % 1000 == 999 {
                0x1d
            } else {
                0x42
            }
        }),
        Bytes::from(random.collect::<Vec<u8>>()),
    ]
}

async fn round_trip(from: &SocketIoSocket, to: &SocketIoSocket, frames: &[Bytes], direction: &str) {
    let send = async {
        for frame in frames {
            from.send(frame.clone()).await.unwrap();
        }
    };
    let receive = async {
        for (i, frame) in frames.iter().enumerate() {
            let got = to.recv().await.unwrap();
            assert_eq!(got.len(), frame.len(), "{direction}: frame {i} changed size");
            assert!(got == *frame, "{direction}: frame {i} damaged");
        }
    };
    tokio::join!(send, receive);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_full_of_record_separators_and_escapes_arrive_intact_both_ways() {
    let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
    let (client, accepted) = dial(&server).await;
    let max = FrameLimits::default().max_frame_size;
    // Small frames go as text events, the rest as binary ones.
    for len in [1, 2, 1023, 1024, 70_000, max] {
        let frames = awkward_frames(len);
        round_trip(&accepted, &client, &frames, "server → client").await;
        round_trip(&client, &accepted, &frames, "client → server").await;
    }
}

/// What a raw `rust_socketio` client, answering the server's hello with `hello`,
/// receives as the attachment of a `"b"` event when the server sends `frame`; and
/// the server's hello.
async fn attachment_for(hello: serde_json::Value, frame: Bytes) -> (Bytes, serde_json::Value) {
    use rust_socketio::asynchronous::{Client, ClientBuilder};
    use rust_socketio::{Payload, TransportType};
    type Done = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

    let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let on = |tx: tokio::sync::mpsc::UnboundedSender<Payload>| {
        move |payload: Payload, _: Client| -> Done {
            let _ = tx.send(payload);
            Box::pin(std::future::ready(()))
        }
    };
    let (hello_tx, mut server_hello) = tokio::sync::mpsc::unbounded_channel();
    let client = ClientBuilder::new(server.url())
        .transport_type(TransportType::Websocket)
        .on("peers:hello", on(hello_tx))
        .on("b", on(tx))
        .connect()
        .await
        .unwrap();
    let step = std::time::Duration::from_secs(5);
    let Some(Payload::Text(server_hello)) = tokio::time::timeout(step, server_hello.recv()).await.unwrap() else {
        panic!("no server hello");
    };
    client.emit("peers:hello", Payload::Text(vec![hello])).await.unwrap();
    let accepted = tokio::time::timeout(step, server.accept()).await.unwrap().unwrap();
    accepted.send(frame).await.unwrap();
    let Some(Payload::Binary(attachment)) = tokio::time::timeout(step, seen.recv()).await.unwrap() else {
        panic!("no binary frame");
    };
    let _ = client.disconnect().await;
    (attachment, server_hello[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_only_escape_or_ask_for_nothing_get_what_they_asked_for() {
    let limits = FrameLimits::default();
    let hello = |extra: serde_json::Value| {
        let mut hello = serde_json::json!({
            "v": 1,
            "maxFrame": limits.max_frame_size,
            "window": {"frames": limits.recv_window_frames, "bytes": limits.recv_window_bytes},
        });
        hello.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        hello
    };
    // Above the size the server sends as text to a client that escapes.
    let mut frame = vec![0x41; 2048];
    frame[..4].copy_from_slice(&[0x1e, 0x1d, 0x42, 0x1e]);
    let frame = Bytes::from(frame);

    // A client from before the patched format (escaping only): escaped frames.
    let (escaped, server_hello) =
        attachment_for(hello(serde_json::json!({"escapeRecordSeparators": true})), frame.clone()).await;
    assert_eq!(server_hello["patchRecordSeparators"], true, "the server says it can patch");
    assert_eq!(&escaped[..7], &[0x1d, 0x01, 0x1d, 0x02, 0x42, 0x1d, 0x01]);
    assert_eq!(&escaped[7..], &frame[4..]);
    // A JavaScript client (neither field): raw frames. (Without 0x1e, which this
    // `rust_socketio` client would split the message at.)
    let mut no_separator = frame.to_vec();
    no_separator[..4].copy_from_slice(&[0x1d, 0x1d, 0x42, 0x1d]);
    let (raw, _) = attachment_for(hello(serde_json::json!({})), Bytes::from(no_separator.clone())).await;
    assert_eq!(raw, no_separator);
    // Ours (both fields): patched, 0x1e at offsets 0 and 3 (gaps 0, 2).
    let both = serde_json::json!({"escapeRecordSeparators": true, "patchRecordSeparators": true});
    let (patched, _) = attachment_for(hello(both), frame.clone()).await;
    assert_eq!(&patched[..4], &[0x1f, 0x1d, 0x42, 0x1f]);
    assert_eq!(&patched[4..2048], &frame[4..]);
    assert_eq!(&patched[2048..], &[0x40, 0x42, 0x40, 0x40, 0x40, 0x42]);
}
