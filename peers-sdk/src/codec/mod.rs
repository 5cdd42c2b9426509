//! The PeerTx codec: framing, chunking and bounded Brotli compression of messages.
//!
//! A *message* is an opaque byte string (in practice MessagePack) that one side wants
//! the other to receive whole. The codec turns it into one or more *frames*, each small
//! enough for the socket, and turns frames back into messages on the other side:
//!
//! - [`FrameEncoder`] compresses a message when that pays off, then emits one WHOLE
//!   frame or a run of CHUNK frames.
//! - [`FrameDecoder`] checks every header, reassembles chunks (chunks of different
//!   messages may interleave), decompresses with a hard output limit and hands back
//!   the message.
//!
//! What it does not do: it does no I/O and keeps no clock, it does not encrypt or
//! authenticate (each frame is the plaintext of one AEAD record, sealed by the
//! connection layer, which is why [`FrameEncoder::encode`] leaves headroom and
//! tailroom around each frame), and it does not interpret the message bytes.
//!
//! # Wire layout
//!
//! ```text
//! WHOLE frame (a message that fits in one frame):
//!  +--------+--------+------------------------+
//!  | 0x00   | flags  | message bytes ...      |
//!  +--------+--------+------------------------+
//!
//! CHUNK frame (one piece of a larger message):
//!  +--------+--------+------------+------------+------------+----------------+-----------+
//!  | 0x01   | flags  | msg id u32 | index u32  | count u32  | total len u64  | data ...  |
//!  +--------+--------+------------+------------+------------+----------------+-----------+
//!
//! All integers are big-endian; the CHUNK header is 22 bytes.
//! flags: bit 0 = COMPRESSED (the message bytes, after joining all chunks, are
//! Brotli); every other bit must be zero.
//! ```
//!
//! # Reassembly rules
//!
//! The decoder refuses, with a typed [`CodecError`], and never with a panic:
//!
//! - an unknown type byte, undefined flag bits or a header cut short;
//! - a message whose declared total length exceeds [`CodecConfig::max_message_size`]
//!   (checked on its first chunk, before anything is buffered);
//! - a chunk whose index is not below its count (a count of zero included);
//! - a chunk that is not the next one of its message: chunks of one message arrive in
//!   order 0, 1, 2, …, while chunks of different messages may interleave freely;
//! - a chunk whose count, total length or flags differ from its message's first chunk;
//! - chunk data that overruns the declared total length, or falls short of it at the
//!   last chunk;
//! - more than [`CodecConfig::max_partial_messages`] messages in progress, or more than
//!   [`CodecConfig::max_reassembly_bytes`] buffered for them in total;
//! - compressed data that is corrupt, or that expands beyond
//!   [`CodecConfig::max_message_size`] (decompression stops there, so a Brotli bomb
//!   costs at most that much output).
//!
//! Any of these means the peer is broken or hostile; the connection treats it as fatal.
//!
//! # Example
//!
//! ```
//! use peers_sdk::codec::{CodecConfig, FrameDecoder, FrameEncoder};
//!
//! let config = CodecConfig::default();
//! config.validate()?;
//! let mut encoder = FrameEncoder::new(config.clone());
//! let mut decoder = FrameDecoder::new(config);
//!
//! // 80 KB of records: compressed if that pays, then cut into frames of at most 16 KiB.
//! let message: Vec<u8> = (0..5_000u32).flat_map(|i| format!("{{\"seq\":{i:>8}}},").into_bytes()).collect();
//! let headroom = 8; // the sealing layer writes a record counter here...
//! let tailroom = 16; // ...and appends an authentication tag here.
//! let frames = encoder.encode(&message, 16 * 1024, headroom, tailroom)?;
//! assert!(frames.iter().all(|record| record.len() - headroom <= 16 * 1024));
//!
//! let mut received = None;
//! for mut record in frames {
//!     // Sealing and opening happen elsewhere; the decoder gets the plaintext frame.
//!     let frame = record.split_off(headroom).freeze();
//!     received = decoder.decode(frame)?;
//! }
//! assert_eq!(received.as_deref(), Some(&message[..]));
//! # Ok::<(), peers_sdk::Error>(())
//! ```
#![deny(clippy::indexing_slicing)]

