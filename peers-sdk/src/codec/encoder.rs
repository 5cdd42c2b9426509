//! [`FrameEncoder`]: turns one message into WHOLE or CHUNK frames.

use bytes::BytesMut;

use super::compress::{CompressionBackoff, compress_if_worthwhile, compress_with_backoff};
use super::frame::{CHUNK_HEADER_LEN, ChunkHeader, FrameFlags, FrameHeader, WHOLE_HEADER_LEN};
use super::message::MessageBuf;
use super::{CodecConfig, size_u64, too_large};
use crate::error::Error;

/// Splits outgoing messages into frames, compressing them when that pays.
///
/// The encoder keeps one piece of state, the next chunked-message id (a wrapping `u32`
/// counter), so ids of messages in flight on one connection differ. It never fails
/// because of what the peer does; it fails only for a message larger than
/// [`CodecConfig::max_message_size`] or for bad local arguments.
#[derive(Debug)]
pub struct FrameEncoder {
    config: CodecConfig,
    next_message_id: u32,
}

impl FrameEncoder {
    /// Creates an encoder. The configuration is checked by each
    /// [`encode`](Self::encode); check it up front with [`CodecConfig::validate`].
    pub fn new(config: CodecConfig) -> Self {
        FrameEncoder { config, next_message_id: 0 }
    }

    /// The configuration this encoder was created with.
    pub fn config(&self) -> &CodecConfig {
        &self.config
    }

    /// Encodes one message into frames.
    ///
    /// Each frame's length (header and data, not counting headroom or tailroom) is at
    /// most `max_frame`, and carries at most `min(chunk_size, max_frame - header)` data
    /// bytes. Each returned buffer starts with `headroom` zero bytes reserved for the
    /// caller (an AEAD counter) followed by the frame, and has at least `tailroom` bytes
    /// of spare capacity (for an AEAD tag), so the caller can append without
    /// reallocating.
    ///
    /// The message is compressed first when [`CodecConfig::compression`] allows it and
    /// the result is at least 1/16 smaller. If the (possibly compressed) message then
    /// fits in one frame it is sent as a WHOLE frame; otherwise as CHUNK frames under a
    /// fresh message id.
    ///
    /// Fails with [`Error::Codec`]`(`[`MessageTooLarge`](crate::error::CodecError::MessageTooLarge)`)`
    /// if the message exceeds `max_message_size`, and with [`Error::InvalidInput`] if
    /// `max_frame` cannot carry a chunk with at least one data byte (it is below
    /// [`CHUNK_HEADER_LEN`]` + 1`), if the message would need more than `u32::MAX`
    /// chunks, if the buffer sizes overflow, or if the configuration is invalid.
    pub fn encode(
        &mut self,
        message: &[u8],
        max_frame: usize,
        headroom: usize,
        tailroom: usize,
    ) -> Result<Vec<BytesMut>, Error> {
        self.check(message.len(), max_frame)?;
        let compressed = compress_if_worthwhile(message, self.config.compression);
        match &compressed {
            Some(compressed) => self.frames(compressed, FrameFlags::COMPRESSED, max_frame, headroom, tailroom),
            None => self.frames(message, FrameFlags::NONE, max_frame, headroom, tailroom),
        }
    }

    /// [`encode`](Self::encode) for a message built in a [`MessageBuf`]: when it goes
    /// out as one uncompressed WHOLE frame, that frame is the message's own buffer,
    /// with no copy. With `backoff` (one per stream), compression is not even tried
    /// while the stream's recent messages did not compress.
    pub(crate) fn encode_message(
        &mut self,
        message: MessageBuf,
        max_frame: usize,
        headroom: usize,
        tailroom: usize,
        backoff: Option<&mut CompressionBackoff>,
    ) -> Result<Vec<BytesMut>, Error> {
        let len = message.as_slice().len();
        self.check(len, max_frame)?;
        let compressed = match backoff {
            Some(backoff) => compress_with_backoff(message.as_slice(), self.config.compression, backoff),
            None => compress_if_worthwhile(message.as_slice(), self.config.compression),
        };
        if let Some(compressed) = compressed {
            return self.frames(&compressed, FrameFlags::COMPRESSED, max_frame, headroom, tailroom);
        }
        let message = if len <= self.whole_capacity(max_frame) {
            match message.into_whole_frame(FrameFlags::NONE, headroom, tailroom) {
                Ok(frame) => return Ok(vec![frame]),
                Err(message) => message,
            }
        } else {
            message
        };
        self.frames(message.as_slice(), FrameFlags::NONE, max_frame, headroom, tailroom)
    }

