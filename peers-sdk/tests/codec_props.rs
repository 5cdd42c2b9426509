//! Property tests for the PeerTx codec: encoding then decoding gives the message back
//! for any message, frame size and compression setting; chunks of several messages may
//! interleave in any order that keeps each message's own order; garbage never panics
//! and never breaks the decoder's limits; frame headers round-trip.

use bytes::{Bytes, BytesMut};
use peers_sdk::codec::{
    CHUNK_HEADER_LEN, ChunkHeader, CodecConfig, Compression, FrameDecoder, FrameEncoder, FrameFlags, FrameHeader,
    WHOLE_HEADER_LEN,
};
use proptest::prelude::*;

/// The shape of a generated message. Messages are built from a seed rather than drawn
/// byte by byte, which keeps 300 KiB cases cheap to generate and to shrink.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Pseudo-random bytes: never worth compressing.
    Random,
    /// JSON-like records: compress well.
    Text,
    /// Long runs of a few byte values: compress extremely well.
    Runs,
}

fn make_message(kind: Kind, len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(len);
    match kind {
        Kind::Random => out.extend((0..len).map(|_| (next() >> 24) as u8)),
        Kind::Text => {
            while out.len() < len {
                let record = format!("{{\"id\":{},\"table\":\"t{}\",\"ok\":true}},", next() % 100_000, next() % 7);
                out.extend_from_slice(record.as_bytes());
            }
            out.truncate(len);
        }
        Kind::Runs => {
            while out.len() < len {
                let run = (next() % 500) as usize;
                let byte = (next() % 3) as u8;
                out.extend(std::iter::repeat_n(byte, run.min(len - out.len())));
            }
        }
    }
    out
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Random), Just(Kind::Text), Just(Kind::Runs)]
}

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::Off),
        // Qualities above 4 are slow in debug builds and exercise nothing new here.
        (0usize..=8192, 0u32..=4).prop_map(|(min_size, quality)| Compression::Brotli { min_size, quality }),
    ]
}

fn config(chunk_size: usize, compression: Compression) -> CodecConfig {
    CodecConfig {
        max_message_size: 512 * 1024,
        chunk_size,
        max_partial_messages: 8,
        max_reassembly_bytes: 1024 * 1024,
        compression,
    }
}

