//! Frame and flow-control limits, shared by the server and the client.

use crate::error::{Error, Result};
use crate::flow::Credit;
use crate::wire::{MIN_PEER_MAX_FRAME, TEXT_OVERHEAD};

/// How big frames may be and how much a socket buffers for its reader.
///
/// Both ends announce their limits when a socket opens; a socket's
/// [`max_frame_size`](peers_sdk::SocketInfo::max_frame_size) is the smaller of
/// the two ends' `max_frame_size`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameLimits {
    /// The largest frame sent or accepted. Default: 1 MiB + 4 KiB, so a
    /// connection's 1 MiB chunks plus their headers and AEAD tag fit one frame.
    pub max_frame_size: usize,
    /// Most frames received but not yet read, per socket. Default: 128.
    pub recv_window_frames: u64,
    /// Most bytes received but not yet read, per socket; at least twice
    /// `max_frame_size`. Default: four maximum frames (4 MiB + 16 KiB).
    pub recv_window_bytes: u64,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_frame_size: Self::DEFAULT_MAX_FRAME_SIZE,
            recv_window_frames: 128,
            recv_window_bytes: 4 * Self::DEFAULT_MAX_FRAME_SIZE as u64,
        }
    }
}

impl FrameLimits {
    /// The default largest frame: 1 MiB + 4 KiB.
    pub const DEFAULT_MAX_FRAME_SIZE: usize = (1 << 20) + 4096;
    /// The largest `max_frame_size` accepted: 8 MiB. A binary frame escaped for
    /// `rust_socketio` may double in size, and its WebSocket accepts 16 MiB
    /// frames.
    pub const MAX_FRAME_SIZE_LIMIT: usize = 8 << 20;

    /// Checks that the limits can work (see each field).
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, detail: String| Err(Error::InvalidConfig { field, detail });
        if !(MIN_PEER_MAX_FRAME as usize..=Self::MAX_FRAME_SIZE_LIMIT).contains(&self.max_frame_size) {
            return invalid(
                "max_frame_size",
                format!(
                    "{} is outside {}..={} bytes",
                    self.max_frame_size,
                    MIN_PEER_MAX_FRAME,
                    Self::MAX_FRAME_SIZE_LIMIT
                ),
            );
        }
        if self.recv_window_frames < 2 {
            return invalid("recv_window_frames", format!("{} is below 2", self.recv_window_frames));
        }
        if self.recv_window_bytes < 2 * self.max_frame_size as u64 {
            return invalid(
                "recv_window_bytes",
                format!(
                    "{} is below twice max_frame_size ({}); flow control could stall",
                    self.recv_window_bytes,
                    2 * self.max_frame_size
                ),
            );
        }
        Ok(())
    }

    /// The receive window as a credit.
    pub(crate) fn window(&self) -> Credit {
        Credit { frames: self.recv_window_frames, bytes: self.recv_window_bytes }
    }

    /// The largest socket.io message a peer may send: a maximum frame as base64
    /// text plus the event's framing. Bounds engine.io's and the WebSocket's
    /// message sizes.
    pub fn max_payload(&self) -> usize {
        self.max_frame_size.div_ceil(3) * 4 + TEXT_OVERHEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_are_checked() {
        let limits = FrameLimits::default();
        limits.validate().unwrap();
        assert!(limits.max_payload() > limits.max_frame_size * 4 / 3);
        let bad = [
            FrameLimits { max_frame_size: 1000, ..limits.clone() },
            FrameLimits { recv_window_frames: 1, ..limits.clone() },
            FrameLimits { recv_window_bytes: limits.max_frame_size as u64, ..limits.clone() },
        ];
        for limits in bad {
            assert!(limits.validate().is_err(), "{limits:?} accepted");
        }
    }
}
