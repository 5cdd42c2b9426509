//! Frame headers: pure functions that read and write the two header layouts.
//!
//! Parsing here checks only the syntax of one header: the type byte, the flag bits and
//! that the frame is long enough. Whether a chunk makes sense (its index is below its
//! count, it is the next one of its message, its message is not too large) depends on
//! what came before and is checked by [`FrameDecoder`](super::FrameDecoder).

use bytes::{BufMut, BytesMut};

use crate::error::CodecError;

/// Type byte of a WHOLE frame.
pub const TYPE_WHOLE: u8 = 0x00;
/// Type byte of a CHUNK frame.
pub const TYPE_CHUNK: u8 = 0x01;
/// Length of a WHOLE frame's header: type and flags.
pub const WHOLE_HEADER_LEN: usize = 2;
/// Length of a CHUNK frame's header: type, flags, message id, index, count and total length.
pub const CHUNK_HEADER_LEN: usize = 22;

/// The flag byte of a frame.
///
/// Only [`FrameFlags::COMPRESSED`] is defined. A frame with any other bit set is
/// rejected with [`CodecError::UnknownFlags`], so a future version that defines a new
/// bit cannot be misread by this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FrameFlags(u8);

impl FrameFlags {
    /// No flag set: the message bytes are sent as they are.
    pub const NONE: FrameFlags = FrameFlags(0);
    /// Bit 0: the message bytes, after joining all chunks, are a Brotli stream.
    pub const COMPRESSED: FrameFlags = FrameFlags(0b0000_0001);
    /// Every bit this version understands.
    const KNOWN: u8 = Self::COMPRESSED.0;

    /// Reads a flag byte, rejecting bits this version does not know.
    pub const fn from_bits(bits: u8) -> Result<Self, CodecError> {
        if bits & !Self::KNOWN != 0 {
            return Err(CodecError::UnknownFlags(bits));
        }
        Ok(FrameFlags(bits))
    }

    /// The flags as they appear on the wire.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether the message is Brotli-compressed.
    pub const fn is_compressed(self) -> bool {
        self.0 & Self::COMPRESSED.0 != 0
    }
}

/// The header of one CHUNK frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkHeader {
    /// The message's flags; every chunk of a message repeats them.
    pub flags: FrameFlags,
    /// Identifies the message among those being reassembled at the same time.
    pub message_id: u32,
    /// Position of this chunk within its message, from 0.
    pub index: u32,
    /// Number of chunks in the message; every chunk repeats it.
    pub count: u32,
    /// Length of the whole message as sent (compressed, if it is); every chunk repeats it.
    pub total_len: u64,
}

impl ChunkHeader {
    /// Whether `other` agrees with this header on everything that must be the same for
    /// all chunks of one message (id, flags, count and total length).
    pub fn same_message_as(&self, other: &ChunkHeader) -> bool {
        self.message_id == other.message_id
            && self.flags == other.flags
            && self.count == other.count
            && self.total_len == other.total_len
    }
}

/// The header at the start of every frame.
///
/// ```text
/// WHOLE frame (a message that fits in one frame):
///  +--------+--------+------------------------+
///  | 0x00   | flags  | message bytes ...      |
///  +--------+--------+------------------------+
///   byte 0   byte 1   bytes 2..
///
/// CHUNK frame (one piece of a larger message):
///  +--------+--------+------------+------------+------------+----------------+-----------+
///  | 0x01   | flags  | msg id u32 | index u32  | count u32  | total len u64  | data ...  |
///  +--------+--------+------------+------------+------------+----------------+-----------+
///   byte 0   byte 1   bytes 2..6   bytes 6..10  bytes 10..14 bytes 14..22     bytes 22..
///
/// All integers are big-endian. flags: bit 0 = COMPRESSED; the other bits must be zero.
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameHeader {
    /// A message carried in one frame; the rest of the frame is the message.
    Whole {
        /// The message's flags.
        flags: FrameFlags,
    },
    /// One piece of a larger message; the rest of the frame is this piece's data.
    Chunk(ChunkHeader),
}

impl FrameHeader {
    /// Parses the header at the start of `frame`.
    ///
    /// Returns the header and its length; the frame's data starts at that offset.
    /// Fails with [`CodecError::Truncated`] if `frame` is shorter than the header,
    /// [`CodecError::UnknownFrameType`] for a type byte other than `0x00` and `0x01`,
    /// and [`CodecError::UnknownFlags`] for undefined flag bits.
    ///
    /// ```
    /// use peers_sdk::codec::{FrameFlags, FrameHeader, WHOLE_HEADER_LEN};
    ///
    /// let (header, len) = FrameHeader::parse(&[0x00, 0x01, b'h', b'i']).unwrap();
    /// assert_eq!(header, FrameHeader::Whole { flags: FrameFlags::COMPRESSED });
    /// assert_eq!(len, WHOLE_HEADER_LEN);
    /// ```
    pub fn parse(frame: &[u8]) -> Result<(FrameHeader, usize), CodecError> {
        let Some((&frame_type, rest)) = frame.split_first() else {
            return Err(CodecError::Truncated { needed: WHOLE_HEADER_LEN, have: 0 });
        };
        let needed = match frame_type {
            TYPE_WHOLE => WHOLE_HEADER_LEN,
            TYPE_CHUNK => CHUNK_HEADER_LEN,
            other => return Err(CodecError::UnknownFrameType(other)),
        };
        let truncated = CodecError::Truncated { needed, have: frame.len() };
        if frame.len() < needed {
            return Err(truncated);
        }
        let mut rest = rest;
        let Some([flag_bits]) = take::<1>(&mut rest) else {
            return Err(truncated);
        };
        if frame_type == TYPE_WHOLE {
            let flags = FrameFlags::from_bits(flag_bits)?;
            return Ok((FrameHeader::Whole { flags }, WHOLE_HEADER_LEN));
        }
        let (Some(id), Some(index), Some(count), Some(total)) =
            (take::<4>(&mut rest), take::<4>(&mut rest), take::<4>(&mut rest), take::<8>(&mut rest))
        else {
            return Err(truncated);
        };
        let header = ChunkHeader {
            flags: FrameFlags::from_bits(flag_bits)?,
            message_id: u32::from_be_bytes(id),
            index: u32::from_be_bytes(index),
            count: u32::from_be_bytes(count),
            total_len: u64::from_be_bytes(total),
        };
        Ok((FrameHeader::Chunk(header), CHUNK_HEADER_LEN))
    }

