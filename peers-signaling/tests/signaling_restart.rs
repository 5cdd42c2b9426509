//! The `peers-signaling` binary: queued messages survive killing the process
//! (embedded SQLite store), and configuration errors name the field.

mod common;

use common::*;
use peers_signaling::{ClientEvent, Outcome, SignalKind, SignalingClient, SignalingClientOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_survive_killing_the_server() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let (mut server, url) = start_binary(&["--bind", "127.0.0.1:0", "--data-dir", data_dir]).await;
    let alice_keys = keys("alice");
    let bob_keys = keys("bob");
    let alice = SignalingClient::connect(&url, &alice_keys, SignalingClientOptions::default()).await.unwrap();
    let ids = queue_five_candidates(&alice, &bob_keys.device_id()).await;
    // No graceful shutdown: the process dies with the messages queued.
    server.kill().await.unwrap();
    let reason = tokio::time::timeout(PROMPT, alice.closed()).await.expect("the client noticed the server died");
    assert!(alice.is_closed(), "{reason}");

    let (_server, url) = start_binary(&["--bind", "127.0.0.1:0", "--data-dir", data_dir]).await;
    let bob = SignalingClient::connect(&url, &bob_keys, SignalingClientOptions::default()).await.unwrap();
    expect_five_candidates(&mut bob.incoming().unwrap(), &ids, &alice_keys).await;
    // Alice was offline when they were delivered: she hears it when she is back.
    let alice = SignalingClient::connect(&url, &alice_keys, SignalingClientOptions::default()).await.unwrap();
    let mut events = alice.events().unwrap();
    for id in &ids {
        let (got, outcome) = event(&mut events, |e| match e {
            ClientEvent::Outcome { id, outcome, .. } => Some((id.clone(), outcome.clone())),
            _ => None,
        })
        .await;
        assert_eq!((&got, outcome), (id, Outcome::Delivered));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_a_toml_file_and_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signaling.toml");
    std::fs::write(&file, "bind = \"127.0.0.1:0\"\nmemory = true\nqueue_per_device = 1\n").unwrap();
    let (_server, url) = start_binary(&["--config", file.to_str().unwrap()]).await;
    let alice = SignalingClient::connect(&url, &keys("alice"), SignalingClientOptions::default()).await.unwrap();
    let bob = keys("bob").device_id();
    assert!(matches!(alice.send(&bob, SignalKind::Ready, json!({})).await.unwrap().outcome, Outcome::Queued { .. }));
    let second = alice.send(&bob, SignalKind::Ready, json!({})).await.unwrap();
    assert!(matches!(second.outcome, Outcome::Rejected { .. }), "the file's queue_per_device = 1 applies: {second:?}");

    let stderr =
        binary_fails(vec!["--memory".into(), "true".into(), "--max-ttl-ms".into(), "999999999999".into()]).await;
    assert!(stderr.contains("queue.max_ttl"), "{stderr}");
    std::fs::write(&file, "bind = \"127.0.0.1:0\"\nqueue_size = 3\n").unwrap();
    let stderr = binary_fails(vec!["--config".into(), file.to_str().unwrap().into()]).await;
    assert!(stderr.contains("queue_size"), "{stderr}");
    let stderr =
        binary_fails(vec!["--memory".into(), "true".into(), "--turn-url".into(), "turn:127.0.0.1:3478".into()]).await;
    assert!(stderr.contains("ice.turn_secret"), "{stderr}");
}
