//! P6: many registered devices held idle, then a steady signal rate for a
//! while; the server's memory per idle device, signal latency (the sender's
//! timestamp to the receiver) and the account of every message.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::fleet::{Command, Fleet, Online, Protocol};
use super::ledger::{Counts, Percentiles};
use super::process::{ServerProcess, own_cpu_seconds};
use super::{PaceStats, Roster, pace, settle, slot};
use crate::error::{Error, Result};

/// Settings of [`run_steady`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SteadyConfig {
    /// Devices connected and registered. P6: 10,000.
    pub devices: usize,
    /// Signals per second. P6: 2,000.
    pub rate: u32,
    /// How long the signals run. P6: 30 s.
    pub duration: Duration,
    /// Size of each signalled message, about. P6: 1 KiB.
    pub body_bytes: usize,
    /// Loopback source addresses to spread the devices over.
    pub spread: usize,
    /// Connections being set up at once.
    pub connect_concurrency: usize,
    /// The pause between the last registration and the idle memory reading.
    pub idle_wait: Duration,
    /// How long to wait after the last signal for outstanding outcomes.
    pub drain: Duration,
}

impl Default for SteadyConfig {
    fn default() -> Self {
        SteadyConfig {
            devices: 10_000,
            rate: 2_000,
            duration: Duration::from_secs(30),
            body_bytes: 1024,
            spread: 100,
            connect_concurrency: 200,
            idle_wait: Duration::from_secs(3),
            drain: Duration::from_secs(5),
        }
    }
}

/// What [`run_steady`] measured.
#[derive(Clone, Debug)]
pub struct SteadyReport {
    /// Devices connected.
    pub devices: usize,
    /// Time to connect and register all of them.
    pub connect_seconds: f64,
    /// Server resident memory before any device connected, bytes.
    pub rss_before: u64,
    /// … with every device registered and idle.
    pub rss_idle: u64,
    /// … after the signals.
    pub rss_after: u64,
    /// The pacer.
    pub pace: PaceStats,
    /// Every message's outcome.
    pub counts: Counts,
    /// Probe latency in µs.
    pub latency: Percentiles,
    /// Server CPU seconds during the signal phase.
    pub server_cpu: f64,
    /// Generator CPU seconds during the signal phase.
    pub generator_cpu: f64,
    /// Wall seconds of the signal phase (pacing plus the drain).
    pub relay_wall: f64,
    /// Connections the server closed while the generator did not ask.
    pub unexpected_closes: u64,
    /// Notices or unexpected frames from the server, by code.
    pub notices: BTreeMap<String, u64>,
}

impl SteadyReport {
    /// Server memory per idle device, bytes: (idle − before) / devices.
    pub fn idle_bytes_per_device(&self) -> f64 {
        self.rss_idle.saturating_sub(self.rss_before) as f64 / self.devices.max(1) as f64
    }
}

/// Runs P6 against `server` speaking `protocol`.
pub async fn run_steady(server: &ServerProcess, protocol: Protocol, config: &SteadyConfig) -> Result<SteadyReport> {
    let fleet = Arc::new(Fleet::new(server.addr, protocol, config.devices, config.spread, config.body_bytes, None)?);
    let rss_before = server.rss().unwrap_or_default();
    let roster: Roster = (0..config.devices).map(|_| Mutex::new(None)).collect();
    let connect_start = Instant::now();
    let tasks = connect_all(&fleet, &roster, config.connect_concurrency).await?;
    let connect_seconds = connect_start.elapsed().as_secs_f64();
    tokio::time::sleep(config.idle_wait).await;
    let rss_idle = server.rss().unwrap_or_default();

    fleet.tally.reset_latencies();
    let (server_cpu0, own_cpu0, wall0) = (server.cpu_seconds(), own_cpu_seconds(), Instant::now());
    let pace = pace(&fleet, &roster, config.rate, config.duration).await;
    settle(&fleet, config.drain).await;
    let (server_cpu1, own_cpu1) = (server.cpu_seconds(), own_cpu_seconds());
    let relay_wall = wall0.elapsed().as_secs_f64();
    let rss_after = server.rss().unwrap_or_default();

    leave_all(&roster, tasks).await;
    let cpu = |a: Option<f64>, b: Option<f64>| b.unwrap_or_default() - a.unwrap_or_default();
    Ok(SteadyReport {
        devices: config.devices,
        connect_seconds,
        rss_before,
        rss_idle,
        rss_after,
        pace,
        counts: fleet.tally.counts(),
        latency: fleet.tally.percentiles(),
        server_cpu: cpu(server_cpu0, server_cpu1),
        generator_cpu: cpu(own_cpu0, own_cpu1),
        relay_wall,
        unexpected_closes: fleet.tally.unexpected_closes.load(std::sync::atomic::Ordering::Relaxed),
        notices: fleet.tally.notices(),
    })
}

/// Connects every device, `concurrency` at a time; fails if any fails.
async fn connect_all(fleet: &Arc<Fleet>, roster: &Roster, concurrency: usize) -> Result<Vec<Online>> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for index in 0..fleet.len() {
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let fleet = fleet.clone();
        set.spawn(async move {
            let online = fleet.connect(index).await;
            drop(permit);
            (index, online)
        });
    }
    let mut tasks = Vec::with_capacity(fleet.len());
    let (mut failed, mut first_error) = (0usize, None);
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((index, Ok(online))) => {
                if let Some(mut slot) = slot(roster, index) {
                    *slot = Some(online.inbox.clone());
                }
                tasks.push(online);
            }
            Ok((_, Err(err))) => {
                failed += 1;
                first_error.get_or_insert(err.to_string());
            }
            Err(err) => {
                failed += 1;
                first_error.get_or_insert(err.to_string());
            }
        }
    }
    if failed > 0 {
        leave_all(roster, tasks).await;
        return Err(Error::Connect {
            url: fleet.addr.to_string(),
            detail: format!(
                "{failed} of {} devices failed to connect; first: {}",
                fleet.len(),
                first_error.unwrap_or_default()
            ),
        });
    }
    Ok(tasks)
}

/// Asks every connected device to leave and waits for their tasks.
pub(super) async fn leave_all(roster: &Roster, tasks: Vec<Online>) {
    for index in 0..roster.len() {
        if let Some(mut slot) = slot(roster, index) {
            *slot = None;
        }
    }
    for online in &tasks {
        let _ = online.inbox.send(Command::Leave).await;
    }
    for online in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), online.task).await;
    }
}
