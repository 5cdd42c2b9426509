//! Brotli compression that is used only when it pays, and decompression with a hard
//! limit on its output.
//!
//! Compressing: a message is compressed only if the configuration asks for it, it is at
//! least `min_size` long, and the result is at least 1/16 smaller. Messages of
//! [`SAMPLE_FROM`] bytes or more are first judged by compressing a prefix (an eighth of
//! the message, between [`MIN_SAMPLE_LEN`] and [`SAMPLE_LEN`] bytes) at a low quality:
//! incompressible payloads (media, ciphertext) then cost a fraction of a full pass.
//!
//! Decompressing: the decoder accepts only standard Brotli streams (windows of at most
//! 16 MiB; the large-window extension is refused) and writes into a buffer that never
//! grows past the limit plus one byte. A stream that wants to produce more fails as soon
//! as it gets there, so a decompression bomb costs at most `max + 1` bytes of output
//! and the decoder's window.

use std::io;

use brotli::enc::{BrotliEncoderParams, StandardAlloc};
use brotli::{BrotliDecompressStream, BrotliResult, BrotliState};

use super::Compression;
use crate::error::CodecError;

/// Highest Brotli quality.
pub(crate) const MAX_QUALITY: u32 = 11;

/// Messages at least this long are sampled before being compressed whole. Below it a
/// failed full pass costs little more than a sample would.
const SAMPLE_FROM: usize = 32 * 1024;
/// Most of a message the sample compresses.
const SAMPLE_LEN: usize = 16 * 1024;
/// Least of a message the sample compresses.
const MIN_SAMPLE_LEN: usize = 4 * 1024;
/// Quality of the sample (or the configured quality, if that is lower). Quality 2 judges
/// 16 KiB of incompressible data in about 75 µs, faster than quality 1's separate fast
/// path, and estimates the ratio of the qualities above it more closely.
const SAMPLE_QUALITY: i32 = 2;

/// Smallest and largest window (log2 of bytes) the encoder uses. The window is the
/// smallest power of two that holds the message, within these bounds: a 22-bit window
/// costs about 0.3 ms of table setup per call, which dominates messages under 64 KiB,
/// and a window below 18 bits makes qualities 5 and above several times slower.
const MIN_WINDOW_BITS: u32 = 18;
const MAX_WINDOW_BITS: u32 = 22;

/// Compresses `message` if the configuration asks for it and the result is at least
/// 1/16 smaller; otherwise returns `None` and the message is sent as it is.
pub(crate) fn compress_if_worthwhile(message: &[u8], compression: Compression) -> Option<Vec<u8>> {
    let Compression::Brotli { min_size, quality } = compression else {
        return None;
    };
    if message.len() < min_size {
        return None;
    }
    let quality = i32::try_from(quality.min(MAX_QUALITY)).unwrap_or(SAMPLE_QUALITY);
    if message.len() >= SAMPLE_FROM
        && let Some(sample) = message.get(..(message.len() / 8).clamp(MIN_SAMPLE_LEN, SAMPLE_LEN))
        && brotli_compress(sample, quality.min(SAMPLE_QUALITY), worthwhile_limit(sample.len())).is_none()
    {
        tracing::trace!(len = message.len(), "sample does not compress, sending uncompressed");
        return None;
    }
    let compressed = brotli_compress(message, quality, worthwhile_limit(message.len()));
    tracing::trace!(
        len = message.len(),
        compressed_len = compressed.as_ref().map(Vec::len),
        "brotli compression attempted"
    );
    compressed
}

/// The most messages a [`CompressionBackoff`] lets go by unprobed: with a stream's
/// pieces of 256 KiB, one probe per 16 MiB of incompressible data.
const MAX_BACKOFF: u32 = 63;