/// Feeds `frames` (each starting with `headroom` bytes) to `decoder`, checking that
/// only the last one completes a message, and returns that message.
fn decode_all(decoder: &mut FrameDecoder, frames: Vec<BytesMut>, headroom: usize) -> Result<Bytes, TestCaseError> {
    let last = frames.len().saturating_sub(1);
    let mut message = None;
    for (i, mut frame) in frames.into_iter().enumerate() {
        let out = decoder.decode(frame.split_off(headroom).freeze()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(out.is_some(), i == last, "frame {} of {} completed={}", i, last + 1, out.is_some());
        message = out;
    }
    message.ok_or_else(|| TestCaseError::fail("no frames"))
}

/// Chunk sizes and frame sizes from tiny to large, and a message length that keeps the
/// frame count manageable in a debug build.
fn sizes() -> impl Strategy<Value = (usize, usize, usize)> {
    let chunk_size = prop_oneof![1usize..=64, 65usize..=4096, 4097usize..=128 * 1024];
    let max_frame = prop_oneof![CHUNK_HEADER_LEN + 1..=64, 65usize..=4096, 4097usize..=200_000];
    (chunk_size, max_frame).prop_flat_map(|(chunk_size, max_frame)| {
        let per_frame = chunk_size.min(max_frame - CHUNK_HEADER_LEN);
        let max_len = (per_frame * 2_000).min(300 * 1024);
        (Just(chunk_size), Just(max_frame), 0..=max_len)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any message survives encode → decode, with frames within every limit.
    #[test]
    fn round_trip(
        (chunk_size, max_frame, len) in sizes(),
        kind in kind(),
        seed in any::<u64>(),
        compression in compression(),
        headroom in 0usize..=32,
        tailroom in 0usize..=32,
    ) {
        let message = make_message(kind, len, seed);
        let config = config(chunk_size, compression);
        let mut encoder = FrameEncoder::new(config.clone());
        let mut decoder = FrameDecoder::new(config);
        let frames = encoder.encode(&message, max_frame, headroom, tailroom).unwrap();

        let mut compressed = None;
        for frame in &frames {
            prop_assert!(frame.len() - headroom <= max_frame, "frame of {} > {}", frame.len() - headroom, max_frame);
            prop_assert!(frame.capacity() - frame.len() >= tailroom);
            prop_assert!(frame[..headroom].iter().all(|&b| b == 0));
            let (header, header_len) = FrameHeader::parse(&frame[headroom..]).unwrap();
            prop_assert!(frame.len() - headroom - header_len <= chunk_size);
            let is_compressed = header.flags().is_compressed();
            prop_assert_eq!(*compressed.get_or_insert(is_compressed), is_compressed);
        }
        if compressed == Some(true) {
            let Compression::Brotli { min_size, .. } = compression else {
                return Err(TestCaseError::fail("compressed with compression off"));
            };
            prop_assert!(message.len() >= min_size);
        } else {
            // Uncompressed: the frame count follows from the sizes alone.
            let whole = message.len() <= chunk_size.min(max_frame - WHOLE_HEADER_LEN);
            let per_chunk = chunk_size.min(max_frame - CHUNK_HEADER_LEN);
            let expected = if whole { 1 } else { message.len().div_ceil(per_chunk) };
            prop_assert_eq!(frames.len(), expected);
        }

        let out = decode_all(&mut decoder, frames, headroom)?;
        prop_assert!(out == message, "decoded message differs");
        prop_assert_eq!(decoder.partial_messages(), 0);
        prop_assert_eq!(decoder.buffered_bytes(), 0);
    }

    /// Chunks of three messages, interleaved in any order that keeps each message's own
    /// order, all come out intact, each when its last chunk arrives.
    #[test]
    fn interleaved_messages(
        messages in prop::collection::vec((kind(), 0usize..=16 * 1024, any::<u64>()), 3),
        chunk_size in 16usize..=2048,
        compression in compression(),
        schedule in prop::collection::vec(any::<u8>(), 0..800),
    ) {
        let messages: Vec<Vec<u8>> =
            messages.into_iter().map(|(kind, len, seed)| make_message(kind, len, seed)).collect();
        let config = config(chunk_size, compression);
        let mut encoder = FrameEncoder::new(config.clone());
        let mut decoder = FrameDecoder::new(config);
        let mut queues: Vec<std::collections::VecDeque<BytesMut>> = messages
            .iter()
            .map(|m| encoder.encode(m, 64 * 1024, 0, 0).unwrap().into())
            .collect();

        // Each schedule byte picks which message sends its next frame; when the
        // schedule runs out, the rest go in turn.
        let mut picks = schedule.into_iter().map(usize::from).chain(0..);
        while queues.iter().any(|q| !q.is_empty()) {
            let pending: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
            let which = pending[picks.next().unwrap_or(0) % pending.len()];
            let frame = queues[which].pop_front().unwrap();
            let out = decoder.decode(frame.freeze()).unwrap();
            if queues[which].is_empty() {
                prop_assert!(out.as_deref() == Some(&messages[which][..]), "message {} corrupted", which);
            } else {
                prop_assert!(out.is_none(), "message {} completed early", which);
            }
        }
        prop_assert_eq!(decoder.partial_messages(), 0);
        prop_assert_eq!(decoder.buffered_bytes(), 0);
    }
}

/// A frame that is garbage or almost right: a structured chunk with small ids, indexes,
/// counts and lengths (so chunks of the same message meet), or raw bytes.
fn hostile_frame() -> impl Strategy<Value = Vec<u8>> {
    let flags = prop_oneof![4 => Just(0u8), 2 => Just(1u8), 1 => any::<u8>()];
    let chunk = (
        flags.clone(),
        0u32..4,
        0u32..5,
        0u32..5,
        prop_oneof![0u64..400, any::<u64>()],
        prop::collection::vec(any::<u8>(), 0..160),
    )
        .prop_map(|(flags, id, index, count, total, data)| {
            let mut frame = vec![0x01, flags];
            frame.extend_from_slice(&id.to_be_bytes());
            frame.extend_from_slice(&index.to_be_bytes());
            frame.extend_from_slice(&count.to_be_bytes());
            frame.extend_from_slice(&total.to_be_bytes());
            frame.extend_from_slice(&data);
            frame
        });
    let whole = (flags, prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(flags, data)| {
        let mut frame = vec![0x00, flags];
        frame.extend_from_slice(&data);
        frame
    });
    prop_oneof![3 => chunk, 1 => whole, 1 => prop::collection::vec(any::<u8>(), 0..40)]
}

proptest! {
    /// Garbage never panics and never pushes the decoder past its limits.
    #[test]
    fn garbage_is_contained(frames in prop::collection::vec(hostile_frame(), 0..40)) {
        let config = CodecConfig {
            max_message_size: 256,
            chunk_size: 64,
            max_partial_messages: 3,
            max_reassembly_bytes: 512,
            compression: Compression::Off,
        };
        let mut decoder = FrameDecoder::new(config);
        for frame in frames {
            // Errors are expected; the decoder must stay usable and bounded after them.
            if let Ok(Some(message)) = decoder.decode(Bytes::from(frame)) {
                prop_assert!(message.len() <= 256);
            }
            prop_assert!(decoder.partial_messages() <= 3);
            prop_assert!(decoder.buffered_bytes() <= 512);
        }
    }

    /// Writing a header and parsing it back gives the same header, whatever follows it.
    #[test]
    fn header_round_trip(header in frame_header(), trailing in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut bytes = BytesMut::new();
        header.write(&mut bytes);
        prop_assert_eq!(bytes.len(), header.encoded_len());
        bytes.extend_from_slice(&trailing);
        prop_assert_eq!(FrameHeader::parse(&bytes), Ok((header, header.encoded_len())));
    }

    /// Every header that parses has exactly one encoding: writing it back gives the
    /// bytes it was parsed from.
    #[test]
    fn parsed_headers_are_canonical(bytes in prop::collection::vec(any::<u8>(), 0..30)) {
        if let Ok((header, len)) = FrameHeader::parse(&bytes) {
            prop_assert!(len <= bytes.len());
            let mut written = BytesMut::new();
            header.write(&mut written);
            prop_assert_eq!(&written[..], &bytes[..len]);
        }
    }
}

fn frame_header() -> impl Strategy<Value = FrameHeader> {
    let flags = prop_oneof![Just(FrameFlags::NONE), Just(FrameFlags::COMPRESSED)];
    prop_oneof![
        flags.clone().prop_map(|flags| FrameHeader::Whole { flags }),
        (flags, any::<u32>(), any::<u32>(), any::<u32>(), any::<u64>()).prop_map(
            |(flags, message_id, index, count, total_len)| {
                FrameHeader::Chunk(ChunkHeader { flags, message_id, index, count, total_len })
            }
        ),
    ]
}
