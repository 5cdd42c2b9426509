//! How socket frames and control messages map onto socket.io events. Pure
//! functions; the server and the client drive them.
//!
//! Every socket.io event below is a plain event (never an ack: `rust_socketio`
//! cannot answer acks the server asks for, and its binary acks are broken).
//!
//! ```text
//! event          arguments (socket.io JSON, binary as an attachment)        direction
//! "b"            <binary attachment: the frame, escaped if asked>            both
//! "t"            "<base64 frame>" [, {"frames": u64, "bytes": u64}]          both (small frames)
//! "peers:hello"  {"v": 1, "maxFrame": u64, "window": {"frames", "bytes"},     both, first event
//!                 "escapeRecordSeparators"?: bool, "patchRecordSeparators"?: bool}
//! "peers:credit" {"frames": u64, "bytes": u64}                                both
//! "peers:close"  {"code": "Normal" | "GoingAway" | …, "message": str ≤ 256 B}  both, last event
//! ```
//!
//! - `"b"` and `"t"` carry one socket frame each. A binary socket.io event is two
//!   WebSocket messages (a text header with a `{"_placeholder":true,"num":0}` and
//!   the attachment); a `"t"` event is one. Our client sends frames below
//!   [`DEFAULT_SMALL_FRAME_LIMIT`] as `"t"` so each small frame is a single write
//!   and Nagle's algorithm cannot hold it back (see `docs/transport-socketio.md`);
//!   our server sends frames below `SERVER_SMALL_FRAME_LIMIT` as `"t"` to
//!   clients that ask for escaping (ours), which parse it once instead of twice.
//! - A peer whose hello sets `escapeRecordSeparators` (our client does) gets its
//!   `"b"` attachments without 0x1e ([`crate::separators`]): `rust_socketio`
//!   splits incoming WebSocket messages at that byte. They are patched if both
//!   hellos set `patchRecordSeparators` (ours do), escaped otherwise.
//! - The optional object after a `"t"` frame is a credit grant riding along for
//!   free (same meaning as `"peers:credit"`).
//! - Credit totals are cumulative (see [`crate::flow`]); `"peers:hello"` carries
//!   the first grant, `window`, and the largest frame the sender of the hello
//!   accepts.
//! - `"peers:close"` says why the sender is closing; a disconnect without it is a
//!   transport failure.
//!
//! Anything else (unknown events, a text `"b"`, a `"t"` that is not base64, more
//! arguments than listed, oversized frames) is a protocol error that closes the
//! socket with [`CloseCode::ProtocolError`](peers_sdk::CloseCode::ProtocolError).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use peers_sdk::CloseCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::flow::Credit;

/// A frame as one binary attachment.
pub(crate) const EVENT_BINARY: &str = "b";
/// A frame as base64 text, optionally followed by a credit grant.
pub(crate) const EVENT_TEXT: &str = "t";
/// The first event each side sends: version, largest frame, first credit.
pub(crate) const EVENT_HELLO: &str = "peers:hello";
/// A cumulative credit grant.
pub(crate) const EVENT_CREDIT: &str = "peers:credit";
/// The reason for closing, sent before disconnecting.
pub(crate) const EVENT_CLOSE: &str = "peers:close";

/// The version of this mapping, in the hello.
pub(crate) const VERSION: u32 = 1;

/// Frames smaller than this go as `"t"` events from our client, larger ones as
/// `"b"`. Measured on loopback (see `docs/transport-socketio.md`): base64 costs
/// about a third more bytes, but below this size a binary event pays a
/// delayed-ACK stall whenever Nagle's algorithm holds its attachment back.
pub const DEFAULT_SMALL_FRAME_LIMIT: usize = 64 * 1024;

/// Frames smaller than this go from our server as `"t"` events to a client whose
/// hello asks for escaping (ours), larger ones as `"b"`. A `"b"` event is two
/// WebSocket messages (header and attachment) that `rust_socketio` parses one by
/// one; below this size one text message costs it less, base64 included (see
/// `docs/BENCHMARKS.md`, round trips).
pub(crate) const SERVER_SMALL_FRAME_LIMIT: usize = 1024;

