//! What a transfer by code does when its connection breaks, sans-IO: the same rules as
//! peers-js's `recovery.ts` (docs/protocol.md §9.5), carried out by [`super::live`].
//!
//! ```text
//! sender, a connection broke under the offer or the data stream:
//!   another connection is active, hops < MAX_RELAY_HOPS      → Other: offer again there
//!   the receiver closed it on purpose (not a path failure)   → Answer: fail with its reason
//!   the signaling connection dropped since the attempt began
//!     (its relays end with it), a path failure, hops < MAX   → NewRelayAfterReconnect: once
//!                                                              registered again, a new relay
//!                                                              (presence right after a server
//!                                                              restart says nothing: no check)
//!   a path failure, bytes moved since the last hop, hops < MAX → NewRelayIfOnline: presence
//!                                                              says online, or online again
//!                                                              within PEER_RETURN_WAIT (its
//!                                                              signaling blinked; minus the
//!                                                              silence before the break)
//!                                                              → a new relay
//!   anything else                                            → Gone
//! receiver, its last connection closed:
//!   a path failure, bytes verified since the last hop or the signaling connection
//!   dropped since then, hops < MAX_RELAY_HOPS → a new relay (once registered again)
//! ```

use std::time::Duration;

use peers_sdk::socket::ClosedBy;
use peers_sdk::{CloseCode, CloseReason};

use super::TransferError;
use crate::Error;

/// Most times one transfer goes on over another connection or a new relay after its
/// connection broke (each relay carries at most 256 MiB and lives at most 10 minutes
/// by the server's defaults; a signaling server's restart costs one). Moves to a better
/// path do not count.
pub const MAX_RELAY_HOPS: u32 = 64;

/// How long a sender whose receiver's presence says offline after a break waits for it
/// to come back online before taking it as gone: a receiver whose own signaling
/// connection blinked registers again within seconds and opens a new relay (as
/// peers-js's `PEER_RETURN_WAIT_MS`).
pub(super) const PEER_RETURN_WAIT: Duration = Duration::from_secs(10);

/// How long the sender waits for its receiver to come back online after a break, when
/// nothing moved for `silent` before it: what is left of [`PEER_RETURN_WAIT`] (a path
/// closed as dead after 10 s of silence gave the receiver that time already, so a
/// killed receiver is waited for with the code at once).
pub(super) fn peer_return_wait(silent: Duration) -> Duration {
    PEER_RETURN_WAIT.saturating_sub(silent)
}

/// A broken connection under the sender, as [`after_break`] weighs it.
#[derive(Debug, Clone)]
pub(super) struct Break<'a> {
    /// Why the broken connection closed.
    pub(super) reason: &'a CloseReason,
    /// Whether another connection than the broken one is active.
    pub(super) other: bool,
    /// Hops so far.
    pub(super) hops: u32,
    /// Whether the attempt on the broken connection moved bytes.
    pub(super) moved: bool,
    /// Whether the signaling connection dropped since the attempt began.
    pub(super) signaling_dropped: bool,
}

/// What the sender does after a connection broke: see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BreakStep {
    /// Offer again on the other active connection.
    Other,
    /// The receiver closed it on purpose: fail with its reason.
    Answer,
    /// Wait for the signaling client to register again, then open a new relay.
    NewRelayAfterReconnect,
    /// Open a new relay if the receiver is online.
    NewRelayIfOnline,
    /// Nothing to go on with: the receiver is gone (or the break is final).
    Gone,
}

/// The sender's step after a break.
pub(super) fn after_break(b: &Break<'_>) -> BreakStep {
    if b.other && b.hops < MAX_RELAY_HOPS {
        return BreakStep::Other;
    }
    if b.reason.by == ClosedBy::Remote && !path_failed(b.reason) {
        return BreakStep::Answer;
    }
    if b.hops >= MAX_RELAY_HOPS || !path_failed(b.reason) {
        return BreakStep::Gone;
    }
    match (b.signaling_dropped, b.moved) {
        (true, _) => BreakStep::NewRelayAfterReconnect,
        (false, true) => BreakStep::NewRelayIfOnline,
        (false, false) => BreakStep::Gone,
    }
}

/// Whether the receiver opens a new relay after its last connection closed with
/// `reason`: the path failed, and bytes were verified since the last hop or the
/// signaling connection dropped since then.
pub(super) fn receiver_reopens(
    reason: &CloseReason,
    moved_since_hop: bool,
    hops: u32,
    signaling_dropped: bool,
) -> bool {
    (moved_since_hop || signaling_dropped) && hops < MAX_RELAY_HOPS && path_failed(reason)
}

