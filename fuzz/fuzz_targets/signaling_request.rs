//! Feeds arbitrary event texts to the signaling server's request parser
//! (`peers_signaling::protocol::split_event` and `Request::parse`): it must
//! never panic, and what it accepts must be within the protocol's limits.
//!
//! Input layout: the first byte picks the event kind, so the fuzzer does not
//! have to find the names; the rest is the payload's JSON text. Every input is
//! also tried whole as a socket.io event text (`["name", payload]`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use peers_signaling::protocol::{
    MAX_MESSAGE_ID_LEN, MAX_SUBSCRIBE_BATCH, PayloadLimits, Request, RequestKind, server_origin, split_event,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let limits = PayloadLimits::default();
    let kind = RequestKind::ALL[usize::from(selector) % RequestKind::ALL.len()];
    if let Ok(payload) = serde_json::from_str(text) {
        check(Request::parse(kind, payload, &limits), &limits);
    }
    if let Ok((name, payload)) = split_event(text)
        && let Some(kind) = RequestKind::of(&name)
    {
        check(Request::parse(kind, payload, &limits), &limits);
    }
});

fn check(parsed: Result<Request, peers_signaling::protocol::Rejection>, limits: &PayloadLimits) {
    match parsed {
        Err(rejection) => assert!(rejection.message.len() <= peers_signaling::protocol::Rejection::MAX_MESSAGE_LEN),
        Ok(Request::Signal(signal)) => {
            assert!(!signal.id.is_empty() && signal.id.len() <= MAX_MESSAGE_ID_LEN);
            let body = serde_json::to_vec(&signal.body).expect("a parsed body encodes");
            assert!(body.len() <= limits.max_body_bytes);
        }
        Ok(Request::Subscribe(devices) | Request::Unsubscribe(devices)) => {
            assert!(devices.len() <= MAX_SUBSCRIBE_BATCH);
        }
        Ok(Request::Register(registration)) => {
            assert_eq!(server_origin(&registration.origin).as_deref(), Ok(registration.origin.as_str()));
            assert!(registration.allow.is_none_or(|list| list.len() <= peers_signaling::protocol::MAX_ALLOW));
        }
        Ok(Request::Allow(update)) => {
            assert!(update.allow.is_none_or(|list| list.len() <= peers_signaling::protocol::MAX_ALLOW));
        }
        Ok(_) => {}
    }
}
