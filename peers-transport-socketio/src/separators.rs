//! Binary frames for a client that splits incoming messages at 0x1e.
//!
//! `rust_socketio`'s engine.io layer splits every incoming WebSocket message,
//! binary ones included, at 0x1e (the record separator of engine.io's HTTP
//! long-polling payloads), which corrupts raw binary. So a client on it asks, in
//! its hello, for the binary frames it receives to hold no 0x1e, in one of two
//! encodings ([`BinaryFormat`]; `docs/transport-socketio.md` §1):
//!
//! ```text
//! raw        ... 41 1e 42 1d 43 ...                 (0x1e at offset 1)
//! escaped    ... 41 1d 01 42 1d 02 43 ...           0x1e → 1d 01, 0x1d → 1d 02
//! patched    ... 41 1f 42 1d 43 ... ‖ gaps ‖ len    same length; 0x1e → 1f, offsets in a trailer
//! ```
//!
//! **Patched** (`patchRecordSeparators`): the frame keeps its length, each 0x1e is
//! replaced by 0x1f, and a trailer lists where they were. The trailer holds, for
//! each replaced byte in order, the count of bytes since the previous one (or
//! since the start) in base-64 digits, most significant first: `0x80 | d` for
//! every digit but the last, `0x40 | d` for the last. After it come 4 digits
//! `0x40 | d` (most significant first) giving the trailer's length. No trailer
//! byte is below 0x40. Receiving it costs one bulk copy and a write per 0x1e,
//! where unescaping costs a search and a short copy per 0x1d or 0x1e in the
//! escaped frame: on a server → client stream, unescaping was the largest cost
//! of our own in the client (`docs/BENCHMARKS.md`).

use bytes::Bytes;

#[cfg(feature = "client")]
use crate::wire::{EVENT_BINARY, WireError};

/// engine.io's record separator, which `rust_socketio` splits binary messages at.
const RECORD_SEPARATOR: u8 = 0x1e;
/// The escape byte of the escaped format.
const ESCAPE: u8 = 0x1d;
/// What a patched frame holds where the frame held 0x1e.
const PATCHED: u8 = 0x1f;
/// Digits of the trailer's length: 24 bits, enough for a trailer as long as the
/// largest frame (8 MiB, all 0x1e).
const LENGTH_DIGITS: usize = 4;
/// A digit that another digit follows.
const MORE: u8 = 0x80;
/// The last digit of a number.
const LAST: u8 = 0x40;

/// How binary frames travel to a peer, from the two hellos.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinaryFormat {
    /// As they are (JavaScript clients).
    Raw,
    /// 0x1e and 0x1d escaped (a peer that asks for escaping only).
    Escaped,
    /// 0x1e replaced, with a trailer of offsets (both sides speak it).
    Patched,
}

impl BinaryFormat {
    /// The format binary frames to a receiver take: `escape` and `patch` are what
    /// the receiver's hello asks for, `sender_patches` whether the sender's hello
    /// says it can patch.
    pub(crate) fn new(escape: bool, patch: bool, sender_patches: bool) -> BinaryFormat {
        match (escape, patch && sender_patches) {
            (false, _) => BinaryFormat::Raw,
            (true, false) => BinaryFormat::Escaped,
            (true, true) => BinaryFormat::Patched,
        }
    }
}

#[cfg(feature = "client")]
fn malformed(detail: &str) -> WireError {
    WireError::Malformed { event: EVENT_BINARY, detail: detail.into() }
}

#[cfg(feature = "server")]
/// Encodes a frame for a receiver in `format`. A frame without 0x1e (or, for the
/// escaped format, without 0x1e and 0x1d) goes without copying.
pub(crate) fn encode(format: BinaryFormat, frame: Bytes) -> Bytes {
    match format {
        BinaryFormat::Raw => frame,
        BinaryFormat::Escaped => escape_record_separators(frame),
        BinaryFormat::Patched => patch_record_separators(frame),
    }
}