    /// The configuration, the message size and `max_frame` allow encoding.
    fn check(&self, len: usize, max_frame: usize) -> Result<(), Error> {
        self.config.validate()?;
        if len > self.config.max_message_size {
            return Err(too_large(len, self.config.max_message_size).into());
        }
        let min_frame = CHUNK_HEADER_LEN + 1;
        if max_frame < min_frame {
            return Err(Error::InvalidInput {
                what: "max_frame",
                detail: format!("{max_frame} bytes cannot carry a chunk; the minimum is {min_frame}"),
            });
        }
        Ok(())
    }

    /// The most data bytes a WHOLE frame carries; `max_frame` is at least
    /// `CHUNK_HEADER_LEN + 1` ([`check`](Self::check)).
    fn whole_capacity(&self, max_frame: usize) -> usize {
        self.config.chunk_size.min(max_frame - WHOLE_HEADER_LEN)
    }

    /// Cuts `payload` (the message as sent) into a WHOLE frame or CHUNK frames.
    fn frames(
        &mut self,
        payload: &[u8],
        flags: FrameFlags,
        max_frame: usize,
        headroom: usize,
        tailroom: usize,
    ) -> Result<Vec<BytesMut>, Error> {
        if payload.len() <= self.whole_capacity(max_frame) {
            let header = FrameHeader::Whole { flags };
            let frame = new_frame(headroom, header, payload, tailroom)?;
            return Ok(vec![frame]);
        }

        let chunk_capacity = self.config.chunk_size.min(max_frame - CHUNK_HEADER_LEN);
        let count = payload.len().div_ceil(chunk_capacity);
        let count = u32::try_from(count).map_err(|_| Error::InvalidInput {
            what: "max_frame",
            detail: format!("a {} byte message in frames of {max_frame} bytes needs {count} chunks", payload.len()),
        })?;
        let message_id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1);
        tracing::trace!(message_id, count, len = payload.len(), compressed = flags.is_compressed(), "chunking message");

        let mut frames = Vec::with_capacity(payload.len().div_ceil(chunk_capacity));
        for (index, data) in (0..count).zip(payload.chunks(chunk_capacity)) {
            let header =
                FrameHeader::Chunk(ChunkHeader { flags, message_id, index, count, total_len: size_u64(payload.len()) });
            frames.push(new_frame(headroom, header, data, tailroom)?);
        }
        Ok(frames)
    }
}

