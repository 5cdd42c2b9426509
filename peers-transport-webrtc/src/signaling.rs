//! The signaling abstraction: how signals reach another device.
//!
//! An implementation delivers [`WebRtcSignal`]s to a device id and hands out the signals
//! addressed to this device, each with the sender's id *as the channel
//! authenticated it* (the signaling server checks a signature at registration; an
//! existing connection ran our handshake). The endpoint trusts that `from` and
//! nothing else in a signal.

use std::fmt;

use async_trait::async_trait;
use peers_sdk::DeviceId;

use crate::config::IceServer;
use crate::error::Result;
use crate::signal::WebRtcSignal;

/// A signal addressed to this device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingSignal {
    /// The sender, as authenticated by the signaling channel.
    pub from: DeviceId,
    /// The signal.
    pub signal: WebRtcSignal,
}

/// Sends signals to devices and receives the ones addressed to us.
///
/// Implementations: `MemorySignalingHub` (feature
/// `test-utils`); an adapter over the signaling server's client; later, signals
/// relayed over existing connections.
#[async_trait]
pub trait Signaling: Send + Sync + fmt::Debug + 'static {
    /// This device's id.
    fn local_device(&self) -> DeviceId;

    /// Delivers `signal` to device `to`, or fails when the channel cannot.
    async fn send(&self, to: DeviceId, signal: WebRtcSignal) -> Result<()>;

    /// The next signal addressed to us. `Ok(None)` means the channel ended. An
    /// `Err` reports one bad signal (for example a body that does not parse); the
    /// endpoint logs it and keeps reading.
    async fn recv(&self) -> Result<Option<IncomingSignal>>;

    /// ICE servers the channel provides (the signaling server's STUN and TURN,
    /// with fresh time-limited credentials). Default: none.
    async fn ice_servers(&self) -> Result<Vec<IceServer>> {
        Ok(Vec::new())
    }
}

#[cfg(feature = "test-utils")]
pub use memory::{Interceptor, MemorySignaling, MemorySignalingHub};

#[cfg(feature = "test-utils")]
mod memory {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use peers_sdk::DeviceId;
    use tokio::sync::mpsc;

    use super::{IncomingSignal, Signaling};
    use crate::config::IceServer;
    use crate::error::{Error, Result};
    use crate::signal::WebRtcSignal;

    /// Signals each device may have waiting in the hub.
    const INBOX: usize = 256;

    /// Rewrites or drops signals in transit: `(from, to, signal)` → the signal to
    /// deliver, or `None` to drop it.
    pub type Interceptor = Arc<dyn Fn(DeviceId, DeviceId, WebRtcSignal) -> Option<WebRtcSignal> + Send + Sync>;

    /// An in-memory signaling network for tests: every device that
    /// [`join`](Self::join)s can signal every other. Bounded: a device's inbox holds
    /// 256 signals; a send to a full inbox fails. An [`Interceptor`] can play a
    /// hostile relay.
    #[derive(Clone, Default)]
    pub struct MemorySignalingHub {
        inboxes: Arc<Mutex<HashMap<DeviceId, mpsc::Sender<IncomingSignal>>>>,
        ice_servers: Arc<Mutex<Vec<IceServer>>>,
        interceptor: Arc<Mutex<Option<Interceptor>>>,
    }

    impl std::fmt::Debug for MemorySignalingHub {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("MemorySignalingHub").field("devices", &self.lock().len()).finish_non_exhaustive()
        }
    }

    impl MemorySignalingHub {
        /// An empty hub.
        pub fn new() -> Self {
            Self::default()
        }

        /// Adds device `id` to the hub (replacing an earlier registration of the
        /// same id) and returns its signaling channel.
        pub fn join(&self, id: DeviceId) -> MemorySignaling {
            let (tx, rx) = mpsc::channel(INBOX);
            self.lock().insert(id, tx);
            MemorySignaling { id, hub: self.clone(), inbox: tokio::sync::Mutex::new(rx) }
        }

        /// Makes the hub hand out `servers` as its ICE configuration.
        pub fn set_ice_servers(&self, servers: Vec<IceServer>) {
            *self.ice_servers.lock().unwrap_or_else(|p| p.into_inner()) = servers;
        }

        /// Passes every signal sent through the hub (not [`inject`](Self::inject)ed
        /// ones) through `interceptor`.
        pub fn set_interceptor(&self, interceptor: Interceptor) {
            *self.interceptor.lock().unwrap_or_else(|p| p.into_inner()) = Some(interceptor);
        }

        /// Delivers a signal as if `from` had sent it: tests use this to play a
        /// hostile device.
        pub fn inject(&self, from: DeviceId, to: DeviceId, signal: WebRtcSignal) -> Result<()> {
            let inbox = self.lock().get(&to).cloned().ok_or_else(|| Error::Signaling(format!("{to} is offline")))?;
            inbox
                .try_send(IncomingSignal { from, signal })
                .map_err(|e| Error::Signaling(format!("delivery failed: {e}")))
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, mpsc::Sender<IncomingSignal>>> {
            self.inboxes.lock().unwrap_or_else(|p| p.into_inner())
        }
    }

    /// One device's channel on a [`MemorySignalingHub`].
    #[derive(Debug)]
    pub struct MemorySignaling {
        id: DeviceId,
        hub: MemorySignalingHub,
        inbox: tokio::sync::Mutex<mpsc::Receiver<IncomingSignal>>,
    }

    impl MemorySignaling {
        /// The hub this channel belongs to.
        pub fn hub(&self) -> &MemorySignalingHub {
            &self.hub
        }
    }

    #[async_trait]
    impl Signaling for MemorySignaling {
        fn local_device(&self) -> DeviceId {
            self.id
        }

        async fn send(&self, to: DeviceId, signal: WebRtcSignal) -> Result<()> {
            let interceptor = self.hub.interceptor.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let signal = match interceptor {
                Some(intercept) => match intercept(self.id, to, signal) {
                    Some(signal) => signal,
                    None => return Ok(()),
                },
                None => signal,
            };
            self.hub.inject(self.id, to, signal)
        }

        async fn recv(&self) -> Result<Option<IncomingSignal>> {
            Ok(self.inbox.lock().await.recv().await)
        }

        async fn ice_servers(&self) -> Result<Vec<IceServer>> {
            Ok(self.hub.ice_servers.lock().unwrap_or_else(|p| p.into_inner()).clone())
        }
    }
}