/// Whether a send failed because the receiver vanished (its relay and connections
/// gone, or nothing moving), not by an answer or a rule: then the sender may wait
/// for it to come back with the code. Errors of the transfer protocol (declined,
/// cancelled, a closed connection with the receiver's reason, a bad chunk, the
/// signaling server gone for good) are answers; the connections' errors and a stall
/// are not.
pub(super) fn receiver_gone(err: &Error) -> bool {
    match err {
        Error::Transfer(TransferError::Stalled(_)) => true,
        Error::Transfer(_) => false,
        _ => true,
    }
}

/// Whether a connection closed with `reason` ended because its path did (the
/// server's caps on a relay's bytes and duration, or the path failing, seen by
/// either side), not because a side closed it on purpose.
pub(super) fn path_failed(reason: &CloseReason) -> bool {
    matches!(reason.code, CloseCode::LimitExceeded | CloseCode::TransportFailure | CloseCode::Timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(code: CloseCode, by: ClosedBy) -> CloseReason {
        let mut reason = CloseReason::new(code, "x");
        reason.by = by;
        reason
    }

    fn step(reason: &CloseReason, other: bool, hops: u32, moved: bool, signaling_dropped: bool) -> BreakStep {
        after_break(&Break { reason, other, hops, moved, signaling_dropped })
    }

    #[test]
    fn a_relay_that_died_with_the_signaling_connection_is_replaced_after_registering_again() {
        let failed = reason(CloseCode::TransportFailure, ClosedBy::Local);
        // Even when the attempt moved nothing (the drop came right after a hop).
        assert_eq!(step(&failed, false, 3, false, true), BreakStep::NewRelayAfterReconnect);
        assert_eq!(step(&failed, false, 0, true, true), BreakStep::NewRelayAfterReconnect);
        // Without a drop it takes bytes moved and the receiver online.
        assert_eq!(step(&failed, false, 0, true, false), BreakStep::NewRelayIfOnline);
        assert_eq!(step(&failed, false, 0, false, false), BreakStep::Gone);
        // Bounded.
        assert_eq!(step(&failed, false, MAX_RELAY_HOPS, true, true), BreakStep::Gone);
    }

    #[test]
    fn another_path_wins_and_an_answer_is_final() {
        let failed = reason(CloseCode::TransportFailure, ClosedBy::Remote);
        assert_eq!(step(&failed, true, 0, true, true), BreakStep::Other);
        let closed = reason(CloseCode::Normal, ClosedBy::Remote);
        assert_eq!(step(&closed, false, 0, true, true), BreakStep::Answer);
        // Closed on purpose by this side: no new relay, even after a drop.
        assert_eq!(step(&reason(CloseCode::Normal, ClosedBy::Local), false, 0, true, true), BreakStep::Gone);
    }

    #[test]
    fn the_receiver_reopens_after_a_drop_even_with_nothing_verified_since_the_last_hop() {
        let failed = reason(CloseCode::Timeout, ClosedBy::Local);
        assert!(receiver_reopens(&failed, false, 1, true));
        assert!(receiver_reopens(&failed, true, 1, false));
        assert!(!receiver_reopens(&failed, false, 1, false));
        assert!(!receiver_reopens(&failed, true, MAX_RELAY_HOPS, true));
        assert!(!receiver_reopens(&reason(CloseCode::Normal, ClosedBy::Remote), true, 0, true));
    }

    #[test]
    fn a_receiver_gone_silent_is_not_waited_for_again() {
        assert_eq!(peer_return_wait(Duration::from_secs(10)), Duration::ZERO);
        assert_eq!(peer_return_wait(Duration::from_secs(30)), Duration::ZERO);
        assert_eq!(peer_return_wait(Duration::from_secs(3)), Duration::from_secs(7));
        assert_eq!(peer_return_wait(Duration::ZERO), PEER_RETURN_WAIT);
    }

    #[test]
    fn only_a_stall_among_transfer_errors_means_the_receiver_is_gone() {
        assert!(receiver_gone(&TransferError::Stalled(std::time::Duration::from_secs(1)).into()));
        assert!(!receiver_gone(&TransferError::Cancelled.into()));
        let lost = TransferError::SignalingLost { after: std::time::Duration::from_secs(60), last: "refused".into() };
        assert!(!receiver_gone(&lost.into()));
    }
}