#[cfg(feature = "client")]
/// Decodes a frame that arrived in `format`; refuses bad encodings and results
/// over `max_frame` bytes.
pub(crate) fn decode(format: BinaryFormat, frame: Bytes, max_frame: usize) -> Result<Bytes, WireError> {
    match format {
        BinaryFormat::Raw if frame.len() > max_frame => {
            Err(WireError::FrameTooLarge { size: frame.len(), max: max_frame })
        }
        BinaryFormat::Raw => Ok(frame),
        BinaryFormat::Escaped => unescape_record_separators(frame, max_frame),
        BinaryFormat::Patched => unpatch_record_separators(&frame, max_frame),
    }
}

#[cfg(feature = "server")]
/// The escaped format: 0x1e becomes 0x1d 0x01 and 0x1d becomes 0x1d 0x02. Random
/// (encrypted) frames grow by about 0.8 %.
fn escape_record_separators(frame: Bytes) -> Bytes {
    // memchr's SIMD search: a byte-at-a-time scan made escaping and unescaping
    // half of the CPU time of a server → client stream (docs/BENCHMARKS.md).
    let mut specials = memchr::memchr2_iter(RECORD_SEPARATOR, ESCAPE, &frame).peekable();
    if specials.peek().is_none() {
        return frame;
    }
    // Random (encrypted) frames hold one special byte in 128 on average.
    let mut out = Vec::with_capacity(frame.len() + frame.len() / 64 + 16);
    let mut start = 0;
    // Copies runs of ordinary bytes whole.
    for at in specials {
        out.extend_from_slice(&frame[start..at]);
        out.extend_from_slice(if frame[at] == RECORD_SEPARATOR { &[ESCAPE, 0x01] } else { &[ESCAPE, 0x02] });
        start = at + 1;
    }
    out.extend_from_slice(&frame[start..]);
    Bytes::from(out)
}

#[cfg(feature = "client")]
/// Undoes [`escape_record_separators`]; refuses bad escapes and results over
/// `max_frame` bytes.
fn unescape_record_separators(escaped: Bytes, max_frame: usize) -> Result<Bytes, WireError> {
    let too_large = |size| WireError::FrameTooLarge { size, max: max_frame };
    if memchr::memchr(ESCAPE, &escaped).is_none() {
        return if escaped.len() > max_frame { Err(too_large(escaped.len())) } else { Ok(escaped) };
    }
    let mut out = Vec::with_capacity(escaped.len().min(max_frame));
    let mut rest = &escaped[..];
    loop {
        let at = memchr::memchr(ESCAPE, rest).unwrap_or(rest.len());
        if out.len() + at > max_frame {
            return Err(too_large(out.len() + at));
        }
        out.extend_from_slice(&rest[..at]);
        let Some(escape) = rest.get(at..at + 2) else {
            if at < rest.len() {
                return Err(malformed("bad escape sequence"));
            }
            return Ok(Bytes::from(out));
        };
        let byte = match escape[1] {
            0x01 => RECORD_SEPARATOR,
            0x02 => ESCAPE,
            _ => return Err(malformed("bad escape sequence")),
        };
        if out.len() == max_frame {
            return Err(too_large(max_frame + 1));
        }
        out.push(byte);
        rest = &rest[at + 2..];
    }
}

#[cfg(feature = "server")]
/// The patched format (module docs). Random (encrypted) frames grow by about
/// 0.8 %: one 0x1e in 256 bytes, two digits for each.
fn patch_record_separators(frame: Bytes) -> Bytes {
    let mut separators = memchr::memchr_iter(RECORD_SEPARATOR, &frame).peekable();
    if separators.peek().is_none() {
        // An empty trailer still says so: the receiver always reads one.
        let mut out = Vec::with_capacity(frame.len() + LENGTH_DIGITS);
        out.extend_from_slice(&frame);
        push_length(&mut out, 0);
        return Bytes::from(out);
    }
    let mut out = Vec::with_capacity(frame.len() + frame.len() / 100 + 16);
    out.extend_from_slice(&frame);
    let mut trailer = Vec::with_capacity(frame.len() / 100 + 8);
    let mut next = 0;
    for at in separators {
        out[at] = PATCHED;
        push_number(&mut trailer, at - next);
        next = at + 1;
    }
    let trailer_len = trailer.len();
    out.extend_from_slice(&trailer);
    push_length(&mut out, trailer_len);
    Bytes::from(out)
}