/// The smallest `maxFrame` a peer may announce: the handshake's messages (up to
/// 8 KiB) must each fit one frame.
pub(crate) const MIN_PEER_MAX_FRAME: u64 = 16 * 1024;

/// Bytes of socket.io framing around a frame carried as base64 text, generously.
pub(crate) const TEXT_OVERHEAD: usize = 1024;

/// The `"peers:hello"` payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Hello {
    /// [`VERSION`].
    pub(crate) v: u32,
    /// The largest frame the sender of the hello accepts.
    pub(crate) max_frame: u64,
    /// The first credit grant: the sender's receive window.
    pub(crate) window: Credit,
    /// Binary frames sent to the sender of the hello must hold no 0x1e byte
    /// ([`crate::separators`]). `rust_socketio`'s engine.io layer
    /// splits every incoming WebSocket message, binary ones included, at 0x1e
    /// (the separator of engine.io's *polling* payloads), which corrupts raw
    /// binary. Absent (JavaScript clients): false.
    #[serde(default)]
    pub(crate) escape_record_separators: bool,
    /// The sender of the hello speaks the patched format of
    /// [`crate::separators`]: a client that sets it and
    /// `escapeRecordSeparators` gets its binary frames patched rather than
    /// escaped by a server that sets it too. Absent (JavaScript clients, earlier
    /// versions): false.
    #[serde(default)]
    pub(crate) patch_record_separators: bool,
}

impl Hello {
    /// Checks a peer's hello; the error is the reason to refuse it.
    pub(crate) fn validate(&self) -> Result<(), WireError> {
        if self.v != VERSION {
            return Err(WireError::Version(self.v));
        }
        if self.max_frame < MIN_PEER_MAX_FRAME {
            return Err(WireError::BadHello(format!(
                "maxFrame {} is below the minimum of {MIN_PEER_MAX_FRAME}",
                self.max_frame
            )));
        }
        if self.window.frames == 0 || self.window.bytes < self.max_frame {
            return Err(WireError::BadHello(format!(
                "window of {} frames / {} bytes cannot carry a frame of maxFrame {} bytes",
                self.window.frames, self.window.bytes, self.max_frame
            )));
        }
        Ok(())
    }
}

/// The `"peers:close"` payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CloseNotice {
    /// The class of reason.
    pub(crate) code: CloseCode,
    /// Details; cut to [`peers_sdk::CloseReason::MAX_MESSAGE_LEN`] on receipt.
    pub(crate) message: String,
}

/// An event that does not follow this mapping.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    /// The event name is not one of ours.
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
    /// The arguments do not have the listed shape.
    #[error("malformed {event:?} event: {detail}")]
    Malformed {
        /// Which event.
        event: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A frame bigger than we accept.
    #[error("frame of {size} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// The frame's size (or, for base64, a lower bound of it).
        size: usize,
        /// Our limit.
        max: usize,
    },
    /// The peer speaks another version of this mapping.
    #[error("unsupported transport version {0} (we speak {VERSION})")]
    Version(u32),
    /// The hello's limits cannot work.
    #[error("unusable hello: {0}")]
    BadHello(String),
}

fn malformed(event: &'static str, detail: impl ToString) -> WireError {
    WireError::Malformed { event, detail: detail.to_string() }
}

/// A frame as the base64 text of a `"t"` event.
pub(crate) fn encode_base64(frame: &[u8]) -> String {
    BASE64.encode(frame)
}

#[cfg(feature = "client")]
/// The arguments of a `"t"` event: the base64 frame and an optional grant.
pub(crate) fn encode_text_frame(frame: &[u8], grant: Option<Credit>) -> Vec<Value> {
    let mut args = vec![Value::String(encode_base64(frame))];
    if let Some(grant) = grant {
        args.push(serde_json::json!({ "frames": grant.frames, "bytes": grant.bytes }));
    }
    args
}

