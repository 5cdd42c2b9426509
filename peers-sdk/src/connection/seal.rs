//! Sealing frames after the handshake.
//!
//! ```text
//! sealed frame (one socket frame):
//! +----------------+------------------------------------+-----------+
//! | counter u64 BE | ChaCha20-Poly1305(PeerTx frame)    | tag (16)  |
//! +----------------+------------------------------------+-----------+
//! ```
//!
//! Each direction has its own key from the handshake's split and its own counter,
//! starting at 0 and increasing by one per frame. The counter is the AEAD nonce
//! (Noise's layout: four zero bytes, then the counter little-endian) and is also
//! sent, so a replayed, reordered or missing frame is reported as such before
//! decryption is attempted. There is no associated data, as in Noise transport
//! messages. When the session is unencrypted (a bound, confidential transport),
//! frames travel as plain PeerTx frames.

use bytes::{Bytes, BytesMut};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Tag};

use crate::error::Error;
use crate::handshake::nonce;

/// Bytes a sealed frame adds before the PeerTx frame.
pub(crate) const SEAL_HEADROOM: usize = 8;
/// Bytes a sealed frame adds after it.
pub(crate) const SEAL_TAILROOM: usize = 16;

/// Seals outgoing frames.
pub(crate) struct Sealer {
    cipher: Option<ChaCha20Poly1305>,
    counter: u64,
}

impl Sealer {
    pub(crate) fn new(key: Option<&[u8; 32]>) -> Self {
        Sealer { cipher: key.map(|k| ChaCha20Poly1305::new(Key::from_slice(k))), counter: 0 }
    }

    /// Room the codec must leave around each frame.
    pub(crate) fn overhead(&self) -> (usize, usize) {
        if self.cipher.is_some() { (SEAL_HEADROOM, SEAL_TAILROOM) } else { (0, 0) }
    }

    /// Seals `buf`, which holds `headroom` reserved bytes followed by the frame.
    pub(crate) fn seal(&mut self, mut buf: BytesMut) -> Result<Bytes, Error> {
        let Some(cipher) = &self.cipher else { return Ok(buf.freeze()) };
        let counter = self.counter;
        self.counter = counter.checked_add(1).ok_or(Error::Integrity { counter, detail: "nonce space exhausted" })?;
        let body = buf.get_mut(SEAL_HEADROOM..).ok_or(Error::Integrity { counter, detail: "frame lacks headroom" })?;
        let tag = cipher
            .encrypt_in_place_detached(&nonce(counter), &[], body)
            .map_err(|_| Error::Integrity { counter, detail: "frame too large to seal" })?;
        if let Some(head) = buf.get_mut(..SEAL_HEADROOM) {
            head.copy_from_slice(&counter.to_be_bytes());
        }
        buf.extend_from_slice(&tag);
        Ok(buf.freeze())
    }
}

/// Opens incoming frames.
pub(crate) struct Opener {
    cipher: Option<ChaCha20Poly1305>,
    counter: u64,
}

impl Opener {
    pub(crate) fn new(key: Option<&[u8; 32]>) -> Self {
        Opener { cipher: key.map(|k| ChaCha20Poly1305::new(Key::from_slice(k))), counter: 0 }
    }

