//! Device messages (`sendDeviceMessage`): small signed messages routed over
//! existing connections, several hops if needed, with a TTL in time and in hops
//! and de-duplication. WebRTC signaling between two devices that share a third
//! rides on them, with no signaling server.
//!
//! ```text
//! DeviceMessage (MessagePack map)
//!   id          16 random bytes       de-duplication
//!   from        device id (20 bytes)  the author
//!   from_key    ed25519 key (32)      must derive `from`
//!   to          device id             the addressee
//!   kind        text, <= 64 bytes     what the payload is ("webrtc", ...)
//!   payload     bytes, <= 64 KiB
//!   created_ms  u64                   author's clock
//!   expires_ms  u64                   at most created_ms + 5 min
//!   hops_left   u8                    decremented per hop; NOT signed
//!   signature   64 bytes              ed25519 over everything above except hops_left
//! ```
//!
//! Routing ([`MessageRouter::route`], sans-IO): refuse what is malformed, forged,
//! expired or already seen; deliver what is addressed here; otherwise, with hops
//! left, forward to the addressee if it is a neighbour, else to every neighbour
//! except the one it came from and its author.

use std::collections::{HashSet, VecDeque};
use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use peers_sdk::{DeviceId, DeviceKeys};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

/// The longest `kind`, in bytes.
pub const MAX_KIND_LEN: usize = 64;
/// The largest payload, in bytes.
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024;
/// The longest lifetime a message may ask for.
pub const MAX_LIFETIME_MS: u64 = 5 * 60 * 1000;
/// The most hops a message may ask for.
pub const MAX_HOPS: u8 = 8;
/// How far in the future `created_ms` may be (clock skew allowance).
const MAX_CLOCK_AHEAD_MS: u64 = 60 * 1000;
/// Domain separation of the signature.
const SIGNATURE_CONTEXT: &[u8] = b"peers/v1 device message";

/// A signed message from one device to another.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMessage {
    /// Random id, for de-duplication.
    #[serde(with = "serde_bytes")]
    pub id: [u8; 16],
    /// The author.
    pub from: DeviceId,
    /// The author's ed25519 public key.
    #[serde(with = "serde_bytes")]
    pub from_key: [u8; 32],
    /// The addressee.
    pub to: DeviceId,
    /// What the payload is.
    pub kind: String,
    /// The payload.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// When the author made it (ms since the Unix epoch).
    pub created_ms: u64,
    /// When it expires (ms since the Unix epoch).
    pub expires_ms: u64,
    /// Forwarding hops left.
    pub hops_left: u8,
    /// The author's signature.
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

impl fmt::Debug for DeviceMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceMessage")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("kind", &self.kind)
            .field("payload_len", &self.payload.len())
            .field("hops_left", &self.hops_left)
            .finish_non_exhaustive()
    }
}

impl DeviceMessage {
    /// Writes and signs a message from `keys` to `to`, living `lifetime_ms` (capped
    /// at [`MAX_LIFETIME_MS`]) and at most `hops` hops (capped at [`MAX_HOPS`]).
    pub fn new(
        keys: &DeviceKeys,
        to: DeviceId,
        kind: impl Into<String>,
        payload: Vec<u8>,
        now_ms: u64,
        lifetime_ms: u64,
        hops: u8,
    ) -> Result<Self, Refusal> {
        let mut id = [0u8; 16];
        OsRng.fill_bytes(&mut id);
        let mut message = DeviceMessage {
            id,
            from: keys.device_id(),
            from_key: keys.signing_public().to_bytes(),
            to,
            kind: kind.into(),
            payload,
            created_ms: now_ms,
            expires_ms: now_ms.saturating_add(lifetime_ms.min(MAX_LIFETIME_MS)),
            hops_left: hops.min(MAX_HOPS),
            signature: [0; 64],
        };
        message.check_shape()?;
        message.signature = keys.sign(&message.signed_bytes());
        Ok(message)
    }

    fn check_shape(&self) -> Result<(), Refusal> {
        if self.kind.len() > MAX_KIND_LEN {
            return Err(Refusal::Malformed("kind longer than 64 bytes"));
        }
        if self.payload.len() > MAX_PAYLOAD_LEN {
            return Err(Refusal::Malformed("payload larger than 64 KiB"));
        }
        if self.expires_ms < self.created_ms || self.expires_ms - self.created_ms > MAX_LIFETIME_MS {
            return Err(Refusal::Malformed("lifetime outside 0 to 5 minutes"));
        }
        if self.hops_left > MAX_HOPS {
            return Err(Refusal::Malformed("more than 8 hops"));
        }
        Ok(())
    }

