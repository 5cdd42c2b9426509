//! A load generator for the signaling server (feature `load-gen`, off by
//! default): thousands of devices in one process against a server in a child
//! process, with every message accounted for.
//!
//! It drives two programs: `benches/load.rs` (P6: 10,000 idle devices, a
//! steady signal rate, latency percentiles and server memory per device, with
//! the PeerJS server as the baseline; and the churn run) and
//! `tests/signaling_load.rs` (a small churn run that must lose nothing). It
//! lives in the library behind a feature, not in `tests/`, because a bench
//! cannot import a test module and the two must not drift apart.
//!
//! Why its own client and not [`SignalingClient`](crate::SignalingClient):
//! 10,000 `rust_socketio` clients cost a polling task, callbacks and
//! channels each, and the generator would measure itself. The lean client
//! (`wire`) speaks engine.io v4 / socket.io v5 text packets straight over a
//! WebSocket with small buffers, and still registers for real: the server's
//! challenge is signed with each device's ed25519 key through
//! [`protocol::answer_challenge`](crate::protocol::answer_challenge).
//!
//! Parts:
//!
//! - [`ledger`]: sans-IO accounting of every message (delivered, queued then
//!   delivered, expired, rejected, or lost) and latency percentiles.
//! - [`process`]: the server's child process, its resident memory and CPU
//!   time from `/proc`.
//! - `fleet`: the devices, the shared account, the per-device task loop.
//! - `signaling`, `peerjs` and `socketio`: the protocols (ours; PeerJS's, which
//!   the plain `ws` baseline speaks too; the socket.io baseline's).
//! - [`run_steady`]: P6's steady signal rate; [`run_churn`]: devices leaving
//!   and coming back while relaying.
//!
//! Devices are spread over loopback source addresses (`127.0.0.2` onwards),
//! as real devices come from many addresses: the server's per-IP limits then
//! apply per hundred devices, as they would per household or NAT.
//!
//! What it does not do: run anywhere but Linux (`/proc`), measure a remote
//! server, or raise its own open-file limit (it checks it; run `ulimit -n`
//! first; the servers it starts get their hard limit).

mod churn;
mod fleet;
pub mod ledger;
mod peerjs;
pub mod process;
mod signaling;
mod socketio;
mod steady;
mod wire;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

pub use churn::{ChurnConfig, ChurnReport, run_churn};
pub use fleet::{LEAVE_GRACE, Protocol};
pub use steady::{SteadyConfig, SteadyReport, run_steady};
pub use wire::MAX_SOURCE_ADDRESSES;

use fleet::{Command, Fleet};
use ledger::Picker;

/// Signals the pacer issued.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PaceStats {
    /// Handed to a device's inbox.
    pub issued: u64,
    /// Not sent: the chosen sender's inbox was full, or no online sender was
    /// found (the generator's limit, not the server's).
    pub skipped: u64,
    /// How long the pacer ran, in seconds.
    pub seconds: f64,
    /// The most signals that were due at one tick (2 per 1 ms tick at
    /// 2,000/s; more means the pacer fell behind and caught up).
    pub max_due_at_once: u64,
}

impl PaceStats {
    /// Signals issued per second.
    pub fn achieved_rate(&self) -> f64 {
        if self.seconds > 0.0 { self.issued as f64 / self.seconds } else { 0.0 }
    }
}

/// The inbox of each device that is online, by index.
type Roster = Vec<Mutex<Option<mpsc::Sender<Command>>>>;

fn slot(roster: &Roster, index: usize) -> Option<MutexGuard<'_, Option<mpsc::Sender<Command>>>> {
    roster.get(index).map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Issues `rate` signals per second for `duration`, on a 1 ms ticker, each from
/// a random online device to a random other device.
async fn pace(fleet: &Fleet, roster: &Roster, rate: u32, duration: Duration) -> PaceStats {
    let mut picker = Picker::from_entropy();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let start = Instant::now();
    let mut stats = PaceStats::default();
    loop {
        ticker.tick().await;
        let elapsed = start.elapsed().min(duration);
        let due = (f64::from(rate) * elapsed.as_secs_f64()) as u64;
        let now_due = due.saturating_sub(stats.issued + stats.skipped);
        stats.max_due_at_once = stats.max_due_at_once.max(now_due);
        for _ in 0..now_due {
            if issue(fleet, roster, &mut picker) {
                stats.issued += 1;
            } else {
                stats.skipped += 1;
            }
        }
        if elapsed >= duration {
            break;
        }
    }
    stats.seconds = start.elapsed().as_secs_f64();
    stats
}

/// One signal from a random online device; false if none took it.
fn issue(fleet: &Fleet, roster: &Roster, picker: &mut Picker) -> bool {
    let devices = fleet.len();
    if devices < 2 {
        return false;
    }
    for _ in 0..8 {
        let from = picker.below(devices);
        let Some(slot) = slot(roster, from) else { continue };
        let Some(inbox) = slot.as_ref() else { continue };
        let mut to = picker.below(devices - 1);
        if to >= from {
            to += 1;
        }
        return inbox.try_send(Command::Probe(fleet.probe(to))).is_ok();
    }
    false
}

/// Waits until every message sent has its final outcome, or `limit` passes.
async fn settle(fleet: &Fleet, limit: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit && fleet.tally.ledger().pending() > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}