    /// Checks and decrypts one frame; returns the PeerTx frame.
    pub(crate) fn open(&mut self, frame: Bytes) -> Result<Bytes, Error> {
        let Some(cipher) = &self.cipher else { return Ok(frame) };
        let expected = self.counter;
        let integrity = |detail| Error::Integrity { counter: expected, detail };
        if frame.len() < SEAL_HEADROOM + SEAL_TAILROOM {
            return Err(integrity("sealed frame shorter than its header and tag"));
        }
        let mut counter_bytes = [0u8; SEAL_HEADROOM];
        counter_bytes.copy_from_slice(frame.get(..SEAL_HEADROOM).unwrap_or(&[0; SEAL_HEADROOM]));
        let counter = u64::from_be_bytes(counter_bytes);
        if counter < expected {
            return Err(integrity("frame counter went backwards (replayed or reused nonce)"));
        }
        if counter > expected {
            return Err(integrity("frame counter skipped ahead (dropped or reordered frame)"));
        }
        let mut buf = BytesMut::from(frame);
        let tag_at = buf.len() - SEAL_TAILROOM;
        let tag = Tag::clone_from_slice(buf.get(tag_at..).unwrap_or(&[0; SEAL_TAILROOM]));
        buf.truncate(tag_at);
        let body = buf.get_mut(SEAL_HEADROOM..).unwrap_or_default();
        cipher
            .decrypt_in_place_detached(&nonce(counter), &[], body, &tag)
            .map_err(|_| integrity("authentication tag mismatch (corrupted or forged frame)"))?;
        self.counter = expected.saturating_add(1);
        Ok(buf.freeze().slice(SEAL_HEADROOM..))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any run of frames opens in order to the same bytes; flipping any bit of
        /// any sealed frame makes it fail.
        #[test]
        fn seal_open_round_trip_and_tamper_detection(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8),
            victim in any::<prop::sample::Index>(),
            bit in any::<prop::sample::Index>(),
        ) {
            let key = [9u8; 32];
            let mut sealer = Sealer::new(Some(&key));
            let sealed: Vec<Bytes> = frames.iter().map(|f| sealer.seal(frame(f)).unwrap()).collect();
            let mut opener = Opener::new(Some(&key));
            for (plain, sealed) in frames.iter().zip(&sealed) {
                prop_assert_eq!(&opener.open(sealed.clone()).unwrap()[..], &plain[..]);
            }
            let mut opener = Opener::new(Some(&key));
            let target = victim.index(sealed.len());
            for sealed in &sealed[..target] {
                opener.open(sealed.clone()).unwrap();
            }
            let mut bad = BytesMut::from(sealed[target].clone());
            let at = bit.index(bad.len() * 8);
            bad[at / 8] ^= 1 << (at % 8);
            prop_assert!(opener.open(bad.freeze()).is_err());
        }
    }

    fn frame(text: &[u8]) -> BytesMut {
        let mut buf = BytesMut::with_capacity(text.len() + 24);
        buf.extend_from_slice(&[0; SEAL_HEADROOM]);
        buf.extend_from_slice(text);
        buf
    }

    #[test]
    fn sealed_frames_open_in_order_only() {
        let key = [7u8; 32];
        let mut sealer = Sealer::new(Some(&key));
        let mut opener = Opener::new(Some(&key));
        let one = sealer.seal(frame(b"one")).unwrap();
        let two = sealer.seal(frame(b"two")).unwrap();
        assert!(!one.windows(3).any(|w| w == b"one"));
        assert!(matches!(opener.open(two.clone()), Err(Error::Integrity { counter: 0, .. })));
        assert_eq!(&opener.open(one.clone()).unwrap()[..], b"one");
        assert!(matches!(opener.open(one), Err(Error::Integrity { counter: 1, .. })));
        let mut flipped = BytesMut::from(two.clone());
        flipped[10] ^= 1;
        assert!(matches!(opener.open(flipped.freeze()), Err(Error::Integrity { .. })));
        assert_eq!(&opener.open(two).unwrap()[..], b"two");
    }

    #[test]
    fn wrong_key_and_short_frames_fail() {
        let mut sealer = Sealer::new(Some(&[1u8; 32]));
        let mut opener = Opener::new(Some(&[2u8; 32]));
        let sealed = sealer.seal(frame(b"x")).unwrap();
        assert!(matches!(opener.open(sealed), Err(Error::Integrity { .. })));
        assert!(matches!(opener.open(Bytes::from_static(b"short")), Err(Error::Integrity { .. })));
    }
}
