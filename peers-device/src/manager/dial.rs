//! Reaching devices: the loop that keeps a device connected, over the
//! [`Dialer`]s transports implement (the trait and its [`DialError`] live in
//! `peers-sdk`; they are re-exported here at their old path).
//!
//! For each device kept connected, every dialer that could give a better class
//! than the connection held is tried, all at once; each has its own backoff. The
//! first to succeed carries traffic at once, and a better one that succeeds later
//! takes over (see `links`). So a WebRTC dial that takes its full timeout does not
//! delay the socket.io connection, and is retried later, on its backoff, while
//! the socket.io connection is in use.

use std::sync::{Arc, Weak};
use std::time::Instant;

use peers_sdk::{Connection, DeviceId};
use rand_core::{OsRng, RngCore};
use tokio::sync::{mpsc, watch};
use tracing::debug;

use super::api::{Inner, lock};
use super::backoff::Backoff;
use super::status::ManagerEvent;
pub use peers_sdk::dial::{DialError, Dialer};

struct DialerState {
    backoff: Backoff,
    next: Instant,
    in_flight: bool,
}

/// The loop behind [`ConnectionManager::keep_connected`](super::ConnectionManager::keep_connected).
pub(super) async fn keep_connected(inner: Weak<Inner>, device: DeviceId, mut changed: watch::Receiver<u64>) {
    let (done_tx, mut done_rx) = mpsc::channel::<(usize, bool)>(16);
    let mut states: Vec<DialerState> = Vec::new();
    let mut was_connected = false;
    let mut network_epoch = 0;
    loop {
        let next_wake = {
            let Some(inner) = inner.upgrade() else { return };
            let dialers = inner.dialers.read().unwrap_or_else(|e| e.into_inner()).clone();
            let now = Instant::now();
            let epoch = inner.network_epoch.load(std::sync::atomic::Ordering::SeqCst);
            if epoch != network_epoch {
                // The network changed: what failed before may work now.
                network_epoch = epoch;
                for state in &mut states {
                    state.backoff = Backoff::new(inner.config.backoff.clone());
                    state.next = now;
                }
            }
            while states.len() < dialers.len() {
                states.push(DialerState {
                    backoff: Backoff::new(inner.config.backoff.clone()),
                    next: now,
                    in_flight: false,
                });
            }
            let active = inner.best_class(&device);
            if was_connected && active.is_none() {
                for state in &mut states {
                    state.next = state.backoff.on_closed(now, unit());
                }
            }
            was_connected = active.is_some();
            // A suspect link does not hold back the paths it would fail over to.
            let floor = inner.dial_floor(&device);
            let mut next_wake: Option<Instant> = None;
            for (index, dialer) in dialers.iter().enumerate() {
                let state = &mut states[index];
                let Some(class) = dialer.class_for(&device) else { continue };
                if state.in_flight || floor.is_some_and(|floor| class >= floor) {
                    continue;
                }
                if state.next <= now {
                    state.in_flight = true;
                    tokio::spawn(attempt(inner.clone(), dialer.clone(), device, index, done_tx.clone()));
                } else {
                    next_wake = Some(next_wake.map_or(state.next, |at: Instant| at.min(state.next)));
                }
            }
            next_wake
        };
        let sleep = async {
            match next_wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = changed.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            Some((index, connected)) = done_rx.recv() => {
                let now = Instant::now();
                if let Some(state) = states.get_mut(index) {
                    state.in_flight = false;
                    if connected {
                        state.backoff.on_connected(now);
                    } else {
                        state.next = state.backoff.on_dial_failed(now, unit());
                    }
                }
            }
            () = sleep => {}
        }
    }
}

/// One dial: socket, handshake, adoption, within the dialer's timeout.
async fn attempt(
    inner: Arc<Inner>,
    dialer: Arc<dyn Dialer>,
    device: DeviceId,
    index: usize,
    done: mpsc::Sender<(usize, bool)>,
) {
    let (config, adoption) = inner.connection_config();
    let outcome = tokio::time::timeout(dialer.timeout(), async {
        let socket = dialer.dial(device).await.map_err(|e| e.to_string())?;
        Connection::connect(socket, config, Some(device)).await.map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|_| Err(DialError::Timeout { after: dialer.timeout() }.to_string()));
    let connected = match outcome {
        Ok(connection) => match inner.adopt(connection, true, adoption).await {
            Ok(()) => true,
            Err(err) => {
                debug!(peer = %device, dialer = dialer.name(), %err, "dialed connection not kept");
                false
            }
        },
        Err(reason) => {
            debug!(peer = %device, dialer = dialer.name(), %reason, "dial failed");
            let mut state = lock(&inner.state);
            if let Some(class) = dialer.class_for(&device) {
                state.note_path(device, dialer.name(), class, reason.clone());
            }
            let event = ManagerEvent::DialFailed { device, dialer: dialer.name().to_owned(), reason };
            inner.record(&mut state, event);
            false
        }
    };
    let _ = done.send((index, connected)).await;
}

/// A uniform random number in [0, 1) for backoff jitter.
fn unit() -> f64 {
    f64::from(OsRng.next_u32()) / (f64::from(u32::MAX) + 1.0)
}