/// What a sender remembers between the messages of one stream about how they
/// compressed: after a message that did not compress, the next 1, 2, 4, ... up to
/// [`MAX_BACKOFF`] messages are sent as they are without even sampling them; one that
/// compresses starts over. A stream of ciphertext or media then costs one 16 KiB sample
/// per 64 messages instead of one per message, and a stream whose data turns
/// compressible is compressed again after at most [`MAX_BACKOFF`] messages. Sender-side
/// policy only: the frames are the same either way.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompressionBackoff {
    /// Messages still to send without trying.
    skip: u32,
    /// The last gap: the next one after a failed try is twice as long.
    gap: u32,
}

/// [`compress_if_worthwhile`], skipping the attempt while `backoff` says the stream's
/// recent messages did not compress, and recording the outcome of an attempt.
pub(crate) fn compress_with_backoff(
    message: &[u8],
    compression: Compression,
    backoff: &mut CompressionBackoff,
) -> Option<Vec<u8>> {
    let Compression::Brotli { min_size, .. } = compression else {
        return None;
    };
    if message.len() < min_size {
        return None;
    }
    if backoff.skip > 0 {
        backoff.skip -= 1;
        return None;
    }
    let compressed = compress_if_worthwhile(message, compression);
    match compressed {
        Some(_) => backoff.gap = 0,
        None => {
            backoff.gap = (backoff.gap.saturating_mul(2)).clamp(1, MAX_BACKOFF);
            backoff.skip = backoff.gap;
        }
    }
    compressed
}

/// The largest compressed size worth sending instead of `len` bytes: at least 1/16
/// (and at least one byte) smaller.
fn worthwhile_limit(len: usize) -> usize {
    len.saturating_sub((len / 16).max(1))
}

/// Compresses `input`, giving up (`None`) as soon as the output would exceed `limit`.
fn brotli_compress(input: &[u8], quality: i32, limit: usize) -> Option<Vec<u8>> {
    let window_bits = usize::BITS - input.len().saturating_sub(1).leading_zeros();
    let params = BrotliEncoderParams {
        quality,
        lgwin: i32::try_from(window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)).unwrap_or(22),
        size_hint: input.len(),
        ..BrotliEncoderParams::default()
    };
    let mut reader = input;
    let mut writer = LimitedWriter { output: Vec::new(), limit };
    match brotli::BrotliCompress(&mut reader, &mut writer, &params) {
        Ok(_) => Some(writer.output),
        Err(_) => None,
    }
}

/// A `Vec` writer that fails once more than `limit` bytes are written to it.
struct LimitedWriter {
    output: Vec<u8>,
    limit: usize,
}

impl io::Write for LimitedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.limit.saturating_sub(self.output.len()) {
            return Err(io::Error::other("compressed form is not smaller"));
        }
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decompresses a complete Brotli stream, failing with
/// [`CodecError::DecompressedTooLarge`] as soon as it would produce more than `max`
/// bytes, and with [`CodecError::Decompress`] if it is corrupt, truncated or followed by
/// trailing bytes.
///
/// The output buffer starts small and doubles, never beyond `max + 1` bytes; besides it
/// the decoder holds its window (at most 16 MiB, and no more than the output so far plus
/// one meta-block) and its Huffman tables.
pub(crate) fn decompress_bounded(input: &[u8], max: usize) -> Result<Vec<u8>, CodecError> {
    // `new_strict` refuses large-window streams, which could demand a 1 GiB window.
    let mut state =
        BrotliState::new_strict(StandardAlloc::default(), StandardAlloc::default(), StandardAlloc::default());
    // One byte past the limit is how we learn that the limit is exceeded.
    let cap = max.saturating_add(1);
    let mut output: Vec<u8> = Vec::new();
    let mut written = 0;
    let mut available_in = input.len();
    let mut input_offset = 0;
    let mut total_out = 0;
    loop {
        if written >= output.len() {
            if output.len() >= cap {
                return Err(CodecError::DecompressedTooLarge { max });
            }
            let target = next_output_len(output.len(), input.len(), cap);
            output.reserve_exact(target.saturating_sub(output.len()));
            output.resize(target, 0);
        }
        let mut available_out = output.len().saturating_sub(written);
        let mut output_offset = written;
        let result = BrotliDecompressStream(
            &mut available_in,
            &mut input_offset,
            input,
            &mut available_out,
            &mut output_offset,
            &mut output,
            &mut total_out,
            &mut state,
        );
        written = output_offset;
        match result {
            BrotliResult::NeedsMoreOutput => {}
            BrotliResult::ResultSuccess => {
                if written > max {
                    return Err(CodecError::DecompressedTooLarge { max });
                }
                if available_in != 0 {
                    return Err(CodecError::Decompress(format!(
                        "{available_in} trailing bytes after the brotli stream"
                    )));
                }
                output.truncate(written);
                return Ok(output);
            }
            BrotliResult::NeedsMoreInput => {
                return Err(CodecError::Decompress("brotli stream is truncated".into()));
            }
            BrotliResult::ResultFailure => {
                let code = format!("{:?}", state.error_code);
                let reason = code.trim_start_matches("BROTLI_DECODER_ERROR_").to_lowercase().replace('_', " ");
                return Err(CodecError::Decompress(reason));
            }
        }
    }
}

