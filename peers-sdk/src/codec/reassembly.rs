//! [`FrameDecoder`]: checks frames, reassembles chunked messages and decompresses them.

use std::collections::HashMap;

use bytes::Bytes;

use super::compress::decompress_bounded;
use super::frame::{ChunkHeader, FrameFlags, FrameHeader};
use super::{CodecConfig, size_u64, too_large};
use crate::error::CodecError;

/// Turns incoming frames back into messages.
///
/// Feed it every frame of a connection, in order, with [`decode`](Self::decode). Chunks
/// of one message must come in order; chunks of different messages may interleave. The
/// rules it enforces, and the error each breach gives, are listed in the
/// [module documentation](super#reassembly-rules).
///
/// Memory is bounded by the configuration, never by what the peer declares: buffers
/// grow only as chunk data arrives, at most [`CodecConfig::max_partial_messages`]
/// messages are held at once, holding at most [`CodecConfig::max_reassembly_bytes`]
/// between them, and decompression stops at [`CodecConfig::max_message_size`].
///
/// # After an error
///
/// Every error means the peer is broken or hostile, and the connection should be
/// closed: the decoder is then poisoned as far as the protocol is concerned, and its
/// later results mean nothing. It stays safe to use, though. A frame that fails leaves
/// the decoder as it was before that frame, except that a message whose decompression
/// fails is dropped, and the limits above keep holding whatever is fed to it next.
#[derive(Debug)]
pub struct FrameDecoder {
    config: CodecConfig,
    partial: HashMap<u32, PartialMessage>,
    /// Sum of `partial[..].data.len()`.
    buffered: usize,
}

/// A chunked message of which some, but not all, chunks have arrived.
#[derive(Debug)]
struct PartialMessage {
    /// The header of chunk 0; later chunks must agree with it.
    first: ChunkHeader,
    /// The index the next chunk of this message must have.
    next_index: u32,
    /// The data of chunks `0..next_index`, joined.
    data: Vec<u8>,
}

impl FrameDecoder {
    /// Creates a decoder with no messages in progress.
    pub fn new(config: CodecConfig) -> Self {
        FrameDecoder { config, partial: HashMap::new(), buffered: 0 }
    }

    /// Feeds one frame: the plaintext record, starting at its type byte.
    ///
    /// Returns `Ok(Some(message))` when this frame completes a message (decompressed if
    /// it was sent compressed), and `Ok(None)` when the message needs more chunks. An
    /// uncompressed message that arrived in a single frame is returned as a slice of
    /// `frame`, without copying.
    pub fn decode(&mut self, frame: Bytes) -> Result<Option<Bytes>, CodecError> {
        let (header, header_len) = FrameHeader::parse(&frame)?;
        if header_len > frame.len() {
            // `parse` never returns a header longer than its input; checked anyway
            // because `Bytes::slice` would panic.
            return Err(CodecError::Truncated { needed: header_len, have: frame.len() });
        }
        let data = frame.slice(header_len..);
        match header {
            FrameHeader::Whole { flags } => self.complete(flags, data).map(Some),
            FrameHeader::Chunk(chunk) => self.chunk(chunk, data),
        }
    }

    /// How many chunked messages are partially received.
    pub fn partial_messages(&self) -> usize {
        self.partial.len()
    }

