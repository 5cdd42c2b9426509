//! The churn load at small scale: 200 devices relaying for 8 s while each
//! keeps leaving and coming back, against the real `peers-signaling` binary
//! (SQLite store). Every message must end delivered, queued then delivered,
//! expired or rejected, with nothing lost and nothing received twice. The
//! full run (1,000 devices, 60 s) is `benches/load.rs churn`.

use std::time::Duration;

use peers_signaling::load::process::{ServerProcess, ServerStore};
use peers_signaling::load::{ChurnConfig, run_churn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::signaling(
        env!("CARGO_BIN_EXE_peers-signaling").as_ref(),
        &ServerStore::Sqlite(data.path().to_path_buf()),
        &[],
    )
    .await
    .unwrap();
    let mut config = ChurnConfig::default();
    config.devices = 200;
    config.duration = Duration::from_secs(8);
    config.rate = 200;
    config.ttl = Duration::from_secs(2);
    config.online = (Duration::from_millis(500), Duration::from_secs(4));
    config.offline = (Duration::from_millis(300), Duration::from_secs(3));
    config.spread = 4;
    let report = run_churn(server.addr, peers_signaling::protocol::DEFAULT_NAMESPACE, &config).await.unwrap();
    server.stop().await;
    let counts = &report.counts;
    assert!(counts.is_clean(), "{report:#?}");
    assert!(counts.sent > 1000, "{report:#?}");
    // The churn must have exercised every path: direct delivery, delivery
    // from the queue on reconnect, and expiry with a notice.
    assert!(counts.delivered > 0 && counts.queued_then_delivered > 0 && counts.expired_in_queue > 0, "{report:#?}");
    assert!(report.departures > 50, "{report:#?}");
    assert_eq!(report.unexpected_closes, 0, "{report:#?}");
}