/// Next size of the output buffer: four times the input at first (at least 64 KiB),
/// then double, never more than `cap`.
fn next_output_len(current: usize, input_len: usize, cap: usize) -> usize {
    let next = if current == 0 { input_len.saturating_mul(4).max(64 * 1024) } else { current.saturating_mul(2) };
    next.min(cap)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
pub(crate) mod tests {
    use super::*;

    /// Writes bits least-significant first, as Brotli reads them.
    struct BitWriter {
        bytes: Vec<u8>,
        bit: u32,
    }

    impl BitWriter {
        fn put(&mut self, value: u64, bits: u32) {
            for i in 0..bits {
                if self.bit == 0 {
                    self.bytes.push(0);
                }
                if (value >> i) & 1 == 1 {
                    *self.bytes.last_mut().unwrap() |= 1 << self.bit;
                }
                self.bit = (self.bit + 1) % 8;
            }
        }
    }

    /// A hand-built Brotli stream (RFC 7932) that expands to `meta_blocks` × 16 MiB of
    /// zeros in about 13 bytes per 16 MiB: each meta-block holds one command, "insert one
    /// zero literal, then copy 16 MiB − 1 bytes from distance 1". Built by hand because
    /// compressing a gigabyte in a debug build would take minutes.
    pub(crate) fn zero_bomb(meta_blocks: usize) -> Vec<u8> {
        const MLEN: u64 = 1 << 24;
        let mut w = BitWriter { bytes: Vec::new(), bit: 0 };
        w.put(0, 1); // WBITS = 16
        for _ in 0..meta_blocks {
            w.put(0, 1); // ISLAST = 0
            w.put(2, 2); // MNIBBLES = 6
            w.put(MLEN - 1, 24); // MLEN - 1
            w.put(0, 1); // ISUNCOMPRESSED = 0
            w.put(0, 3); // NBLTYPESL, NBLTYPESI, NBLTYPESD = 1
            w.put(0, 2); // NPOSTFIX = 0
            w.put(1, 4); // NDIRECT = 1: distance symbol 16 means distance 1
            w.put(0, 2); // literal context mode LSB6
            w.put(0, 2); // NTREESL = 1, NTREESD = 1
            // Three simple prefix codes with one symbol each (HSKIP = 1, NSYM - 1 = 0).
            w.put(1, 2);
            w.put(0, 2);
            w.put(0, 8); // literal 0x00
            w.put(1, 2);
            w.put(0, 2);
            w.put(399, 10); // insert code 1 (length 1), copy code 23, explicit distance
            w.put(1, 2);
            w.put(0, 2);
            w.put(16, 7); // distance alphabet of 16 + 1 + 48 symbols: 7 bits
            // The command: copy length 2118 + extra = MLEN - 1; the literal, the distance
            // symbol and the insert length take no bits.
            w.put(MLEN - 1 - 2118, 24);
        }
        w.put(1, 1); // ISLAST
        w.put(1, 1); // ISLASTEMPTY
        w.bytes
    }

    pub(crate) fn brotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let params = BrotliEncoderParams { quality: 5, ..BrotliEncoderParams::default() };
        brotli::BrotliCompress(&mut &data[..], &mut out, &params).unwrap();
        out
    }

    /// Text-like data that compresses well.
    pub(crate) fn compressible(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(format!("{{\"id\":{i},\"table\":\"records\",\"deleted\":false}},").as_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }

    /// Pseudo-random bytes that do not compress.
    pub(crate) fn incompressible(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect()
    }

    const ON: Compression = Compression::Brotli { min_size: 4096, quality: 3 };

    #[test]
    fn backoff_skips_after_incompressible_messages_and_starts_over_on_compressible_ones() {
        let mut backoff = CompressionBackoff::default();
        let random = incompressible(64 * 1024);
        // Tries at message 0, then skips 1, 2, 4, ... messages, up to MAX_BACKOFF.
        let tried: Vec<usize> = (0..400)
            .filter(|_| {
                let skip_before = backoff.skip;
                assert_eq!(compress_with_backoff(&random, ON, &mut backoff), None);
                skip_before == 0
            })
            .collect();
        let gaps: Vec<usize> = tried.windows(2).map(|w| w[1] - w[0] - 1).collect();
        assert_eq!(&gaps[..7], &[1, 2, 4, 8, 16, 32, 63]);
        assert!(gaps[7..].iter().all(|&gap| gap == MAX_BACKOFF as usize), "{gaps:?}");
        // A compressible message is compressed at the next try, and the gaps start over.
        let text = compressible(64 * 1024);
        let mut sent_as_is = 0;
        while compress_with_backoff(&text, ON, &mut backoff).is_none() {
            sent_as_is += 1;
        }
        assert!(sent_as_is <= MAX_BACKOFF as usize, "{sent_as_is}");
        assert!(compress_with_backoff(&text, ON, &mut backoff).is_some());
        assert_eq!(compress_with_backoff(&random, ON, &mut backoff), None);
        assert_eq!(backoff.skip, 1);
    }

    #[test]
    fn backoff_ignores_small_messages_and_compression_off() {
        let mut backoff = CompressionBackoff::default();
        assert_eq!(compress_with_backoff(&incompressible(100), ON, &mut backoff), None);
        assert_eq!(compress_with_backoff(&incompressible(64 * 1024), Compression::Off, &mut backoff), None);
        assert_eq!((backoff.skip, backoff.gap), (0, 0));
        assert!(compress_with_backoff(&compressible(64 * 1024), ON, &mut backoff).is_some());
    }

    #[test]
    fn bomb_is_a_valid_stream() {
        let out = decompress_bounded(&zero_bomb(2), 64 << 20).unwrap();
        assert_eq!(out.len(), 32 << 20);
        assert!(out.iter().all(|&b| b == 0));
    }

    #[test]
    fn bomb_stops_at_the_limit() {
        let bomb = zero_bomb(64); // 1 GiB of zeros
        assert!(bomb.len() < 1024, "bomb is {} bytes", bomb.len());
        let started = std::time::Instant::now();
        assert_eq!(decompress_bounded(&bomb, 1 << 20), Err(CodecError::DecompressedTooLarge { max: 1 << 20 }));
        // Expanding all of it would take tens of seconds in a debug build.
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    }

    #[test]
    fn output_of_exactly_max_is_accepted() {
        let data = compressible(100_000);
        let compressed = brotli(&data);
        assert_eq!(decompress_bounded(&compressed, data.len()).unwrap(), data);
        assert_eq!(
            decompress_bounded(&compressed, data.len() - 1),
            Err(CodecError::DecompressedTooLarge { max: data.len() - 1 })
        );
    }

    #[test]
    fn large_window_streams_are_refused() {
        // WBITS: '1', '000', '001' then one more bit '0' is the large-window marker.
        let stream = [0b0001_0001, 0x00, 0x00];
        let result = decompress_bounded(&stream, 1 << 20);
        assert!(matches!(&result, Err(CodecError::Decompress(reason)) if reason.contains("window")), "{result:?}");
    }

    #[test]
    fn corrupt_and_truncated_streams_are_refused() {
        let compressed = brotli(&compressible(50_000));
        let truncated = &compressed[..compressed.len() / 2];
        assert_eq!(
            decompress_bounded(truncated, 1 << 20),
            Err(CodecError::Decompress("brotli stream is truncated".into()))
        );
        let mut trailing = compressed.clone();
        trailing.push(0);
        assert!(matches!(decompress_bounded(&trailing, 1 << 20), Err(CodecError::Decompress(_))));
        let mut flipped = compressed;
        for byte in flipped.iter_mut().skip(3).step_by(7) {
            *byte ^= 0x5a;
        }
        assert!(matches!(decompress_bounded(&flipped, 1 << 20), Err(CodecError::Decompress(_))));
        // Garbage of every kind fails cleanly.
        assert!(decompress_bounded(&[0xff; 64], 1 << 20).is_err());
        assert!(decompress_bounded(&[], 1 << 20).is_err());
    }

    #[test]
    fn compressible_data_is_compressed() {
        let data = compressible(64 * 1024);
        let compressed = compress_if_worthwhile(&data, ON).unwrap();
        assert!(compressed.len() < data.len() / 4, "{} of {}", compressed.len(), data.len());
        assert_eq!(decompress_bounded(&compressed, data.len()).unwrap(), data);
    }

    #[test]
    fn incompressible_data_is_not_compressed() {
        assert_eq!(compress_if_worthwhile(&incompressible(64 * 1024), ON), None);
        // Large enough to be sampled first.
        assert_eq!(compress_if_worthwhile(&incompressible(SAMPLE_FROM + 1), ON), None);
    }

    #[test]
    fn sample_decides_for_large_messages() {
        // Compressible overall, but the first 16 KiB are noise: the sample says no.
        let mut data = incompressible(SAMPLE_LEN);
        data.extend(compressible(SAMPLE_FROM));
        assert_eq!(compress_if_worthwhile(&data, ON), None);
        // The same bytes the other way round are compressed.
        let mut data = compressible(SAMPLE_FROM);
        data.extend(incompressible(SAMPLE_LEN));
        assert!(compress_if_worthwhile(&data, ON).is_some());
    }

    #[test]
    fn small_messages_and_off_are_left_alone() {
        let data = compressible(4095);
        assert_eq!(compress_if_worthwhile(&data, ON), None);
        assert!(compress_if_worthwhile(&compressible(4096), ON).is_some());
        assert_eq!(compress_if_worthwhile(&compressible(1 << 16), Compression::Off), None);
        // Nothing to gain from tiny inputs even with no minimum.
        let no_min = Compression::Brotli { min_size: 0, quality: 3 };
        assert_eq!(compress_if_worthwhile(&[], no_min), None);
        assert_eq!(compress_if_worthwhile(b"a", no_min), None);
    }

    #[test]
    fn savings_below_one_sixteenth_are_not_worth_it() {
        assert_eq!(worthwhile_limit(1600), 1500);
        assert_eq!(worthwhile_limit(10), 9);
        assert_eq!(worthwhile_limit(0), 0);
        // Mostly noise with a little redundancy: shrinks, but by less than 1/16.
        let mut data = incompressible(8000);
        data.extend(compressible(300));
        let limit = worthwhile_limit(data.len());
        assert!(brotli(&data).len() > limit);
        assert_eq!(compress_if_worthwhile(&data, ON), None);
    }

    #[test]
    fn limited_writer_gives_up_past_its_limit() {
        assert_eq!(brotli_compress(&incompressible(10_000), 3, 5_000), None);
        assert!(brotli_compress(&compressible(10_000), 3, 5_000).is_some());
    }

    #[test]
    fn every_quality_round_trips() {
        let data = compressible(20_000);
        for quality in 0..=MAX_QUALITY {
            let compression = Compression::Brotli { min_size: 0, quality };
            let compressed = compress_if_worthwhile(&data, compression).unwrap();
            assert_eq!(decompress_bounded(&compressed, data.len()).unwrap(), data, "quality {quality}");
        }
    }
}
