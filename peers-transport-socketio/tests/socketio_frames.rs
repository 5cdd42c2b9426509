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