    /// The bytes the signature covers: every field except `hops_left` (which each
    /// hop changes) and the signature, length-prefixed.
    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(200 + self.payload.len());
        out.extend_from_slice(SIGNATURE_CONTEXT);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(self.from.as_bytes());
        out.extend_from_slice(&self.from_key);
        out.extend_from_slice(self.to.as_bytes());
        for field in [self.kind.as_bytes(), &self.payload] {
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(field);
        }
        out.extend_from_slice(&self.created_ms.to_be_bytes());
        out.extend_from_slice(&self.expires_ms.to_be_bytes());
        out
    }

    /// Checks the author's key and signature.
    fn verify(&self) -> Result<(), Refusal> {
        let key = VerifyingKey::from_bytes(&self.from_key).map_err(|_| Refusal::Forged("invalid author key"))?;
        if DeviceId::from_public_key(&key) != self.from {
            return Err(Refusal::Forged("author key does not derive the author's device id"));
        }
        key.verify_strict(&self.signed_bytes(), &Signature::from_bytes(&self.signature))
            .map_err(|_| Refusal::Forged("bad signature"))
    }
}

/// Why a device message was not delivered or forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A field is out of bounds.
    #[error("malformed device message: {0}")]
    Malformed(&'static str),
    /// The signature or the author's key does not check out.
    #[error("forged device message: {0}")]
    Forged(&'static str),
    /// Its time is up (or it claims to be from the future).
    #[error("device message expired")]
    Expired,
    /// Already seen (a copy that took another route).
    #[error("duplicate device message")]
    Duplicate,
    /// Not addressed here and no hops left.
    #[error("device message out of hops")]
    OutOfHops,
    /// Not addressed here and nobody to forward it to.
    #[error("no route for device message")]
    NoRoute,
}

/// What to do with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// It is for this device.
    Deliver(DeviceMessage),
    /// Send it (hops already decremented) to these neighbours.
    Forward(DeviceMessage, Vec<DeviceId>),
}

/// Routes device messages for one device. Remembers the ids it has seen, up to a
/// bound, until they expire.
#[derive(Debug)]
pub struct MessageRouter {
    me: DeviceId,
    seen: HashSet<[u8; 16]>,
    order: VecDeque<([u8; 16], u64)>,
    max_seen: usize,
}

impl MessageRouter {
    /// A router for `me`, remembering at most `max_seen` message ids.
    pub fn new(me: DeviceId, max_seen: usize) -> Self {
        MessageRouter { me, seen: HashSet::new(), order: VecDeque::new(), max_seen: max_seen.max(1) }
    }

    /// Decides what to do with `message`, which arrived from the neighbour
    /// `arrived_from` (`None`: written on this device), given the devices this one
    /// has connections to.
    pub fn route(
        &mut self,
        mut message: DeviceMessage,
        arrived_from: Option<DeviceId>,
        neighbours: &[DeviceId],
        now_ms: u64,
    ) -> Result<Route, Refusal> {
        message.check_shape()?;
        if now_ms > message.expires_ms || message.created_ms > now_ms.saturating_add(MAX_CLOCK_AHEAD_MS) {
            return Err(Refusal::Expired);
        }
        message.verify()?;
        self.forget_expired(now_ms);
        if !self.seen.insert(message.id) {
            return Err(Refusal::Duplicate);
        }
        self.order.push_back((message.id, message.expires_ms));
        while self.order.len() > self.max_seen {
            if let Some((id, _)) = self.order.pop_front() {
                self.seen.remove(&id);
            }
        }
        if message.to == self.me {
            return Ok(Route::Deliver(message));
        }
        if arrived_from.is_some() {
            message.hops_left = message.hops_left.checked_sub(1).ok_or(Refusal::OutOfHops)?;
        }
        let next: Vec<DeviceId> = if neighbours.contains(&message.to) {
            vec![message.to]
        } else if message.hops_left == 0 {
            return Err(Refusal::OutOfHops);
        } else {
            neighbours
                .iter()
                .copied()
                .filter(|n| Some(*n) != arrived_from && *n != message.from && *n != self.me)
                .collect()
        };
        if next.is_empty() {
            return Err(Refusal::NoRoute);
        }
        Ok(Route::Forward(message, next))
    }

