//! Serving a [`Listener`]: every socket it yields is handed to the manager, with
//! the handshakes of all listeners bounded in one place
//! ([`ManagerConfig::max_handshakes`](super::ManagerConfig::max_handshakes)).

use std::sync::Arc;

use peers_sdk::socket::Listener;
use tokio::task::JoinHandle;
use tracing::debug;

use super::ConnectionManager;

/// A listener being served by a manager (from [`ConnectionManager::serve`]).
/// Dropping it, or [`stop`](Self::stop), stops accepting; handshakes already
/// running finish.
#[derive(Debug)]
pub struct Serving {
    name: String,
    task: JoinHandle<()>,
}

impl Serving {
    /// The listener's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops accepting and waits until the accept loop has let go of the
    /// listener, so its owner can shut it down.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConnectionManager {
    /// Accepts every socket `listener` yields and runs its handshake, as
    /// [`accept`](Self::accept) does. When [`ManagerConfig::max_handshakes`] run
    /// at once (over all listeners), the loop holds the one socket it accepted
    /// until a slot frees (slots go to listeners in turn), and the sockets after
    /// it wait in the listener's own bounded queue instead of piling up here.
    ///
    /// [`ManagerConfig::max_handshakes`]: super::ManagerConfig::max_handshakes
    pub fn serve(&self, listener: Arc<dyn Listener>) -> Serving {
        let name = listener.name().to_owned();
        let manager = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let Some(socket) = listener.accept().await else {
                    debug!(listener = listener.name(), "listener closed");
                    return;
                };
                // Taken after the accept, not before: a loop idle in `accept`
                // holding a slot would starve the other listeners. The
                // semaphore is fair, so listeners get slots in turn.
                let Ok(permit) = manager.inner.handshakes.clone().acquire_owned().await else { return };
                let manager = manager.clone();
                let name = listener.name().to_owned();
                tokio::spawn(async move {
                    if let Err(err) = manager.accept_now(socket).await {
                        debug!(listener = %name, %err, "incoming connection not kept");
                    }
                    drop(permit);
                });
            }
        });
        Serving { name, task }
    }
}
