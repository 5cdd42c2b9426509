//! [`MessageBuf`]: an outgoing message built where its frame will be, so a message
//! that goes out as one uncompressed WHOLE frame is never copied.
//!
//! ```text
//! MessageBuf:  [ PREFIX free bytes ][ message bytes ... ][ ≥ TAILROOM spare capacity ]
//! as a frame:        [ headroom ][0x00 flags][ message bytes ... ][ AEAD tag goes here ]
//!              └─ advanced past ┘
//! ```

use std::io;

use bytes::{Buf, BufMut, BytesMut};

use super::frame::{FrameFlags, TYPE_WHOLE, WHOLE_HEADER_LEN};

/// Free bytes kept in front of the message: room for the caller's headroom (an
/// AEAD counter, 8 bytes) and a WHOLE frame header.
pub(crate) const PREFIX: usize = 16;
/// Spare capacity kept after the message for an AEAD tag.
pub(crate) const TAILROOM: usize = 16;

/// An outgoing message with room before and after it for framing and sealing.
#[derive(Debug)]
pub(crate) struct MessageBuf {
    buf: BytesMut,
}

impl MessageBuf {
    /// An empty message with room for about `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let mut buf = BytesMut::with_capacity(PREFIX.saturating_add(capacity).saturating_add(TAILROOM));
        buf.put_bytes(0, PREFIX);
        MessageBuf { buf }
    }

    /// Appends bytes, keeping [`TAILROOM`] spare so sealing never reallocates.
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.reserve(bytes.len().saturating_add(TAILROOM));
        self.buf.extend_from_slice(bytes);
    }

    /// The message bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        self.buf.get(PREFIX..).unwrap_or_default()
    }

    /// Turns the buffer into a WHOLE frame in place: `headroom` zero bytes, the
    /// header with `flags`, the message, with `tailroom` spare. The buffer comes back
    /// unchanged when its prefix or its spare capacity is too small for that.
    pub(crate) fn into_whole_frame(
        self,
        flags: FrameFlags,
        headroom: usize,
        tailroom: usize,
    ) -> Result<BytesMut, MessageBuf> {
        let Some(skip) = PREFIX.checked_sub(headroom + WHOLE_HEADER_LEN) else { return Err(self) };
        if self.buf.capacity() - self.buf.len() < tailroom {
            return Err(self);
        }
        let mut frame = self.buf;
        frame.advance(skip);
        if let Some((zeros, header)) =
            frame.get_mut(..headroom + WHOLE_HEADER_LEN).map(|head| head.split_at_mut(headroom))
        {
            zeros.fill(0);
            header.copy_from_slice(&[TYPE_WHOLE, flags.bits()]);
        }
        Ok(frame)
    }
}

impl io::Write for MessageBuf {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn whole_frame_is_built_in_place_with_room_for_a_tag() {
        let mut message = MessageBuf::with_capacity(4);
        message.extend_from_slice(b"hello");
        message.extend_from_slice(&[7; 3000]);
        let start = message.as_slice().as_ptr();
        let frame = message.into_whole_frame(FrameFlags::NONE, 8, 16).unwrap();
        assert_eq!(&frame[..10], &[0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00]);
        assert_eq!(&frame[10..15], b"hello");
        assert_eq!(frame[10..].as_ptr(), start, "the message was copied");
        assert!(frame.capacity() - frame.len() >= 16);
    }

    #[test]
    fn too_much_headroom_is_handed_back() {
        let mut message = MessageBuf::with_capacity(0);
        message.extend_from_slice(b"x");
        let header = FrameFlags::NONE;
        let message = message.into_whole_frame(header, PREFIX, 0).unwrap_err();
        assert_eq!(message.as_slice(), b"x");
        let frame = message.into_whole_frame(header, PREFIX - WHOLE_HEADER_LEN, 0).unwrap();
        assert_eq!(frame.len(), PREFIX + 1);
    }
}
