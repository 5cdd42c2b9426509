//! A peer whose process is killed mid-transfer (SIGKILL: no close message, no
//! DTLS alert, no SCTP abort, just silence): the other side's connection closes
//! within the ICE timeouts (disconnected 5 s + failed 10 s), and its pending RPCs
//! fail instead of hanging.
//!
//! The victim runs in a child process: the `webrtc_victim` binary of this crate.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peers_sdk::{CloseCode, Connection, ConnectionConfig, DeviceInfo, Error as SdkError, TrustLevel};
use peers_tests::webrtc::{Device, signaling_server};
use peers_transport_webrtc::WebRtcConfig;
use tokio::io::{AsyncBufReadExt, BufReader};

fn trust_all(_: &DeviceInfo) -> TrustLevel {
    TrustLevel::Trusted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_peer_is_detected_by_ice() {
    let server = signaling_server().await;
    let url = server.url().expect("server url");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_webrtc_victim"))
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the victim");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next_marker = async |marker: &str| loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("victim went quiet")
            .expect("victim output")
            .expect("victim exited");
        if let Some(at) = line.find(marker) {
            return line[at + marker.len()..].split_whitespace().next().unwrap_or_default().to_string();
        }
    };
    let victim: peers_sdk::DeviceId = next_marker("VICTIM").await.parse().expect("victim id");

    let alice = Device::register(&url, "alice", WebRtcConfig::loopback()).await;
    let socket = alice.endpoint.connect(victim).await.expect("dial the victim");
    let connection = Arc::new(
        Connection::connect(Box::new(socket), ConnectionConfig::new(alice.keys.clone(), trust_all), Some(victim))
            .await
            .expect("handshake"),
    );
    next_marker("READY").await;
    let calls: Vec<_> = ["stall", "upload"]
        .into_iter()
        .map(|name| {
            let connection = connection.clone();
            tokio::spawn(async move {
                let result = if name == "stall" {
                    connection.emit_with_timeout::<_, ()>("stall", &(), Duration::from_secs(300)).await
                } else {
                    let data = serde_bytes::ByteBuf::from(vec![0xa5; 32 * 1024 * 1024]);
                    connection.emit_with_timeout::<_, u64>("upload", &data, Duration::from_secs(300)).await.map(|_| ())
                };
                (name, result)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.start_kill().expect("kill the victim");
    let killed = Instant::now();

    let reason =
        tokio::time::timeout(Duration::from_secs(45), connection.closed()).await.expect("never saw the peer die");
    let after = killed.elapsed();
    assert_eq!(reason.code, CloseCode::TransportFailure, "{reason}");
    for call in calls {
        let (name, result) = call.await.expect("call task");
        assert!(matches!(result, Err(SdkError::Closed { .. })), "pending {name} should fail with Closed: {result:?}");
    }
    eprintln!("killed peer detected after {after:?}: {reason}");
    let _ = child.wait().await;
}