mod compress;
mod encoder;
mod frame;
mod message;
mod reassembly;

pub(crate) use compress::CompressionBackoff;
pub use encoder::FrameEncoder;
pub use frame::{CHUNK_HEADER_LEN, ChunkHeader, FrameFlags, FrameHeader, TYPE_CHUNK, TYPE_WHOLE, WHOLE_HEADER_LEN};
pub(crate) use message::MessageBuf;
pub use reassembly::FrameDecoder;

use crate::error::{CodecError, Error};

/// Limits and choices shared by [`FrameEncoder`] and [`FrameDecoder`].
///
/// Both sides of a connection should use the same values: a message that one side may
/// send, the other must be willing to take. [`CodecConfig::validate`] checks that the
/// values are usable; the encoder refuses to run on an invalid configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecConfig {
    /// Largest message, in bytes, before compression on the sending side and after
    /// decompression on the receiving side. Default 64 MiB.
    pub max_message_size: usize,
    /// Data bytes carried by each frame (not counting its header). A message longer
    /// than this is chunked even when the socket could carry it in one frame, so a
    /// large message does not hold up the ones queued behind it. Default
    /// [`DEFAULT_CHUNK_SIZE`](Self::DEFAULT_CHUNK_SIZE), 1 MiB + 1 KiB.
    pub chunk_size: usize,
    /// How many chunked messages may be partially received at once. Default 8.
    pub max_partial_messages: usize,
    /// Total bytes that partially received messages may hold. Must be at least
    /// `max_message_size`. Default 128 MiB.
    pub max_reassembly_bytes: usize,
    /// Whether and how outgoing messages are compressed. Incoming compressed messages
    /// are always accepted.
    pub compression: Compression,
}

impl Default for CodecConfig {
    fn default() -> Self {
        CodecConfig {
            max_message_size: 64 * 1024 * 1024,
            chunk_size: Self::DEFAULT_CHUNK_SIZE,
            max_partial_messages: 8,
            max_reassembly_bytes: 128 * 1024 * 1024,
            compression: Compression::default(),
        }
    }
}

impl CodecConfig {
    /// The default [`chunk_size`](Self::chunk_size): 1 MiB of application data plus
    /// 1 KiB for the RPC envelope and MessagePack headers around it, so a call or
    /// reply carrying a 1 MiB buffer travels as one WHOLE frame (received without a
    /// reassembly copy) on a socket whose frames hold it, rather than as a full
    /// chunk and a chunk of a few bytes.
    pub const DEFAULT_CHUNK_SIZE: usize = (1 << 20) + 1024;

    /// Checks that the limits are usable, naming the first field that is not.
    ///
    /// Fails with [`Error::InvalidInput`] if a size or count is zero, if `chunk_size`
    /// exceeds `max_message_size`, if `max_reassembly_bytes` is below
    /// `max_message_size` (the largest message could never be reassembled), or if the
    /// Brotli quality is above 11.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |what: &'static str, detail: String| Err(Error::InvalidInput { what, detail });
        if self.max_message_size == 0 {
            return invalid("CodecConfig.max_message_size", "must be at least 1".into());
        }
        if self.chunk_size == 0 {
            return invalid("CodecConfig.chunk_size", "must be at least 1".into());
        }
        if self.chunk_size > self.max_message_size {
            return invalid(
                "CodecConfig.chunk_size",
                format!("{} exceeds max_message_size ({})", self.chunk_size, self.max_message_size),
            );
        }
        if self.max_partial_messages == 0 {
            return invalid("CodecConfig.max_partial_messages", "must be at least 1".into());
        }
        if self.max_reassembly_bytes < self.max_message_size {
            return invalid(
                "CodecConfig.max_reassembly_bytes",
                format!(
                    "{} is below max_message_size ({}), so the largest message could not be reassembled",
                    self.max_reassembly_bytes, self.max_message_size
                ),
            );
        }
        if let Compression::Brotli { quality, .. } = self.compression
            && quality > compress::MAX_QUALITY
        {
            return invalid(
                "CodecConfig.compression",
                format!("brotli quality {quality} is above the maximum of {}", compress::MAX_QUALITY),
            );
        }
        Ok(())
    }
}