    /// How many bytes of partially received messages are buffered.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Handles one CHUNK frame whose header is `chunk` and whose data is `data`.
    fn chunk(&mut self, chunk: ChunkHeader, data: Bytes) -> Result<Option<Bytes>, CodecError> {
        let message_id = chunk.message_id;
        if chunk.index >= chunk.count {
            return Err(CodecError::ChunkOutOfRange { message_id, index: chunk.index, count: chunk.count });
        }
        let max = self.config.max_message_size;
        let total_len = match usize::try_from(chunk.total_len) {
            Ok(len) if len <= max => len,
            _ => return Err(CodecError::MessageTooLarge { size: chunk.total_len, max }),
        };
        let is_last = chunk.index == chunk.count.saturating_sub(1);
        let length_mismatch = |actual: usize| CodecError::LengthMismatch {
            message_id,
            declared: chunk.total_len,
            actual: size_u64(actual),
        };

        let Some(partial) = self.partial.get_mut(&message_id) else {
            // The first chunk of a new message.
            if chunk.index != 0 {
                return Err(CodecError::UnexpectedChunk { message_id, expected: 0, got: chunk.index });
            }
            if data.len() > total_len || (is_last && data.len() != total_len) {
                return Err(length_mismatch(data.len()));
            }
            if is_last {
                // A message of one chunk is never buffered.
                return self.complete(chunk.flags, data).map(Some);
            }
            if self.partial.len() >= self.config.max_partial_messages {
                return Err(CodecError::TooManyPartialMessages { max: self.config.max_partial_messages });
            }
            let buffered = within_budget(self.buffered, data.len(), self.config.max_reassembly_bytes)?;
            let mut buffer = Vec::new();
            append(&mut buffer, &data, total_len);
            self.partial.insert(message_id, PartialMessage { first: chunk, next_index: 1, data: buffer });
            self.buffered = buffered;
            return Ok(None);
        };

        if chunk.index != partial.next_index {
            return Err(CodecError::UnexpectedChunk { message_id, expected: partial.next_index, got: chunk.index });
        }
        if !partial.first.same_message_as(&chunk) {
            return Err(CodecError::ChunkHeaderMismatch { message_id });
        }
        let received = partial.data.len().saturating_add(data.len());
        if received > total_len || (is_last && received != total_len) {
            return Err(length_mismatch(received));
        }
        let buffered = within_budget(self.buffered, data.len(), self.config.max_reassembly_bytes)?;
        append(&mut partial.data, &data, total_len);
        partial.next_index = chunk.index.saturating_add(1);
        self.buffered = buffered;
        if !is_last {
            return Ok(None);
        }

        let Some(done) = self.partial.remove(&message_id) else {
            // Unreachable: the entry was borrowed above.
            return Ok(None);
        };
        self.buffered = self.buffered.saturating_sub(done.data.len());
        tracing::trace!(message_id, count = chunk.count, len = total_len, "chunked message reassembled");
        self.complete(done.first.flags, Bytes::from(done.data)).map(Some)
    }

    /// Turns the bytes of a complete message, as sent, into the message.
    fn complete(&self, flags: FrameFlags, message: Bytes) -> Result<Bytes, CodecError> {
        let max = self.config.max_message_size;
        if message.len() > max {
            return Err(too_large(message.len(), max));
        }
        if !flags.is_compressed() {
            return Ok(message);
        }
        decompress_bounded(&message, max).map(Bytes::from)
    }
}

/// The buffered total after adding `more` bytes, or [`CodecError::MessageTooLarge`]
/// if it would exceed `max`.
fn within_budget(buffered: usize, more: usize, max: usize) -> Result<usize, CodecError> {
    match buffered.checked_add(more) {
        Some(total) if total <= max => Ok(total),
        total => Err(CodecError::MessageTooLarge { size: total.map_or(u64::MAX, size_u64), max }),
    }
}