    fn forget_expired(&mut self, now_ms: u64) {
        // Ids are mostly in expiry order; stop at the first one still alive.
        while let Some((id, expires)) = self.order.front().copied() {
            if expires >= now_ms {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> DeviceKeys {
        DeviceKeys::generate("u").unwrap()
    }

    #[test]
    fn a_message_reaches_a_device_two_hops_away_once() {
        let (a, b, c) = (keys(), keys(), keys());
        let (ida, idb, idc) = (a.device_id(), b.device_id(), c.device_id());
        let message = DeviceMessage::new(&a, idc, "webrtc", b"offer".to_vec(), 1_000, 30_000, 4).unwrap();
        // a is connected to b only.
        let Route::Forward(at_a, next) = MessageRouter::new(ida, 100).route(message, None, &[idb], 1_000).unwrap()
        else {
            panic!("a should forward")
        };
        assert_eq!(next, vec![idb]);
        let mut router_b = MessageRouter::new(idb, 100);
        let Route::Forward(at_b, next) = router_b.route(at_a.clone(), Some(ida), &[ida, idc], 1_001).unwrap() else {
            panic!("b should forward")
        };
        assert_eq!(next, vec![idc], "straight to the addressee when it is a neighbour");
        assert_eq!(at_b.hops_left, 3);
        // A copy arriving at b again (another route) is not forwarded twice.
        assert_eq!(router_b.route(at_a, Some(ida), &[ida, idc], 1_002), Err(Refusal::Duplicate));
        let mut router_c = MessageRouter::new(idc, 100);
        assert!(
            matches!(router_c.route(at_b.clone(), Some(idb), &[idb], 1_002), Ok(Route::Deliver(m)) if m.payload == b"offer")
        );
        assert_eq!(router_c.route(at_b, Some(idb), &[idb], 1_003), Err(Refusal::Duplicate));
    }

    #[test]
    fn expired_out_of_hops_and_forged_messages_are_refused() {
        let (a, b, c, d) = (keys(), keys(), keys(), keys());
        let message = DeviceMessage::new(&a, d.device_id(), "k", vec![1], 1_000, 5_000, 1).unwrap();
        let mut router = MessageRouter::new(b.device_id(), 100);
        assert_eq!(router.route(message.clone(), Some(a.device_id()), &[c.device_id()], 6_001), Err(Refusal::Expired));
        assert_eq!(
            router.route(message.clone(), Some(a.device_id()), &[c.device_id()], 2_000),
            Err(Refusal::OutOfHops)
        );

        let mut tampered = DeviceMessage::new(&a, b.device_id(), "k", vec![1], 1_000, 5_000, 1).unwrap();
        tampered.payload = vec![2];
        let mut router = MessageRouter::new(b.device_id(), 100);
        assert!(matches!(router.route(tampered, None, &[], 1_000), Err(Refusal::Forged(_))));

        // Claiming to be a: c signs with its own key but names a as the author.
        let mut impostor = DeviceMessage::new(&c, b.device_id(), "k", vec![1], 1_000, 5_000, 1).unwrap();
        impostor.from = a.device_id();
        assert!(matches!(router.route(impostor, None, &[], 1_000), Err(Refusal::Forged(_))));

        // ... or with a's public key but its own signature.
        let mut impostor = DeviceMessage::new(&c, b.device_id(), "k", vec![1], 1_000, 5_000, 1).unwrap();
        impostor.from = a.device_id();
        impostor.from_key = a.signing_public().to_bytes();
        assert!(matches!(router.route(impostor, None, &[], 1_000), Err(Refusal::Forged(_))));
    }

    #[test]
    fn the_seen_set_is_bounded() {
        let (a, b) = (keys(), keys());
        let mut router = MessageRouter::new(b.device_id(), 10);
        for _ in 0..100 {
            let message = DeviceMessage::new(&a, b.device_id(), "k", vec![], 1_000, 60_000, 1).unwrap();
            router.route(message, Some(a.device_id()), &[a.device_id()], 1_000).unwrap();
        }
        assert!(router.seen.len() <= 10 && router.order.len() <= 10);
    }

    #[test]
    fn oversized_fields_are_refused_before_signing_and_on_arrival() {
        let (a, b) = (keys(), keys());
        assert!(DeviceMessage::new(&a, b.device_id(), "k", vec![0; MAX_PAYLOAD_LEN + 1], 0, 1, 1).is_err());
        let mut message = DeviceMessage::new(&a, b.device_id(), "k", vec![], 1_000, 1_000, 1).unwrap();
        message.expires_ms = u64::MAX;
        let mut router = MessageRouter::new(b.device_id(), 10);
        assert!(matches!(router.route(message, None, &[], 1_000), Err(Refusal::Malformed(_))));
    }
}
