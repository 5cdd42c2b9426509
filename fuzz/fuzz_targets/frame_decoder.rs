//! Feeds arbitrary frames to `FrameDecoder`: it must never panic, never return a message
//! over its limit, and never hold more partial messages or bytes than configured,
//! whatever it was fed before (errors included).
//!
//! Input layout: the first byte picks the decoder's limits, then frames follow, each as
//! a length byte and that many bytes. A length byte of 0xff means "the rest of the
//! input", so large frames (big compressed messages) stay reachable.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use peers_sdk::codec::{CodecConfig, Compression, FrameDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let config = config_for(selector);
    let mut decoder = FrameDecoder::new(config.clone());
    while let Some((&len, tail)) = rest.split_first() {
        let len = if len == 0xff { tail.len() } else { usize::from(len).min(tail.len()) };
        let (frame, tail) = tail.split_at(len);
        rest = tail;
        if let Ok(Some(message)) = decoder.decode(Bytes::copy_from_slice(frame)) {
            assert!(message.len() <= config.max_message_size);
        }
        assert!(decoder.partial_messages() <= config.max_partial_messages);
        assert!(decoder.buffered_bytes() <= config.max_reassembly_bytes);
    }
});

/// Small limits, so the fuzzer reaches them quickly: bits 0-1 pick the message size,
/// bits 2-3 the number of partial messages, bit 4 whether the reassembly budget is one
/// or two messages.
///
/// The largest message is 64 KiB, not the default 1 MiB: decompressing Brotli bombs to
/// 1 MiB was nine tenths of a case's time (the decompressor is another crate's code,
/// fuzzed by its authors), and at 64 KiB the bounded decompression still starts from a
/// 64 KiB buffer, grows it to the cap and stops one byte past it, so each of its paths
/// is reached.
fn config_for(selector: u8) -> CodecConfig {
    let max_message_size = [64, 1024, 16 * 1024, 64 * 1024][usize::from(selector & 3)];
    CodecConfig {
        max_message_size,
        chunk_size: max_message_size,
        max_partial_messages: 1 + usize::from((selector >> 2) & 3),
        max_reassembly_bytes: max_message_size * (1 + usize::from((selector >> 4) & 1)),
        compression: Compression::Off,
    }
}
