//! Helpers shared by the bench programs.

use std::time::Duration;

/// Time to spend on each row or cell: `--quick` gives `quick`, otherwise
/// `PEERS_BENCH_SECONDS` or `default_seconds`.
pub(crate) fn budget(default_seconds: f64, quick: Duration) -> Duration {
    if std::env::args().any(|a| a == "--quick") {
        return quick;
    }
    let seconds =
        std::env::var("PEERS_BENCH_SECONDS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(default_seconds);
    Duration::from_secs_f64(seconds.max(0.001))
}
