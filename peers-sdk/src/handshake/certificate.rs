//! The static-key certificate (ADR 0006): a device's ed25519 identity key signs its
//! long-term x25519 static key once, and Noise's `es`/`se` key agreement proves
//! possession of that static key in every handshake.
//!
//! The signed text, every byte fixed (`docs/protocol.md` §2, "Static-key certificate"):
//!
//! ```text
//! CERTIFICATE_LABEL        19 bytes, "peers/v2 static key"
//! len(user_id)             1 byte (1..=128, MAX_USER_ID_LEN)
//! user_id                  UTF-8, len(user_id) bytes
//! device_id                20 bytes
//! signing_key              32 bytes, ed25519 public key
//! static_key               32 bytes, x25519 public key
//! ```
//!
//! Verifiers remember the certificates they verified in a process-wide cache of
//! [`CERTIFICATE_CACHE_CAPACITY`] entries (oldest evicted first), so a known peer
//! costs no signature verification. An entry is the SHA-256 of the signed text and
//! the signature, inserted only after `verify_strict` accepted them: input that did
//! not verify never enters it, and a hit stands for exactly the bytes once verified.

use std::collections::{HashSet, VecDeque};
use std::sync::{LazyLock, Mutex};

use sha2::{Digest, Sha256};

use crate::error::HandshakeError;
use crate::identity::{DeviceId, DeviceInfo};

/// Domain label that starts every static-key certificate's signed text.
pub(crate) const CERTIFICATE_LABEL: &[u8] = b"peers/v2 static key";

/// Most verified certificates a process remembers (32 bytes each, plus the set's
/// and the queue's overhead: under 512 KiB in all).
pub const CERTIFICATE_CACHE_CAPACITY: usize = 4096;

/// The text a device's identity key signs to certify its static key.
pub(crate) fn certificate_text(
    user_id: &str,
    device_id: &DeviceId,
    signing_key: &[u8; 32],
    static_key: &[u8; 32],
) -> Vec<u8> {
    // User ids are 1 to MAX_USER_ID_LEN (128) bytes, checked before any text is built.
    let len = u8::try_from(user_id.len()).unwrap_or(u8::MAX);
    let mut text = Vec::with_capacity(CERTIFICATE_LABEL.len() + 1 + user_id.len() + 20 + 32 + 32);
    text.extend_from_slice(CERTIFICATE_LABEL);
    text.push(len);
    text.extend_from_slice(user_id.as_bytes());
    text.extend_from_slice(device_id.as_bytes());
    text.extend_from_slice(signing_key);
    text.extend_from_slice(static_key);
    text
}

/// Certificates verified so far, bounded, oldest evicted first.
struct Verified {
    known: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl Verified {
    fn contains(&self, entry: &[u8; 32]) -> bool {
        self.known.contains(entry)
    }

    fn insert(&mut self, entry: [u8; 32]) {
        if !self.known.insert(entry) {
            return;
        }
        self.order.push_back(entry);
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.known.remove(&oldest);
            }
        }
    }
}

static VERIFIED: LazyLock<Mutex<Verified>> = LazyLock::new(|| {
    Mutex::new(Verified {
        known: HashSet::with_capacity(CERTIFICATE_CACHE_CAPACITY + 1),
        order: VecDeque::with_capacity(CERTIFICATE_CACHE_CAPACITY + 1),
        capacity: CERTIFICATE_CACHE_CAPACITY,
    })
});

fn verified() -> std::sync::MutexGuard<'static, Verified> {
    // The set is consistent after every statement that can panic, so a poisoned
    // lock still holds a usable cache.
    VERIFIED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The cache entry of a certificate: SHA-256 of its signed text and signature.
fn entry(text: &[u8], sig: &[u8; 64]) -> [u8; 32] {
    Sha256::new().chain_update(text).chain_update(sig).finalize().into()
}

fn text_of(info: &DeviceInfo) -> Vec<u8> {
    certificate_text(&info.user_id, &info.device_id, &info.signing_key, &info.static_key)
}

/// Checks `sig` certifies `info.static_key` for `info`'s identity, with `key` the
/// already validated (canonical, large order) decoding of `info.signing_key`.
pub(crate) fn verify_certificate(
    info: &DeviceInfo,
    key: &ed25519_dalek::VerifyingKey,
    sig: &[u8; 64],
) -> Result<(), HandshakeError> {
    let text = text_of(info);
    let entry = entry(&text, sig);
    if verified().contains(&entry) {
        return Ok(());
    }
    // Strict: no small-order R, canonical s (the signaling server verifies the same way).
    if key.verify_strict(&text, &ed25519_dalek::Signature::from_bytes(sig)).is_err() {
        return Err(HandshakeError::BadSignature { device: info.device_id });
    }
    verified().insert(entry);
    Ok(())
}

#[cfg(test)]
pub(crate) fn cached(info: &DeviceInfo, sig: &[u8; 64]) -> bool {
    verified().contains(&entry(&text_of(info), sig))
}

#[cfg(test)]
mod cache_tests {
    use super::Verified;

    #[test]
    fn the_cache_stays_bounded_and_evicts_the_oldest() {
        let mut cache = Verified { known: Default::default(), order: Default::default(), capacity: 3 };
        for i in 0..5u8 {
            cache.insert([i; 32]);
            cache.insert([i; 32]); // a repeat is not a second entry
        }
        assert_eq!((cache.known.len(), cache.order.len()), (3, 3));
        assert!(!cache.contains(&[0; 32]) && !cache.contains(&[1; 32]));
        assert!((2..5u8).all(|i| cache.contains(&[i; 32])));
    }
}
