//! Open/closed bookkeeping that every [`Socket`](super::Socket) implementation needs.

use tokio::sync::watch;

use super::{CloseCode, CloseReason, SocketState};
use crate::error::Error;

/// Tracks whether a socket is open, for transport implementations: the first close
/// wins, everyone waiting in [`closed`](Self::closed) wakes, and sends and receives
/// after the close get the same [`Error::Closed`].
///
/// ```
/// use peers_sdk::socket::{CloseReason, SocketLifecycle, SocketState};
///
/// let lifecycle = SocketLifecycle::new();
/// assert!(lifecycle.is_open());
/// assert!(lifecycle.close(CloseReason::normal("first")));
/// assert!(!lifecycle.close(CloseReason::normal("second")));
/// assert!(matches!(lifecycle.state(), SocketState::Closed(r) if r.message == "first"));
/// ```
#[derive(Debug)]
pub struct SocketLifecycle {
    state: watch::Sender<SocketState>,
}

impl Default for SocketLifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl SocketLifecycle {
    /// An open socket.
    pub fn new() -> Self {
        SocketLifecycle { state: watch::Sender::new(SocketState::Open) }
    }

    /// The current state.
    pub fn state(&self) -> SocketState {
        self.state.borrow().clone()
    }

    /// Whether the socket is still open.
    pub fn is_open(&self) -> bool {
        matches!(*self.state.borrow(), SocketState::Open)
    }

    /// Records the close. Returns whether this call closed it; a later reason is
    /// ignored.
    pub fn close(&self, reason: CloseReason) -> bool {
        self.state.send_if_modified(|state| match state {
            SocketState::Open => {
                *state = SocketState::Closed(reason);
                true
            }
            SocketState::Closed(_) => false,
        })
    }

    /// Waits until the socket is closed and returns the reason.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.state.subscribe();
        match rx.wait_for(|state| matches!(state, SocketState::Closed(_))).await {
            Ok(state) => match &*state {
                SocketState::Closed(reason) => reason.clone(),
                SocketState::Open => CloseReason::new(CloseCode::GoingAway, "socket dropped"),
            },
            // Unreachable while `self` is alive: it owns the sender.
            Err(_) => CloseReason::new(CloseCode::GoingAway, "socket dropped"),
        }
    }

    /// The error for an operation on a closed socket (or one that is closing).
    pub fn closed_error(&self) -> Error {
        match &*self.state.borrow() {
            SocketState::Closed(reason) => Error::Closed { reason: reason.clone() },
            SocketState::Open => {
                Error::Closed { reason: CloseReason::new(CloseCode::TransportFailure, "channel gone") }
            }
        }
    }
}