/// Allocates one frame buffer: `headroom` zeros, the header, the data, and `tailroom`
/// bytes of spare capacity.
fn new_frame(headroom: usize, header: FrameHeader, data: &[u8], tailroom: usize) -> Result<BytesMut, Error> {
    let capacity = headroom
        .checked_add(header.encoded_len())
        .and_then(|n| n.checked_add(data.len()))
        .and_then(|n| n.checked_add(tailroom))
        .ok_or_else(|| Error::InvalidInput {
            what: "headroom and tailroom",
            detail: format!("{headroom} + frame + {tailroom} bytes overflows usize"),
        })?;
    let mut frame = BytesMut::with_capacity(capacity);
    frame.resize(headroom, 0);
    header.write(&mut frame);
    frame.extend_from_slice(data);
    Ok(frame)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::codec::compress::tests::{compressible, incompressible};
    use crate::codec::{Compression, FrameDecoder};
    use crate::error::CodecError;

    fn config() -> CodecConfig {
        CodecConfig {
            max_message_size: 1 << 20,
            chunk_size: 1000,
            max_partial_messages: 4,
            max_reassembly_bytes: 2 << 20,
            compression: Compression::Brotli { min_size: 4096, quality: 3 },
        }
    }

    fn parse(frame: &[u8], headroom: usize) -> FrameHeader {
        FrameHeader::parse(&frame[headroom..]).unwrap().0
    }

    #[test]
    fn small_message_is_one_whole_frame() {
        let mut encoder = FrameEncoder::new(config());
        let frames = encoder.encode(b"hello", 1000, 0, 0).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0][..], b"\x00\x00hello");
    }

    #[test]
    fn empty_message_is_one_whole_frame() {
        let mut encoder = FrameEncoder::new(config());
        let frames = encoder.encode(b"", 23, 0, 0).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0][..], b"\x00\x00");
    }

    #[test]
    fn compressible_data_sets_the_compressed_flag() {
        let mut encoder = FrameEncoder::new(config());
        let message = compressible(20_000);
        let frames = encoder.encode(&message, 64 * 1024, 0, 0).unwrap();
        for frame in &frames {
            assert!(parse(frame, 0).flags().is_compressed());
        }
        let sent: usize = frames.iter().map(|f| f.len()).sum();
        assert!(sent < message.len() / 4, "{sent} bytes sent for {}", message.len());
    }

    #[test]
    fn random_data_is_sent_uncompressed() {
        let mut encoder = FrameEncoder::new(config());
        let message = incompressible(20_000);
        let frames = encoder.encode(&message, 64 * 1024, 0, 0).unwrap();
        assert_eq!(frames.len(), 20);
        for frame in &frames {
            assert!(!parse(frame, 0).flags().is_compressed());
        }
    }

    #[test]
    fn compression_off_is_respected() {
        let mut encoder = FrameEncoder::new(CodecConfig { compression: Compression::Off, ..config() });
        let frames = encoder.encode(&compressible(20_000), 64 * 1024, 0, 0).unwrap();
        assert_eq!(frames.len(), 20);
        assert!(frames.iter().all(|f| !parse(f, 0).flags().is_compressed()));
    }

    #[test]
    fn max_frame_headroom_and_tailroom_are_respected() {
        let mut encoder = FrameEncoder::new(CodecConfig { compression: Compression::Off, ..config() });
        let message = incompressible(5_000);
        for max_frame in [23, 24, 100, 522, 1022, 1023, 5_002, 100_000] {
            let frames = encoder.encode(&message, max_frame, 8, 16).unwrap();
            let mut data = Vec::new();
            for frame in &frames {
                assert!(frame.len() - 8 <= max_frame, "max_frame {max_frame}: frame of {}", frame.len() - 8);
                assert!(frame.capacity() - frame.len() >= 16, "max_frame {max_frame}: no room for a tag");
                assert_eq!(&frame[..8], &[0; 8]);
                let (header, len) = FrameHeader::parse(&frame[8..]).unwrap();
                assert!(frame.len() - 8 - len <= 1000, "chunk_size exceeded");
                if let FrameHeader::Chunk(chunk) = header {
                    assert_eq!(chunk.count as usize, frames.len());
                    assert_eq!(chunk.total_len, 5_000);
                }
                data.extend_from_slice(&frame[8 + len..]);
            }
            assert_eq!(data, message, "max_frame {max_frame}");
            let expected = message.len().div_ceil(1000.min(max_frame - CHUNK_HEADER_LEN));
            assert_eq!(frames.len(), expected, "max_frame {max_frame}");
        }
    }

    #[test]
    fn whole_frame_is_used_up_to_chunk_size() {
        let mut encoder = FrameEncoder::new(CodecConfig { compression: Compression::Off, ..config() });
        let frames = encoder.encode(&[7; 1000], 1002, 0, 0).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].len(), 1002);
        // One byte more than the frame can hold whole: chunked.
        let frames = encoder.encode(&[7; 1000], 1001, 0, 0).unwrap();
        assert_eq!(frames.len(), 2);
        // Frames could hold it, but chunk_size could not.
        let frames = encoder.encode(&[7; 1001], 100_000, 0, 0).unwrap();
        assert_eq!(frames.len(), 2);
    }

    #[test]
    fn message_ids_are_fresh_and_wrap() {
        let mut encoder = FrameEncoder::new(CodecConfig { compression: Compression::Off, ..config() });
        encoder.next_message_id = u32::MAX;
        let ids: Vec<u32> = (0..3)
            .map(|_| match parse(&encoder.encode(&[1; 1500], 2000, 0, 0).unwrap()[0], 0) {
                FrameHeader::Chunk(chunk) => chunk.message_id,
                other => panic!("expected a chunk, got {other:?}"),
            })
            .collect();
        assert_eq!(ids, [u32::MAX, 0, 1]);
        // Whole frames do not use up ids.
        encoder.encode(b"small", 2000, 0, 0).unwrap();
        match parse(&encoder.encode(&[1; 1500], 2000, 0, 0).unwrap()[0], 0) {
            FrameHeader::Chunk(chunk) => assert_eq!(chunk.message_id, 2),
            other => panic!("expected a chunk, got {other:?}"),
        }
    }

    #[test]
    fn too_large_message_is_refused() {
        let mut encoder = FrameEncoder::new(CodecConfig { max_message_size: 100, chunk_size: 50, ..config() });
        match encoder.encode(&[0; 101], 1000, 0, 0) {
            Err(Error::Codec(CodecError::MessageTooLarge { size: 101, max: 100 })) => {}
            other => panic!("expected MessageTooLarge, got {other:?}"),
        }
        assert!(encoder.encode(&[0; 100], 1000, 0, 0).is_ok());
    }

    #[test]
    fn tiny_max_frame_is_refused() {
        let mut encoder = FrameEncoder::new(config());
        for max_frame in [0, 1, 2, 22] {
            match encoder.encode(b"x", max_frame, 0, 0) {
                Err(Error::InvalidInput { what: "max_frame", .. }) => {}
                other => panic!("max_frame {max_frame}: expected InvalidInput, got {other:?}"),
            }
        }
    }

    #[test]
    fn overflowing_headroom_is_refused() {
        let mut encoder = FrameEncoder::new(config());
        assert!(matches!(encoder.encode(b"x", 100, usize::MAX, 0), Err(Error::InvalidInput { .. })));
        assert!(matches!(encoder.encode(b"x", 100, 0, usize::MAX), Err(Error::InvalidInput { .. })));
    }

    #[test]
    fn invalid_config_is_refused() {
        let mut encoder = FrameEncoder::new(CodecConfig { chunk_size: 0, ..config() });
        assert!(matches!(
            encoder.encode(b"x", 100, 0, 0),
            Err(Error::InvalidInput { what: "CodecConfig.chunk_size", .. })
        ));
    }

    #[test]
    fn frames_decode_back() {
        let mut encoder = FrameEncoder::new(config());
        let mut decoder = FrameDecoder::new(config());
        for message in [compressible(50_000), incompressible(50_000), b"tiny".to_vec()] {
            let frames = encoder.encode(&message, 1500, 4, 16).unwrap();
            let mut out = None;
            for mut frame in frames {
                assert!(out.is_none());
                out = decoder.decode(frame.split_off(4).freeze()).unwrap();
            }
            assert_eq!(out.unwrap(), message);
        }
    }

    /// A message built in a `MessageBuf` gives the same frames as the same bytes
    /// through `encode`; an uncompressed WHOLE frame reuses the buffer in place.
    #[test]
    fn message_buffers_encode_like_slices_and_whole_frames_are_not_copied() {
        let cases = [(b"tiny".to_vec(), 1500), (incompressible(900), 1500), (compressible(5_000), 1500)];
        let cases = cases.into_iter().chain([(incompressible(5_000), 1500), (incompressible(900), 100)]);
        for (message, max_frame) in cases {
            let mut buf = MessageBuf::with_capacity(message.len());
            buf.extend_from_slice(&message);
            let start = buf.as_slice().as_ptr();
            let expected = FrameEncoder::new(config()).encode(&message, max_frame, 8, 16).unwrap();
            let frames = FrameEncoder::new(config()).encode_message(buf, max_frame, 8, 16, None).unwrap();
            assert_eq!(frames, expected, "{} bytes, max_frame {max_frame}", message.len());
            assert!(frames.iter().all(|frame| frame.capacity() - frame.len() >= 16));
            if frames.len() == 1 && message.len() < 4096 {
                assert_eq!(frames[0][10..].as_ptr(), start, "the WHOLE frame copied the message");
            }
        }
    }
}
