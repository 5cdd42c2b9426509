//! Credit-based flow control, sans-IO: the one implementation every transport
//! (and the signaling server's frame relay) uses.
//!
//! A transport over a channel without backpressure of its own (socket.io
//! events, frames relayed through a server) bounds what the receiver buffers
//! by granting credit, and the sender never sends beyond it. A middlebox that
//! forwards frames (the signaling server's relay) keeps a [`SendCredit`] per
//! direction to refuse a sender that overruns what the receiver granted.
//!
//! Credit is *cumulative*: a grant says "in total you may have sent `frames`
//! frames and `bytes` bytes". Grants are idempotent, and a stale or repeated one
//! does nothing.
//!
//! ```text
//! receiver                                           sender
//!   window W = (frames, bytes)
//!   initial grant W (a hello, or   ───────────────▶  allowed = W, sent = 0
//!   agreed by both ends)
//!                                  ◀── frame ──────  needs allowed - sent ≥ (1, len)
//!   received += (1, len);
//!   received > granted? → Overrun: the peer broke the protocol
//!   app reads: consumed += (1, len)
//!   consumed - (granted - W) ≥ W/2?
//!     granted = consumed + W
//!     credit{granted}              ───────────────▶  allowed = max(allowed, granted)
//! ```
//!
//! The receiver buffers at most `W` (the frames it received but the application
//! did not read). With `W.bytes ≥ 2 × max_frame` the exchange cannot stall: a
//! sender blocked on a frame of at most `max_frame` bytes has more than
//! `W.bytes - max_frame ≥ W.bytes / 2` unacknowledged, so once the application
//! reads what arrived the receiver's half-window threshold is met and it grants.
//!
//! Not used by a [`Connection`](crate::Connection)'s streams: their credit
//! (`StreamAccept{window}`, then `StreamCredit{bytes}`, `docs/protocol.md`) counts
//! bytes only and is incremental, because it travels inside one reliable,
//! ordered, authenticated connection where no grant is repeated or reordered,
//! and a stream's frames are already bounded by the connection's own codec.

use serde::{Deserialize, Serialize};

/// Cumulative totals of frames and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    /// Frames.
    pub frames: u64,
    /// Bytes of frame payload.
    pub bytes: u64,
}

impl Credit {
    /// `frames` frames and `bytes` bytes.
    pub const fn new(frames: u64, bytes: u64) -> Credit {
        Credit { frames, bytes }
    }

    fn add_frame(&mut self, len: usize) {
        self.frames = self.frames.saturating_add(1);
        self.bytes = self.bytes.saturating_add(len as u64);
    }
}

/// The sending side: what the peer allows and what was sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendCredit {
    allowed: Credit,
    sent: Credit,
}

impl SendCredit {
    /// A sender the peer already allows `initial` (a window both ends know
    /// without a hello).
    pub fn new(initial: Credit) -> SendCredit {
        SendCredit { allowed: initial, sent: Credit::default() }
    }

    /// What was sent so far.
    pub fn sent(&self) -> Credit {
        self.sent
    }

    /// What the peer allows in total.
    pub fn allowed(&self) -> Credit {
        self.allowed
    }

    /// Takes a grant into account. A grant below an earlier one changes nothing.
    pub fn allow(&mut self, grant: Credit) {
        self.allowed.frames = self.allowed.frames.max(grant.frames);
        self.allowed.bytes = self.allowed.bytes.max(grant.bytes);
    }

    /// Whether a frame of `len` bytes fits the credit now.
    pub fn fits(&self, len: usize) -> bool {
        self.allowed.frames > self.sent.frames && self.allowed.bytes.saturating_sub(self.sent.bytes) >= len as u64
    }

    /// Uses credit for one frame of `len` bytes; false (and nothing used) when it
    /// does not fit.
    pub fn take(&mut self, len: usize) -> bool {
        let fits = self.fits(len);
        if fits {
            self.sent.add_frame(len);
        }
        fits
    }
}

/// The peer sent more than it was allowed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "peer sent frame {frames} ({bytes} bytes in total) beyond its credit of {allowed_frames} frames / {allowed_bytes} bytes"
)]
pub struct Overrun {
    frames: u64,
    bytes: u64,
    allowed_frames: u64,
    allowed_bytes: u64,
}

/// The receiving side: what was granted, received and consumed.
#[derive(Clone, Debug)]
pub struct RecvWindow {
    window: Credit,
    granted: Credit,
    received: Credit,
    consumed: Credit,
}

impl RecvWindow {
    /// A window of `window`; the first grant (sent in the hello) is the window itself.
    pub fn new(window: Credit) -> RecvWindow {
        RecvWindow { window, granted: window, received: Credit::default(), consumed: Credit::default() }
    }

    /// The first grant, carried by the hello.
    pub fn initial(&self) -> Credit {
        self.window
    }

    /// Accounts for a frame of `len` bytes that arrived. An overrun means the peer
    /// broke the protocol; the frame must not be buffered.
    pub fn on_frame(&mut self, len: usize) -> Result<(), Overrun> {
        let mut received = self.received;
        received.add_frame(len);
        if received.frames > self.granted.frames || received.bytes > self.granted.bytes {
            return Err(Overrun {
                frames: received.frames,
                bytes: received.bytes,
                allowed_frames: self.granted.frames,
                allowed_bytes: self.granted.bytes,
            });
        }
        self.received = received;
        Ok(())
    }

    /// Accounts for a frame of `len` bytes the application read. Returns whether
    /// enough was consumed that a grant should go out now.
    pub fn on_consumed(&mut self, len: usize) -> bool {
        self.consumed.add_frame(len);
        self.grant_due()
    }

