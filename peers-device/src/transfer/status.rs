//! Where a transfer by code stands, for a progress bar: one [`Status`] in a `watch`.

use std::time::Duration;

use tokio::sync::watch;

use super::TransferError;
use super::exchange::TransferProgress;
use crate::ConnectionClass;

/// The phase of a transfer by code, in order (a sender whose receiver vanished goes
/// from [`Stage::WaitingForReturn`] through the phases again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Sender: the code is out; waiting for a device to join with it.
    WaitingForPeer,
    /// Running the PAKE with the device that joined.
    Authenticating,
    /// The PAKE confirmed the other device; the encrypted connection is being made.
    Connecting,
    /// The offer (names and sizes) is with the receiver, waiting for its answer.
    Offered,
    /// Bytes are moving.
    Moving,
    /// Every chunk verified and stored.
    Done,
    /// Sender: the receiver vanished mid-way (its connections and relay gone); the
    /// code's session is reopened and the sender waits for the receiver to join with
    /// the same code again ([`SendOptions::rejoin_wait`](super::SendOptions::rejoin_wait)).
    WaitingForReturn,
}

impl Stage {
    /// A short name for logs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Stage::WaitingForPeer => "waiting",
            Stage::Authenticating => "authenticating",
            Stage::Connecting => "connecting",
            Stage::Offered => "offered",
            Stage::Moving => "moving",
            Stage::Done => "done",
            Stage::WaitingForReturn => "waiting-return",
        }
    }
}

/// Whether a side's signaling connection is up. While it registers again (the server
/// restarted, the network blinked) a transfer on WebRTC or a local socket goes on, and
/// one on the server's relay waits for it (protocol.md §9.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SignalingLink {
    /// Registered with the signaling server.
    #[default]
    Registered,
    /// The connection dropped; registering again on the reconnection schedule (until
    /// [`LinkOptions::reconnect_give_up`](super::LinkOptions::reconnect_give_up)).
    Reconnecting,
}

impl SignalingLink {
    /// A short name for logs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            SignalingLink::Registered => "registered",
            SignalingLink::Reconnecting => "reconnecting",
        }
    }
}

/// A transfer's phase, path, signaling connection and byte counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The phase.
    pub stage: Stage,
    /// Whether this side's signaling connection is up or being registered again (beside
    /// the stage: bytes may keep moving on another path meanwhile).
    pub signaling: SignalingLink,
    /// The class of the path the bytes take, once connected.
    pub class: Option<ConnectionClass>,
    /// Bytes done and to do.
    pub progress: TransferProgress,
}

impl Status {
    /// The first status of a side.
    pub(crate) fn start(stage: Stage) -> Self {
        Status { stage, signaling: SignalingLink::Registered, class: None, progress: TransferProgress::default() }
    }
}

/// Sets the stage.
pub(crate) fn set_stage(status: &watch::Sender<Status>, stage: Stage) {
    status.send_modify(|s| s.stage = stage);
}

/// Records the class of the connection carrying the transfer: once connected, the
/// stage is [`Stage::Offered`]; a later path keeps the stage.
pub(crate) fn set_connected(status: &watch::Sender<Status>, class: ConnectionClass) {
    status.send_modify(|s| {
        s.class = Some(class);
        if matches!(
            s.stage,
            Stage::WaitingForPeer | Stage::WaitingForReturn | Stage::Authenticating | Stage::Connecting
        ) {
            s.stage = Stage::Offered;
        }
    });
}

/// Copies `progress` into `status` (the first update, at acceptance, starts
/// [`Stage::Moving`]); returns only when nothing moved for `stall` once bytes
/// started moving. While `progress` has no sender left it waits forever (the caller
/// is finishing).
pub(crate) async fn follow(
    mut progress: watch::Receiver<TransferProgress>,
    status: &watch::Sender<Status>,
    stall: Duration,
) -> TransferError {
    let mut moving = false;
    loop {
        let changed = match moving {
            true => match tokio::time::timeout(stall, progress.changed()).await {
                Ok(changed) => changed,
                Err(_) => return TransferError::Stalled(stall),
            },
            false => progress.changed().await,
        };
        if changed.is_err() {
            return std::future::pending().await;
        }
        let now = *progress.borrow_and_update();
        moving = true;
        status.send_modify(|s| {
            s.progress = now;
            if s.stage == Stage::Offered {
                s.stage = Stage::Moving;
            }
        });
    }
}