/// Appends `data` to `buffer`, which will never need more than `total_len` bytes:
/// capacity doubles as data arrives but never exceeds `total_len`, so a peer that
/// declares a large message and sends little of it gets little memory.
fn append(buffer: &mut Vec<u8>, data: &[u8], total_len: usize) {
    let needed = buffer.len().saturating_add(data.len());
    if needed > buffer.capacity() {
        let target = buffer.capacity().saturating_mul(2).min(total_len).max(needed);
        buffer.reserve_exact(target.saturating_sub(buffer.len()));
    }
    buffer.extend_from_slice(data);
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::codec::compress::tests::{brotli, compressible, zero_bomb};
    use crate::codec::{Compression, FrameEncoder};

    fn config() -> CodecConfig {
        CodecConfig {
            max_message_size: 1000,
            chunk_size: 100,
            max_partial_messages: 2,
            max_reassembly_bytes: 1500,
            compression: Compression::Off,
        }
    }

    fn whole(flags: FrameFlags, data: &[u8]) -> Bytes {
        let mut frame = BytesMut::new();
        FrameHeader::Whole { flags }.write(&mut frame);
        frame.extend_from_slice(data);
        frame.freeze()
    }

    fn chunk(message_id: u32, index: u32, count: u32, total_len: u64, data: &[u8]) -> Bytes {
        chunk_with(FrameFlags::NONE, message_id, index, count, total_len, data)
    }

    fn chunk_with(flags: FrameFlags, message_id: u32, index: u32, count: u32, total_len: u64, data: &[u8]) -> Bytes {
        let mut frame = BytesMut::new();
        FrameHeader::Chunk(ChunkHeader { flags, message_id, index, count, total_len }).write(&mut frame);
        frame.extend_from_slice(data);
        frame.freeze()
    }

    #[test]
    fn whole_uncompressed_frame_is_not_copied() {
        let mut decoder = FrameDecoder::new(config());
        let frame = whole(FrameFlags::NONE, b"hello");
        let message = decoder.decode(frame.clone()).unwrap().unwrap();
        assert_eq!(message, &b"hello"[..]);
        assert_eq!(message.as_ptr(), frame[2..].as_ptr());
    }

    #[test]
    fn single_chunk_message_is_not_copied_or_buffered() {
        let mut decoder = FrameDecoder::new(config());
        let frame = chunk(5, 0, 1, 3, b"abc");
        let message = decoder.decode(frame.clone()).unwrap().unwrap();
        assert_eq!(message.as_ptr(), frame[22..].as_ptr());
        assert_eq!(decoder.partial_messages(), 0);
    }

    #[test]
    fn header_errors_are_reported() {
        let mut decoder = FrameDecoder::new(config());
        assert_eq!(decoder.decode(Bytes::new()), Err(CodecError::Truncated { needed: 2, have: 0 }));
        assert_eq!(decoder.decode(Bytes::from_static(&[0x07, 0])), Err(CodecError::UnknownFrameType(7)));
        assert_eq!(
            decoder.decode(Bytes::from_static(&[0x01, 0, 0])),
            Err(CodecError::Truncated { needed: 22, have: 3 })
        );
        let empty_brotli = decoder.decode(whole(FrameFlags::COMPRESSED, b""));
        assert!(matches!(empty_brotli, Err(CodecError::Decompress(_))), "{empty_brotli:?}");
        assert_eq!(decoder.decode(Bytes::from_static(&[0x00, 0x04])), Err(CodecError::UnknownFlags(4)));
    }

    #[test]
    fn declared_total_over_the_limit_is_refused_before_buffering() {
        let mut decoder = FrameDecoder::new(config());
        assert_eq!(
            decoder.decode(chunk(1, 0, 2, 1001, b"ab")),
            Err(CodecError::MessageTooLarge { size: 1001, max: 1000 })
        );
        assert_eq!(
            decoder.decode(chunk(1, 0, 2, u64::MAX, b"ab")),
            Err(CodecError::MessageTooLarge { size: u64::MAX, max: 1000 })
        );
        assert_eq!(decoder.buffered_bytes(), 0);
        assert_eq!(decoder.partial_messages(), 0);
    }

    #[test]
    fn whole_frame_over_the_limit_is_refused() {
        let mut decoder = FrameDecoder::new(config());
        assert_eq!(
            decoder.decode(whole(FrameFlags::NONE, &[0; 1001])),
            Err(CodecError::MessageTooLarge { size: 1001, max: 1000 })
        );
        assert!(decoder.decode(whole(FrameFlags::NONE, &[0; 1000])).unwrap().is_some());
    }

    #[test]
    fn index_out_of_range_is_refused() {
        let mut decoder = FrameDecoder::new(config());
        assert_eq!(
            decoder.decode(chunk(1, 2, 2, 10, b"ab")),
            Err(CodecError::ChunkOutOfRange { message_id: 1, index: 2, count: 2 })
        );
        assert_eq!(
            decoder.decode(chunk(1, 0, 0, 10, b"ab")),
            Err(CodecError::ChunkOutOfRange { message_id: 1, index: 0, count: 0 })
        );
    }

    #[test]
    fn chunks_out_of_order_are_refused() {
        let mut decoder = FrameDecoder::new(config());
        // Not starting at 0.
        assert_eq!(
            decoder.decode(chunk(1, 1, 3, 6, b"cd")),
            Err(CodecError::UnexpectedChunk { message_id: 1, expected: 0, got: 1 })
        );
        assert_eq!(decoder.decode(chunk(1, 0, 3, 6, b"ab")), Ok(None));
        // A gap.
        assert_eq!(
            decoder.decode(chunk(1, 2, 3, 6, b"ef")),
            Err(CodecError::UnexpectedChunk { message_id: 1, expected: 1, got: 2 })
        );
        // A duplicate, and a restart of a message still in progress.
        assert_eq!(
            decoder.decode(chunk(1, 0, 3, 6, b"ab")),
            Err(CodecError::UnexpectedChunk { message_id: 1, expected: 1, got: 0 })
        );
        assert_eq!(decoder.decode(chunk(1, 1, 3, 6, b"cd")), Ok(None));
        assert_eq!(
            decoder.decode(chunk(1, 1, 3, 6, b"cd")),
            Err(CodecError::UnexpectedChunk { message_id: 1, expected: 2, got: 1 })
        );
        // The errors left the message intact.
        assert_eq!(decoder.decode(chunk(1, 2, 3, 6, b"ef")), Ok(Some(Bytes::from_static(b"abcdef"))));
    }

    #[test]
    fn chunk_headers_must_agree() {
        let mut decoder = FrameDecoder::new(config());
        assert_eq!(decoder.decode(chunk(9, 0, 3, 6, b"ab")), Ok(None));
        let mismatch = Err(CodecError::ChunkHeaderMismatch { message_id: 9 });
        assert_eq!(decoder.decode(chunk(9, 1, 4, 6, b"cd")), mismatch);
        assert_eq!(decoder.decode(chunk(9, 1, 3, 7, b"cd")), mismatch);
        assert_eq!(decoder.decode(chunk_with(FrameFlags::COMPRESSED, 9, 1, 3, 6, b"cd")), mismatch);
        assert_eq!(decoder.decode(chunk(9, 1, 3, 6, b"cd")), Ok(None));
    }

    #[test]
    fn lengths_must_add_up() {
        let mut decoder = FrameDecoder::new(config());
        // Too much data in the first chunk.
        assert_eq!(
            decoder.decode(chunk(1, 0, 2, 3, b"abcd")),
            Err(CodecError::LengthMismatch { message_id: 1, declared: 3, actual: 4 })
        );
        // Too much data later.
        assert_eq!(decoder.decode(chunk(1, 0, 3, 5, b"ab")), Ok(None));
        assert_eq!(
            decoder.decode(chunk(1, 1, 3, 5, b"cdef")),
            Err(CodecError::LengthMismatch { message_id: 1, declared: 5, actual: 6 })
        );
        // Too little at the last chunk.
        assert_eq!(decoder.decode(chunk(1, 1, 3, 5, b"cd")), Ok(None));
        assert_eq!(
            decoder.decode(chunk(1, 2, 3, 5, b"")),
            Err(CodecError::LengthMismatch { message_id: 1, declared: 5, actual: 4 })
        );
        // A single chunk that is too short.
        assert_eq!(
            decoder.decode(chunk(2, 0, 1, 5, b"ab")),
            Err(CodecError::LengthMismatch { message_id: 2, declared: 5, actual: 2 })
        );
        assert_eq!(decoder.decode(chunk(1, 2, 3, 5, b"e")), Ok(Some(Bytes::from_static(b"abcde"))));
    }

    #[test]
    fn too_many_partial_messages_are_refused() {
        let mut decoder = FrameDecoder::new(config());
        assert_eq!(decoder.decode(chunk(1, 0, 2, 4, b"ab")), Ok(None));
        assert_eq!(decoder.decode(chunk(2, 0, 2, 4, b"ab")), Ok(None));
        assert_eq!(decoder.decode(chunk(3, 0, 2, 4, b"ab")), Err(CodecError::TooManyPartialMessages { max: 2 }));
        // A complete single-chunk message does not need a slot.
        assert_eq!(decoder.decode(chunk(3, 0, 1, 2, b"ab")), Ok(Some(Bytes::from_static(b"ab"))));
        // Finishing one frees a slot.
        assert_eq!(decoder.decode(chunk(1, 1, 2, 4, b"cd")), Ok(Some(Bytes::from_static(b"abcd"))));
        assert_eq!(decoder.decode(chunk(3, 0, 2, 4, b"ab")), Ok(None));
        assert_eq!(decoder.partial_messages(), 2);
    }

    #[test]
    fn reassembly_budget_is_enforced() {
        let mut decoder = FrameDecoder::new(config());
        assert_eq!(decoder.decode(chunk(1, 0, 2, 1000, &[1; 800])), Ok(None));
        assert_eq!(decoder.buffered_bytes(), 800);
        assert_eq!(
            decoder.decode(chunk(2, 0, 2, 1000, &[2; 701])),
            Err(CodecError::MessageTooLarge { size: 1501, max: 1500 })
        );
        assert_eq!(decoder.decode(chunk(2, 0, 2, 1000, &[2; 700])), Ok(None));
        assert_eq!(decoder.buffered_bytes(), 1500);
        assert_eq!(
            decoder.decode(chunk(1, 1, 2, 1000, &[1; 200])),
            Err(CodecError::MessageTooLarge { size: 1700, max: 1500 })
        );
        assert_eq!(decoder.partial_messages(), 2);
    }

    #[test]
    fn buffers_grow_with_data_not_with_declared_length() {
        let mut decoder =
            FrameDecoder::new(CodecConfig { max_message_size: 1 << 30, max_reassembly_bytes: 1 << 30, ..config() });
        assert_eq!(decoder.decode(chunk(1, 0, 1000, 1 << 30, b"x")), Ok(None));
        let partial = &decoder.partial[&1];
        assert!(partial.data.capacity() < 1024, "capacity {}", partial.data.capacity());
    }

    #[test]
    fn interleaved_messages_are_reassembled() {
        let mut decoder = FrameDecoder::new(config());
        assert_eq!(decoder.decode(chunk(1, 0, 2, 4, b"ab")), Ok(None));
        assert_eq!(decoder.decode(chunk(2, 0, 3, 3, b"x")), Ok(None));
        assert_eq!(decoder.decode(whole(FrameFlags::NONE, b"between")), Ok(Some(Bytes::from_static(b"between"))));
        assert_eq!(decoder.decode(chunk(2, 1, 3, 3, b"y")), Ok(None));
        assert_eq!(decoder.decode(chunk(1, 1, 2, 4, b"cd")), Ok(Some(Bytes::from_static(b"abcd"))));
        assert_eq!(decoder.decode(chunk(2, 2, 3, 3, b"z")), Ok(Some(Bytes::from_static(b"xyz"))));
        assert_eq!(decoder.partial_messages(), 0);
        assert_eq!(decoder.buffered_bytes(), 0);
        // A finished message's id may be used again.
        assert_eq!(decoder.decode(chunk(1, 0, 2, 2, b"a")), Ok(None));
    }

    #[test]
    fn compressed_whole_and_chunked_messages_are_decompressed() {
        let message = compressible(900);
        let compressed = brotli(&message);
        let mut decoder = FrameDecoder::new(config());
        assert_eq!(decoder.decode(whole(FrameFlags::COMPRESSED, &compressed)).unwrap().unwrap(), message);
        let (head, tail) = compressed.split_at(compressed.len() / 2);
        let total = compressed.len() as u64;
        assert_eq!(decoder.decode(chunk_with(FrameFlags::COMPRESSED, 4, 0, 2, total, head)), Ok(None));
        let out = decoder.decode(chunk_with(FrameFlags::COMPRESSED, 4, 1, 2, total, tail)).unwrap().unwrap();
        assert_eq!(out, message);
    }

    #[test]
    fn corrupt_compressed_message_is_refused() {
        let mut decoder = FrameDecoder::new(config());
        let result = decoder.decode(whole(FrameFlags::COMPRESSED, b"this is not brotli"));
        assert!(matches!(result, Err(CodecError::Decompress(_))), "{result:?}");
    }

    #[test]
    fn brotli_bomb_fails_fast() {
        let config =
            CodecConfig { max_message_size: 1 << 20, chunk_size: 1 << 20, max_reassembly_bytes: 1 << 20, ..config() };
        let mut decoder = FrameDecoder::new(config);
        let bomb = zero_bomb(64); // expands to 1 GiB
        assert_eq!(
            decoder.decode(whole(FrameFlags::COMPRESSED, &bomb)),
            Err(CodecError::DecompressedTooLarge { max: 1 << 20 })
        );
        // The same bomb, chunked.
        let (head, tail) = bomb.split_at(bomb.len() / 2);
        let total = bomb.len() as u64;
        assert_eq!(decoder.decode(chunk_with(FrameFlags::COMPRESSED, 1, 0, 2, total, head)), Ok(None));
        assert_eq!(
            decoder.decode(chunk_with(FrameFlags::COMPRESSED, 1, 1, 2, total, tail)),
            Err(CodecError::DecompressedTooLarge { max: 1 << 20 })
        );
        assert_eq!(decoder.buffered_bytes(), 0);
    }

    #[test]
    fn decodes_what_the_encoder_produces() {
        let config = CodecConfig { compression: Compression::Brotli { min_size: 0, quality: 3 }, ..config() };
        let mut encoder = FrameEncoder::new(config.clone());
        let mut decoder = FrameDecoder::new(config);
        for message in [Vec::new(), b"x".to_vec(), compressible(1000), (0..=255).cycle().take(1000).collect()] {
            let mut out = None;
            for frame in encoder.encode(&message, 64, 0, 0).unwrap() {
                out = decoder.decode(frame.freeze()).unwrap();
            }
            assert_eq!(out.unwrap(), message);
        }
    }
}