    /// Appends the encoded header to `out`.
    pub fn write(&self, out: &mut BytesMut) {
        match self {
            FrameHeader::Whole { flags } => {
                out.put_u8(TYPE_WHOLE);
                out.put_u8(flags.bits());
            }
            FrameHeader::Chunk(chunk) => {
                out.put_u8(TYPE_CHUNK);
                out.put_u8(chunk.flags.bits());
                out.put_u32(chunk.message_id);
                out.put_u32(chunk.index);
                out.put_u32(chunk.count);
                out.put_u64(chunk.total_len);
            }
        }
    }

    /// Length of the encoded header: [`WHOLE_HEADER_LEN`] or [`CHUNK_HEADER_LEN`].
    pub const fn encoded_len(&self) -> usize {
        match self {
            FrameHeader::Whole { .. } => WHOLE_HEADER_LEN,
            FrameHeader::Chunk(_) => CHUNK_HEADER_LEN,
        }
    }

    /// The frame's flags.
    pub const fn flags(&self) -> FrameFlags {
        match self {
            FrameHeader::Whole { flags } => *flags,
            FrameHeader::Chunk(chunk) => chunk.flags,
        }
    }
}

/// Takes the first `N` bytes off `input`, or returns `None` (leaving it alone) if it
/// is shorter.
fn take<const N: usize>(input: &mut &[u8]) -> Option<[u8; N]> {
    let (head, tail) = input.split_first_chunk::<N>()?;
    *input = tail;
    Some(*head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(header: FrameHeader) -> Vec<u8> {
        let mut out = BytesMut::new();
        header.write(&mut out);
        out.to_vec()
    }

    #[test]
    fn chunk_header_layout_is_big_endian() {
        let header = FrameHeader::Chunk(ChunkHeader {
            flags: FrameFlags::COMPRESSED,
            message_id: 0x0102_0304,
            index: 0x0506_0708,
            count: 0x090a_0b0c,
            total_len: 0x0d0e_0f10_1112_1314,
        });
        let bytes = encode(header);
        assert_eq!(
            bytes,
            [
                0x01, 0x01, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
                0x10, 0x11, 0x12, 0x13, 0x14
            ]
        );
        assert_eq!(bytes.len(), CHUNK_HEADER_LEN);
        assert_eq!(header.encoded_len(), CHUNK_HEADER_LEN);
        assert_eq!(FrameHeader::parse(&bytes), Ok((header, CHUNK_HEADER_LEN)));
    }

    #[test]
    fn whole_header_round_trips_and_ignores_data() {
        let header = FrameHeader::Whole { flags: FrameFlags::NONE };
        let mut bytes = encode(header);
        assert_eq!(bytes, [0x00, 0x00]);
        bytes.extend_from_slice(b"payload");
        assert_eq!(FrameHeader::parse(&bytes), Ok((header, WHOLE_HEADER_LEN)));
    }

    #[test]
    fn empty_frame_is_truncated() {
        assert_eq!(FrameHeader::parse(&[]), Err(CodecError::Truncated { needed: 2, have: 0 }));
    }

    #[test]
    fn short_headers_are_truncated() {
        assert_eq!(FrameHeader::parse(&[0x00]), Err(CodecError::Truncated { needed: 2, have: 1 }));
        let full = encode(FrameHeader::Chunk(ChunkHeader {
            flags: FrameFlags::NONE,
            message_id: 1,
            index: 0,
            count: 2,
            total_len: 10,
        }));
        for len in 1..CHUNK_HEADER_LEN {
            let short = full.get(..len).unwrap();
            assert_eq!(FrameHeader::parse(short), Err(CodecError::Truncated { needed: 22, have: len }), "len {len}");
        }
    }

    #[test]
    fn unknown_type_is_rejected() {
        assert_eq!(FrameHeader::parse(&[0x02, 0x00]), Err(CodecError::UnknownFrameType(0x02)));
        assert_eq!(FrameHeader::parse(&[0xff]), Err(CodecError::UnknownFrameType(0xff)));
    }

    #[test]
    fn unknown_flags_are_rejected() {
        assert_eq!(FrameHeader::parse(&[0x00, 0x02]), Err(CodecError::UnknownFlags(0x02)));
        assert_eq!(FrameHeader::parse(&[0x00, 0x81]), Err(CodecError::UnknownFlags(0x81)));
        let mut chunk = vec![0x01, 0x80];
        chunk.resize(CHUNK_HEADER_LEN, 0);
        assert_eq!(FrameHeader::parse(&chunk), Err(CodecError::UnknownFlags(0x80)));
    }

    #[test]
    fn flags_accessors() {
        assert!(FrameFlags::COMPRESSED.is_compressed());
        assert!(!FrameFlags::NONE.is_compressed());
        assert_eq!(FrameFlags::from_bits(1), Ok(FrameFlags::COMPRESSED));
        assert_eq!(FrameFlags::default(), FrameFlags::NONE);
    }
}