/// Decodes the arguments of a `"t"` event (without the event name).
pub(crate) fn decode_text_frame(args: &[Value], max_frame: usize) -> Result<(Bytes, Option<Credit>), WireError> {
    let (text, grant) = match args {
        [Value::String(text)] => (text, None),
        [Value::String(text), grant] => {
            let grant: Credit = serde_json::from_value(grant.clone()).map_err(|e| malformed(EVENT_TEXT, e))?;
            (text, Some(grant))
        }
        _ => return Err(malformed(EVENT_TEXT, "expected a base64 string and an optional credit object")),
    };
    // Refuse before decoding: every 4 characters carry at most 3 bytes.
    let lower_bound =
        (text.len() / 4 * 3).saturating_sub(usize::from(text.ends_with('=')) + usize::from(text.ends_with("==")));
    if lower_bound > max_frame {
        return Err(WireError::FrameTooLarge { size: lower_bound, max: max_frame });
    }
    let frame = BASE64.decode(text).map_err(|e| malformed(EVENT_TEXT, e))?;
    if frame.len() > max_frame {
        return Err(WireError::FrameTooLarge { size: frame.len(), max: max_frame });
    }
    Ok((Bytes::from(frame), grant))
}

/// Decodes the single argument of a control event (without the event name).
pub(crate) fn decode_control<T: DeserializeOwned>(event: &'static str, args: &[Value]) -> Result<T, WireError> {
    match args {
        [value] => serde_json::from_value(value.clone()).map_err(|e| malformed(event, e)),
        _ => Err(malformed(event, format!("expected one argument, got {}", args.len()))),
    }
}

#[cfg(feature = "server")]
/// Splits a socket.io event's JSON text (`["name", args…]`, as socketioxide hands
/// it over) into its arguments. `expected` is the event the handler was
/// registered for.
pub(crate) fn event_args(expected: &'static str, json: &str) -> Result<Vec<Value>, WireError> {
    let mut items: Vec<Value> = serde_json::from_str(json).map_err(|e| malformed(expected, e))?;
    match items.first() {
        Some(Value::String(name)) if name == expected => {
            items.remove(0);
            Ok(items)
        }
        _ => Err(malformed(expected, "event name missing")),
    }
}