    /// Whether half a window (of frames or of bytes) was consumed since the
    /// last grant, so a grant should go out now.
    pub fn grant_due(&self) -> bool {
        let pending = self.pending();
        pending.frames.saturating_mul(2) >= self.window.frames || pending.bytes.saturating_mul(2) >= self.window.bytes
    }

    /// Consumption not yet announced to the peer.
    fn pending(&self) -> Credit {
        Credit {
            frames: self.consumed.frames.saturating_add(self.window.frames).saturating_sub(self.granted.frames),
            bytes: self.consumed.bytes.saturating_add(self.window.bytes).saturating_sub(self.granted.bytes),
        }
    }

    /// The new cumulative grant, if anything was consumed since the last one.
    /// Whoever calls this must deliver the grant to the peer.
    pub fn announce(&mut self) -> Option<Credit> {
        let next = Credit {
            frames: self.consumed.frames.saturating_add(self.window.frames),
            bytes: self.consumed.bytes.saturating_add(self.window.bytes),
        };
        (next != self.granted).then(|| {
            self.granted = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const W: Credit = Credit { frames: 4, bytes: 1000 };

    #[test]
    fn sender_waits_for_credit() {
        let mut send = SendCredit::default();
        assert!(!send.take(1), "no credit before the hello");
        send.allow(W);
        assert!(send.take(600));
        assert!(!send.take(401), "bytes exhausted");
        assert!(send.take(400));
        send.allow(Credit { frames: 1, bytes: 1 });
        assert!(send.take(0) && send.take(0));
        assert!(!send.take(0), "frames exhausted");
    }

    #[test]
    fn receiver_refuses_overruns_and_grants_at_half_window() {
        let mut recv = RecvWindow::new(W);
        for _ in 0..4 {
            recv.on_frame(10).unwrap();
        }
        assert!(recv.on_frame(0).is_err(), "a fifth frame overruns a 4-frame window");
        assert!(!recv.on_consumed(10));
        assert!(recv.on_consumed(10), "half the frames read");
        assert_eq!(recv.announce(), Some(Credit { frames: 6, bytes: 1020 }));
        assert_eq!(recv.announce(), None, "nothing new to announce");
        // Two frames were read, so two more fit.
        recv.on_frame(10).unwrap();
        recv.on_frame(10).unwrap();
        assert!(recv.on_frame(0).is_err());

        let mut bytes = RecvWindow::new(W);
        bytes.on_frame(1000).unwrap();
        assert!(bytes.on_frame(1).is_err(), "bytes beyond the window");
        assert!(bytes.on_consumed(1000), "half the bytes read");
    }

    proptest! {
        /// A forwarder's [`SendCredit`] for one direction, fed the receiver's
        /// grants, refuses exactly the frames the receiver would find an overrun.
        #[test]
        fn a_forwarder_refuses_what_the_receiver_would(
            steps in proptest::collection::vec((0usize..=300, any::<bool>(), any::<bool>()), 1..200),
        ) {
            let window = Credit::new(4, 1000);
            let mut recv = RecvWindow::new(window);
            let mut forwarder = SendCredit::new(window);
            let mut buffered = std::collections::VecDeque::new();
            for (len, read, grant) in steps {
                let forwarded = forwarder.take(len);
                let arrived = recv.clone().on_frame(len).is_ok();
                prop_assert_eq!(forwarded, arrived);
                if forwarded {
                    recv.on_frame(len).unwrap();
                    buffered.push_back(len);
                }
                if read && let Some(len) = buffered.pop_front() {
                    recv.on_consumed(len);
                }
                if grant && let Some(credit) = recv.announce() {
                    forwarder.allow(credit);
                }
            }
        }

        /// A sender and receiver that follow the protocol never overrun, the
        /// receiver never buffers more than its window, and everything sent
        /// arrives: the exchange cannot stall.
        #[test]
        fn the_exchange_is_bounded_and_never_stalls(
            sizes in proptest::collection::vec(0usize..=500, 1..200),
            reads in proptest::collection::vec(0usize..4, 1..200),
        ) {
            let window = Credit { frames: 8, bytes: 1000 }; // ≥ 2 × max frame (500)
            let mut send = SendCredit::default();
            let mut recv = RecvWindow::new(window);
            send.allow(recv.initial());
            let mut queue = std::collections::VecDeque::new();
            let (mut next, mut delivered, mut step) = (0, 0, 0);
            while delivered < sizes.len() {
                while next < sizes.len() && send.take(sizes[next]) {
                    recv.on_frame(sizes[next]).unwrap();
                    queue.push_back(sizes[next]);
                    next += 1;
                }
                let buffered: usize = queue.iter().sum();
                prop_assert!(queue.len() as u64 <= window.frames && buffered as u64 <= window.bytes);
                // The application reads a varying amount; when the sender is
                // blocked it eventually reads everything.
                let blocked = next == sizes.len() || !send.fits(sizes[next]);
                let read = if blocked && reads[step % reads.len()] == 0 {
                    queue.len()
                } else {
                    reads[step % reads.len()].min(queue.len())
                };
                let mut grant = false;
                for _ in 0..read {
                    let len = queue.pop_front().unwrap();
                    grant |= recv.on_consumed(len);
                    delivered += 1;
                }
                if grant && let Some(credit) = recv.announce() {
                    send.allow(credit);
                }
                step += 1;
                prop_assert!(step < 10_000, "stalled with {} of {} delivered", delivered, sizes.len());
            }
        }
    }
}