/// How the encoder compresses outgoing messages.
///
/// Compression is only ever used when it pays: the compressed form must be at least
/// 1/16 smaller than the message, and large messages are first sampled cheaply so
/// incompressible data (media, ciphertext) costs little CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// Never compress.
    Off,
    /// Compress with Brotli messages of at least `min_size` bytes.
    Brotli {
        /// Messages shorter than this are sent as they are.
        min_size: usize,
        /// Brotli quality, 0 (fastest) to 11 (smallest). Qualities 2 to 4 are the
        /// useful range for live traffic; 5 and above are several times slower.
        quality: u32,
    },
}

impl Default for Compression {
    /// Brotli at quality 3 for messages of 4 KiB or more.
    ///
    /// Measured on 1 MiB of JSON-like and MessagePack records (release build, one core
    /// of a 2-core machine): quality 3 compresses at 60–85 MB/s to 28–35 % of the input;
    /// quality 4 is about a third slower for 3–10 % smaller output; quality 1 is no
    /// faster and 30 % larger; quality 5 is three times slower. Below 4 KiB the saving
    /// is a few hundred bytes per message and not worth the fixed cost of a call.
    fn default() -> Self {
        Compression::Brotli { min_size: 4096, quality: 3 }
    }
}

/// Converts a `usize` to `u64` for error reports; exact on every supported platform.
fn size_u64(size: usize) -> u64 {
    u64::try_from(size).unwrap_or(u64::MAX)
}

/// Builds [`CodecError::MessageTooLarge`].
fn too_large(size: usize, max: usize) -> CodecError {
    CodecError::MessageTooLarge { size: size_u64(size), max }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_field(config: &CodecConfig) -> &'static str {
        match config.validate() {
            Err(Error::InvalidInput { what, .. }) => what,
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn default_config_is_valid() {
        CodecConfig::default().validate().unwrap();
        let off = CodecConfig { compression: Compression::Off, ..CodecConfig::default() };
        off.validate().unwrap();
    }

    #[test]
    fn validate_names_the_bad_field() {
        let base = CodecConfig::default();
        let cases = [
            (CodecConfig { max_message_size: 0, ..base.clone() }, "CodecConfig.max_message_size"),
            (CodecConfig { chunk_size: 0, ..base.clone() }, "CodecConfig.chunk_size"),
            (CodecConfig { chunk_size: base.max_message_size + 1, ..base.clone() }, "CodecConfig.chunk_size"),
            (CodecConfig { max_partial_messages: 0, ..base.clone() }, "CodecConfig.max_partial_messages"),
            (CodecConfig { max_reassembly_bytes: 0, ..base.clone() }, "CodecConfig.max_reassembly_bytes"),
            (
                CodecConfig { max_reassembly_bytes: base.max_message_size - 1, ..base.clone() },
                "CodecConfig.max_reassembly_bytes",
            ),
            (
                CodecConfig { compression: Compression::Brotli { min_size: 0, quality: 12 }, ..base.clone() },
                "CodecConfig.compression",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(invalid_field(&config), field, "{config:?}");
        }
    }

    #[test]
    fn smallest_sensible_config_is_valid() {
        let config = CodecConfig {
            max_message_size: 1,
            chunk_size: 1,
            max_partial_messages: 1,
            max_reassembly_bytes: 1,
            compression: Compression::Brotli { min_size: 0, quality: 11 },
        };
        config.validate().unwrap();
    }
}