#[cfg(feature = "server")]
/// Checks that a binary `"b"` event's JSON text is exactly the event name and one
/// attachment placeholder: `["b",{"_placeholder":true,"num":0}]`.
pub(crate) fn check_binary_header(json: &str, attachments: usize) -> Result<(), WireError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Placeholder {
        _placeholder: bool,
        num: u32,
    }
    if attachments != 1 {
        return Err(malformed(EVENT_BINARY, format!("expected one binary attachment, got {attachments}")));
    }
    let (name, placeholder): (String, Placeholder) =
        serde_json::from_str(json).map_err(|e| malformed(EVENT_BINARY, e))?;
    if name != EVENT_BINARY || !placeholder._placeholder || placeholder.num != 0 {
        return Err(malformed(EVENT_BINARY, "expected exactly one attachment placeholder"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn control_payloads_have_the_documented_json() {
        let hello = Hello {
            v: 1,
            max_frame: 1000,
            window: Credit { frames: 2, bytes: 3 },
            escape_record_separators: true,
            patch_record_separators: true,
        };
        assert_eq!(
            serde_json::to_string(&hello).unwrap(),
            r#"{"v":1,"maxFrame":1000,"window":{"frames":2,"bytes":3},"escapeRecordSeparators":true,"patchRecordSeparators":true}"#
        );
        let js: Hello = serde_json::from_str(r#"{"v":1,"maxFrame":1000,"window":{"frames":2,"bytes":3}}"#).unwrap();
        assert!(!js.escape_record_separators && !js.patch_record_separators, "absent means raw binary");
        let close = CloseNotice { code: CloseCode::GoingAway, message: "bye".into() };
        assert_eq!(serde_json::to_string(&close).unwrap(), r#"{"code":"GoingAway","message":"bye"}"#);
        let args = event_args(EVENT_CLOSE, r#"["peers:close",{"code":"Normal","message":"done"}]"#).unwrap();
        let back: CloseNotice = decode_control(EVENT_CLOSE, &args).unwrap();
        assert_eq!(back.code, CloseCode::Normal);
        assert!(decode_control::<CloseNotice>(EVENT_CLOSE, &[]).is_err());
        assert!(event_args(EVENT_CLOSE, r#"["peers:credit",{}]"#).is_err());
    }

    #[test]
    fn hellos_are_validated() {
        let good = Hello {
            v: VERSION,
            max_frame: 1 << 20,
            window: Credit { frames: 8, bytes: 4 << 20 },
            escape_record_separators: false,
            patch_record_separators: false,
        };
        good.validate().unwrap();
        assert_eq!(Hello { v: 2, ..good }.validate(), Err(WireError::Version(2)));
        assert!(Hello { max_frame: 10, ..good }.validate().is_err());
        assert!(Hello { window: Credit { frames: 0, bytes: 1 << 30 }, ..good }.validate().is_err());
        assert!(Hello { window: Credit { frames: 8, bytes: 1000 }, ..good }.validate().is_err());
    }

    #[test]
    fn binary_headers_are_checked_strictly() {
        check_binary_header(r#"["b",{"_placeholder":true,"num":0}]"#, 1).unwrap();
        assert!(check_binary_header(r#"["b",{"_placeholder":true,"num":0}]"#, 2).is_err());
        assert!(check_binary_header(r#"["b","text"]"#, 1).is_err());
        assert!(check_binary_header(r#"["b",{"_placeholder":true,"num":1}]"#, 1).is_err());
        assert!(check_binary_header(r#"["b",{"_placeholder":true,"num":0},1]"#, 1).is_err());
        assert!(check_binary_header(r#"["x",{"_placeholder":true,"num":0}]"#, 1).is_err());
    }

    #[test]
    fn bad_text_frames_are_refused() {
        let max = 10;
        assert!(decode_text_frame(&[Value::String("not base64!".into())], max).is_err());
        assert!(decode_text_frame(&[Value::from(7)], max).is_err());
        assert!(decode_text_frame(&[], max).is_err());
        let big = encode_text_frame(&[0u8; 11], None);
        assert_eq!(decode_text_frame(&big, max), Err(WireError::FrameTooLarge { size: 11, max }));
        let mut extra = encode_text_frame(b"x", Some(Credit::default()));
        extra.push(Value::Null);
        assert!(decode_text_frame(&extra, max).is_err());
        let bad_grant = vec![Value::String(String::new()), serde_json::json!({"frames": -1, "bytes": 0})];
        assert!(decode_text_frame(&bad_grant, max).is_err());
    }

    proptest! {
        #[test]
        fn text_frames_round_trip(
            frame in proptest::collection::vec(any::<u8>(), 0..2048),
            grant in proptest::option::of((any::<u64>(), any::<u64>())),
        ) {
            let grant = grant.map(|(frames, bytes)| Credit { frames, bytes });
            let args = encode_text_frame(&frame, grant);
            // Through JSON text, as on the wire.
            let json = serde_json::to_string(&[vec![Value::from(EVENT_TEXT)], args].concat()).unwrap();
            let args = event_args(EVENT_TEXT, &json).unwrap();
            let (back, back_grant) = decode_text_frame(&args, 2048).unwrap();
            prop_assert_eq!(&back[..], &frame[..]);
            prop_assert_eq!(back_grant, grant);
        }

        #[test]
        fn garbage_never_panics(text in ".{0,200}") {
            let _ = event_args(EVENT_TEXT, &text).map(|args| decode_text_frame(&args, 100));
            let _ = check_binary_header(&text, 1);
            let _ = event_args(EVENT_HELLO, &text).map(|args| decode_control::<Hello>(EVENT_HELLO, &args));
        }
    }
}
