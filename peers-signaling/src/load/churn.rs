//! The churn run: devices signal at random while each one keeps leaving and
//! coming back. At the end every device comes back online and the run waits
//! past the time to live; then every message must have its final outcome
//! (delivered, queued then delivered, expired, rejected), or it is lost.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::fleet::{Command, Fleet, Online, Protocol};
use super::ledger::{Counts, Percentiles, Picker};
use super::steady::leave_all;
use super::{PaceStats, Roster, pace, settle, slot};
use crate::error::Result;

/// Settings of [`run_churn`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ChurnConfig {
    /// Devices. Issue 7: 1,000.
    pub devices: usize,
    /// How long devices signal and churn. Issue 7: 60 s.
    pub duration: Duration,
    /// Signals per second, over all devices.
    pub rate: u32,
    /// Time to live of each signal: a target offline for longer makes it
    /// expire.
    pub ttl: Duration,
    /// How long a device stays online, drawn uniformly from this range.
    pub online: (Duration, Duration),
    /// How long it stays away.
    pub offline: (Duration, Duration),
    /// Size of each signalled message, about.
    pub body_bytes: usize,
    /// Loopback source addresses to spread the devices over.
    pub spread: usize,
    /// Connections being set up at once.
    pub connect_concurrency: usize,
    /// How long past the time to live to wait for the last outcomes.
    pub settle_margin: Duration,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        ChurnConfig {
            devices: 1_000,
            duration: Duration::from_secs(60),
            rate: 500,
            ttl: Duration::from_secs(5),
            online: (Duration::from_secs(2), Duration::from_secs(15)),
            offline: (Duration::from_secs(1), Duration::from_secs(10)),
            body_bytes: 1024,
            spread: 20,
            connect_concurrency: 64,
            settle_margin: Duration::from_secs(10),
        }
    }
}

/// What [`run_churn`] counted.
#[derive(Clone, Debug)]
pub struct ChurnReport {
    /// Every message's outcome.
    pub counts: Counts,
    /// The pacer.
    pub pace: PaceStats,
    /// Registrations, first ones included.
    pub registrations: u64,
    /// Polite departures (leave, then close).
    pub departures: u64,
    /// Connection attempts that failed (retried).
    pub connect_failures: u64,
    /// Connections the server closed while the generator did not ask.
    pub unexpected_closes: u64,
    /// Notices or unexpected frames from the server, by code.
    pub notices: BTreeMap<String, u64>,
    /// Latency of the signals delivered directly, µs.
    pub latency: Percentiles,
    /// Seconds from the end of the churn until every message had its
    /// outcome (or the wait gave up).
    pub settle_seconds: f64,
}

#[derive(Debug, Default)]
struct Counters {
    registrations: AtomicU64,
    departures: AtomicU64,
    connect_failures: AtomicU64,
}

/// Runs the churn against the signaling server at `addr`.
pub async fn run_churn(addr: SocketAddr, namespace: &str, config: &ChurnConfig) -> Result<ChurnReport> {
    let ttl_ms = u64::try_from(config.ttl.as_millis()).unwrap_or(u64::MAX);
    let protocol = Protocol::Signaling { namespace: namespace.to_owned() };
    let fleet = Arc::new(Fleet::new(addr, protocol, config.devices, config.spread, config.body_bytes, Some(ttl_ms))?);
    let roster: Arc<Roster> = Arc::new((0..config.devices).map(|_| Mutex::new(None)).collect());
    let counters = Arc::new(Counters::default());
    let permits = Arc::new(Semaphore::new(config.connect_concurrency.max(1)));
    let (stop, stopped) = watch::channel(false);

    let mut devices = JoinSet::new();
    for index in 0..config.devices {
        let life = Life {
            fleet: fleet.clone(),
            roster: roster.clone(),
            counters: counters.clone(),
            permits: permits.clone(),
            stopped: stopped.clone(),
            config: config.clone(),
            index,
        };
        devices.spawn(life.run());
    }
    let pace = pace(&fleet, &roster, config.rate, config.duration).await;
    let _ = stop.send(true);
    let mut online = Vec::with_capacity(config.devices);
    while let Some(joined) = devices.join_next().await {
        if let Ok(Some(device)) = joined {
            online.push(device);
        }
    }
    let settle_time = settle(&fleet, config.ttl + config.settle_margin).await;
    leave_all(&roster, online).await;
    Ok(ChurnReport {
        counts: fleet.tally.counts(),
        pace,
        registrations: counters.registrations.load(Ordering::Relaxed),
        departures: counters.departures.load(Ordering::Relaxed),
        connect_failures: counters.connect_failures.load(Ordering::Relaxed),
        unexpected_closes: fleet.tally.unexpected_closes.load(Ordering::Relaxed),
        notices: fleet.tally.notices(),
        latency: fleet.tally.percentiles(),
        settle_seconds: settle_time.as_secs_f64(),
    })
}

/// One device's life: online, away, online, …; online for good once the
/// churn stops.
struct Life {
    fleet: Arc<Fleet>,
    roster: Arc<Roster>,
    counters: Arc<Counters>,
    permits: Arc<Semaphore>,
    stopped: watch::Receiver<bool>,
    config: ChurnConfig,
    index: usize,
}

fn between(picker: &mut Picker, (low, high): (Duration, Duration)) -> Duration {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(picker.between(ms(low), ms(high)))
}

impl Life {
    async fn run(mut self) -> Option<Online> {
        let mut picker = Picker::from_entropy();
        loop {
            let device = self.connect().await?;
            if *self.stopped.borrow() {
                return Some(device);
            }
            let stay = between(&mut picker, self.config.online);
            tokio::select! {
                () = tokio::time::sleep(stay) => {}
                _ = self.stopped.wait_for(|stopped| *stopped) => return Some(device),
            }
            if let Some(mut slot) = slot(&self.roster, self.index) {
                *slot = None;
            }
            let _ = device.inbox.send(Command::Leave).await;
            let _ = device.task.await;
            self.counters.departures.fetch_add(1, Ordering::Relaxed);
            let away = between(&mut picker, self.config.offline);
            tokio::select! {
                () = tokio::time::sleep(away) => {}
                _ = self.stopped.wait_for(|stopped| *stopped) => {}
            }
        }
    }

    /// Connects and registers, retrying a few times; publishes the inbox.
    async fn connect(&self) -> Option<Online> {
        for attempt in 0..5u32 {
            let connected = {
                let _permit = self.permits.acquire().await.ok()?;
                let started = Instant::now();
                let connected = self.fleet.connect(self.index).await;
                tracing::trace!(index = self.index, took = ?started.elapsed(), "connect");
                connected
            };
            match connected {
                Ok(device) => {
                    self.counters.registrations.fetch_add(1, Ordering::Relaxed);
                    if let Some(mut slot) = slot(&self.roster, self.index) {
                        *slot = Some(device.inbox.clone());
                    }
                    return Some(device);
                }
                Err(err) => {
                    self.counters.connect_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(index = self.index, attempt, %err, "connect failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
                }
            }
        }
        None
    }
}