#[cfg(feature = "server")]
/// `n` in base-64 digits, most significant first (module docs).
fn push_number(out: &mut Vec<u8>, n: usize) {
    let mut digits = 1;
    while digits < usize::BITS.div_ceil(6) && n >> (6 * digits) != 0 {
        digits += 1;
    }
    for i in (1..digits).rev() {
        out.push(MORE | ((n >> (6 * i)) & 0x3f) as u8);
    }
    out.push(LAST | (n & 0x3f) as u8);
}

#[cfg(feature = "server")]
/// The trailer's length, in [`LENGTH_DIGITS`] digits.
fn push_length(out: &mut Vec<u8>, len: usize) {
    for i in (0..LENGTH_DIGITS).rev() {
        out.push(LAST | ((len >> (6 * i)) & 0x3f) as u8);
    }
}

#[cfg(feature = "client")]
/// Undoes [`patch_record_separators`]; refuses a bad trailer, offsets past the
/// frame and frames over `max_frame` bytes.
fn unpatch_record_separators(patched: &[u8], max_frame: usize) -> Result<Bytes, WireError> {
    let length_at = patched.len().checked_sub(LENGTH_DIGITS).ok_or_else(|| malformed("no trailer"))?;
    let mut trailer_len = 0usize;
    for &digit in &patched[length_at..] {
        if digit & 0xc0 != LAST {
            return Err(malformed("bad trailer length"));
        }
        trailer_len = trailer_len << 6 | usize::from(digit & 0x3f);
    }
    let frame_len = length_at.checked_sub(trailer_len).ok_or_else(|| malformed("trailer longer than the frame"))?;
    if frame_len > max_frame {
        return Err(WireError::FrameTooLarge { size: frame_len, max: max_frame });
    }
    let mut frame = patched[..frame_len].to_vec();
    let mut next = 0usize;
    let mut number = 0usize;
    for &digit in &patched[frame_len..length_at] {
        // Numbers past any frame's length are refused before they can overflow.
        number = number << 6 | usize::from(digit & 0x3f);
        if number > frame_len {
            return Err(malformed("separator offset past the frame"));
        }
        match digit & 0xc0 {
            MORE => continue,
            LAST => {}
            _ => return Err(malformed("bad trailer digit")),
        }
        let at = next + number;
        let slot = frame.get_mut(at).ok_or_else(|| malformed("separator offset past the frame"))?;
        if *slot != PATCHED {
            return Err(malformed("separator offset at a byte that was not replaced"));
        }
        *slot = RECORD_SEPARATOR;
        next = at + 1;
        number = 0;
    }
    if number != 0 || patched[frame_len..length_at].last().is_some_and(|&d| d & 0xc0 == MORE) {
        return Err(malformed("trailer ends inside a number"));
    }
    Ok(Bytes::from(frame))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn escaping_removes_record_separators() {
        let raw = Bytes::from_static(&[0x41, 0x1e, 0x42, 0x1d, 0x43]);
        let escaped = escape_record_separators(raw.clone());
        assert_eq!(&escaped[..], &[0x41, 0x1d, 0x01, 0x42, 0x1d, 0x02, 0x43]);
        assert_eq!(unescape_record_separators(escaped, 5).unwrap(), raw);
        let plain = Bytes::from_static(b"plain");
        assert_eq!(escape_record_separators(plain.clone()).as_ptr(), plain.as_ptr(), "no copy without specials");
        for bad in [&[0x1d][..], &[0x1d, 0x03], &[0x41, 0x1d, 0x00]] {
            assert!(unescape_record_separators(Bytes::copy_from_slice(bad), 10).is_err(), "{bad:?}");
        }
        assert!(unescape_record_separators(Bytes::from_static(&[0x1d, 0x01, 0x41]), 1).is_err(), "too large");
        assert!(unescape_record_separators(Bytes::from_static(b"ab"), 1).is_err(), "too large");
    }

    #[test]
    fn patching_has_the_documented_layout() {
        let raw = Bytes::from_static(&[0x41, 0x1e, 0x42, 0x1d, 0x1e, 0x1e]);
        let patched = patch_record_separators(raw.clone());
        // Offsets 1, 4, 5: gaps 1, 2, 0; a 3-byte trailer.
        assert_eq!(&patched[..], &[0x41, 0x1f, 0x42, 0x1d, 0x1f, 0x1f, 0x41, 0x42, 0x40, 0x40, 0x40, 0x40, 0x43]);
        assert_eq!(unpatch_record_separators(&patched, 6).unwrap(), raw);
        let plain = patch_record_separators(Bytes::from_static(b"plain"));
        assert_eq!(&plain[..], b"plain@@@@");
        // A gap of 100 takes two digits: 1 * 64 + 36.
        let mut far = vec![0u8; 101];
        far[100] = 0x1e;
        let patched = patch_record_separators(Bytes::from(far.clone()));
        assert_eq!(&patched[101..], &[0x81, 0x40 | 36, 0x40, 0x40, 0x40, 0x42]);
        assert_eq!(&unpatch_record_separators(&patched, 101).unwrap()[..], &far[..]);
    }

    #[test]
    fn bad_patched_frames_are_refused() {
        let good = patch_record_separators(Bytes::from_static(&[0x41, 0x1e, 0x42]));
        assert!(unpatch_record_separators(&good, 2).is_err(), "too large");
        let cases: [&[u8]; 8] = [
            b"",
            b"@@@",
            // A length digit that is not 0x40 | d.
            &[0x41, 0x80, 0x40, 0x40, 0x40],
            // A trailer longer than what precedes it.
            &[0x41, 0x40, 0x40, 0x40, 0x42],
            // An offset past the frame.
            &[0x1f, 0x41, 0x40, 0x40, 0x40, 0x41],
            // An offset at a byte that was not replaced.
            &[0x41, 0x40, 0x40, 0x40, 0x40, 0x41],
            // A trailer that ends inside a number.
            &[0x1f, 0x80, 0x40, 0x40, 0x40, 0x41],
            // A trailer byte below 0x40.
            &[0x1f, 0x1e, 0x40, 0x40, 0x40, 0x41],
        ];
        for bad in cases {
            assert!(unpatch_record_separators(bad, 100).is_err(), "{bad:?}");
        }
        // Digits that would overflow a usize are refused, not wrapped.
        let mut huge = vec![0x1f];
        huge.extend(std::iter::repeat_n(0xbf, 20));
        huge.push(0x7f);
        huge.extend([0x40, 0x40, 0x40, 0x40 | 21]);
        assert!(unpatch_record_separators(&huge, 100).is_err());
    }

    #[test]
    fn formats_follow_the_hellos() {
        assert_eq!(BinaryFormat::new(false, true, true), BinaryFormat::Raw);
        assert_eq!(BinaryFormat::new(true, false, true), BinaryFormat::Escaped);
        assert_eq!(BinaryFormat::new(true, true, false), BinaryFormat::Escaped);
        assert_eq!(BinaryFormat::new(true, true, true), BinaryFormat::Patched);
    }

    proptest! {
        #[test]
        fn every_format_round_trips(
            frame in proptest::collection::vec(
                prop_oneof![Just(0x1e_u8), Just(0x1d), Just(0x1f), any::<u8>()], 0..4096),
            format in prop_oneof![Just(BinaryFormat::Raw), Just(BinaryFormat::Escaped), Just(BinaryFormat::Patched)],
        ) {
            let encoded = encode(format, Bytes::from(frame.clone()));
            if format != BinaryFormat::Raw {
                prop_assert!(!encoded.contains(&RECORD_SEPARATOR));
            }
            prop_assert_eq!(&decode(format, encoded.clone(), frame.len()).unwrap()[..], &frame[..]);
            if !frame.is_empty() {
                prop_assert!(decode(format, encoded, frame.len() - 1).is_err(), "one byte over the limit");
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = unpatch_record_separators(&bytes, 200);
            let _ = unescape_record_separators(Bytes::from(bytes), 200);
        }
    }
}
