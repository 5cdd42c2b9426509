//! Sealing frames after the handshake.
//!
//! ```text
//! sealed frame (one socket frame):
//! +----------------+------------------------------------+-----------+
//! | counter u64 BE | AEAD(PeerTx frame)                 | tag (16)  |
//! +----------------+------------------------------------+-----------+
//! AEAD = the cipher the handshake negotiated: ChaCha20-Poly1305 or AES-256-GCM
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
use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

use crate::error::Error;
use crate::handshake::{Session, TransportCipher, nonce_bytes};

/// Bytes a sealed frame adds before the PeerTx frame.
pub(crate) const SEAL_HEADROOM: usize = 8;
/// Bytes a sealed frame adds after it.
pub(crate) const SEAL_TAILROOM: usize = 16;

/// The negotiated AEAD with its key. Both ciphers come from `ring`, whose
/// assembly runs AES-256-GCM at several GB/s with AES-NI/VAES and CLMUL, and
/// ChaCha20-Poly1305 with AVX2 (ADR 0003 has the measurements); the algorithm is
/// a field of the key, so each frame's seal and open is a direct call, no `dyn`.
pub(crate) struct FrameCipher(LessSafeKey);

impl FrameCipher {
    pub(crate) fn new(cipher: TransportCipher, key: &[u8; 32]) -> Self {
        let algorithm = match cipher {
            TransportCipher::ChaCha20Poly1305 => &CHACHA20_POLY1305,
            TransportCipher::Aes256Gcm => &AES_256_GCM,
        };
        let key = UnboundKey::new(algorithm, key).unwrap_or_else(|_| unreachable!("both algorithms take 32-byte keys"));
        FrameCipher(LessSafeKey::new(key))
    }
}

/// Noise's nonce layout: four zero bytes, then the counter little-endian. Each
/// counter value is used once per key: the sealer refuses to wrap around.
fn nonce(counter: u64) -> Nonce {
    Nonce::assume_unique_for_key(nonce_bytes(counter))
}

/// The sealer and opener of a session: its negotiated cipher under its two keys,
/// or pass-through when the session is not encrypted.
pub(crate) fn for_session(session: &Session) -> (Sealer, Opener) {
    if !session.encrypted {
        return (Sealer::new(None), Opener::new(None));
    }
    let cipher = |key| Some(FrameCipher::new(session.cipher, key));
    (Sealer::new(cipher(&session.send_key)), Opener::new(cipher(&session.recv_key)))
}

/// Seals outgoing frames.
pub(crate) struct Sealer {
    cipher: Option<FrameCipher>,
    counter: u64,
}

impl Sealer {
    /// `None`: frames go out as they are (a bound, confidential transport).
    pub(crate) fn new(cipher: Option<FrameCipher>) -> Self {
        Sealer { cipher, counter: 0 }
    }

    /// Seals `buf`, which holds `headroom` reserved bytes followed by the frame.
    pub(crate) fn seal(&mut self, mut buf: BytesMut) -> Result<Bytes, Error> {
        let Some(cipher) = &self.cipher else { return Ok(buf.freeze()) };
        let counter = self.counter;
        self.counter = counter.checked_add(1).ok_or(Error::Integrity { counter, detail: "nonce space exhausted" })?;
        let body = buf.get_mut(SEAL_HEADROOM..).ok_or(Error::Integrity { counter, detail: "frame lacks headroom" })?;
        let tag = cipher
            .0
            .seal_in_place_separate_tag(nonce(counter), Aad::empty(), body)
            .map_err(|_| Error::Integrity { counter, detail: "frame too large to seal" })?;
        if let Some(head) = buf.get_mut(..SEAL_HEADROOM) {
            head.copy_from_slice(&counter.to_be_bytes());
        }
        buf.extend_from_slice(tag.as_ref());
        Ok(buf.freeze())
    }
}

/// Opens incoming frames.
pub(crate) struct Opener {
    cipher: Option<FrameCipher>,
    counter: u64,
}

impl Opener {
    /// `None`: frames arrive as they are (a bound, confidential transport).
    pub(crate) fn new(cipher: Option<FrameCipher>) -> Self {
        Opener { cipher, counter: 0 }
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
        // No copy when the frame's buffer is not shared (the usual case).
        let mut buf = BytesMut::from(frame);
        let sealed = buf.get_mut(SEAL_HEADROOM..).unwrap_or_default();
        cipher
            .0
            .open_in_place(nonce(counter), Aad::empty(), sealed)
            .map_err(|_| integrity("authentication tag mismatch (corrupted or forged frame)"))?;
        buf.truncate(buf.len() - SEAL_TAILROOM);
        self.counter = expected.saturating_add(1);
        Ok(buf.freeze().slice(SEAL_HEADROOM..))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn keyed(cipher: TransportCipher, key: [u8; 32]) -> (Sealer, Opener) {
        (Sealer::new(Some(FrameCipher::new(cipher, &key))), Opener::new(Some(FrameCipher::new(cipher, &key))))
    }

    proptest! {
        /// With either cipher, any run of frames opens in order to the same bytes;
        /// flipping any bit of any sealed frame makes it fail.
        #[test]
        fn seal_open_round_trip_and_tamper_detection(
            cipher in prop::sample::select(TransportCipher::ALL.to_vec()),
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8),
            victim in any::<prop::sample::Index>(),
            bit in any::<prop::sample::Index>(),
        ) {
            let (mut sealer, mut opener) = keyed(cipher, [9u8; 32]);
            let sealed: Vec<Bytes> = frames.iter().map(|f| sealer.seal(frame(f)).unwrap()).collect();
            for (plain, sealed) in frames.iter().zip(&sealed) {
                prop_assert_eq!(&opener.open(sealed.clone()).unwrap()[..], &plain[..]);
            }
            let (_, mut opener) = keyed(cipher, [9u8; 32]);
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
        for cipher in TransportCipher::ALL {
            let (mut sealer, mut opener) = keyed(cipher, [7u8; 32]);
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
    }

    #[test]
    fn wrong_key_wrong_cipher_and_short_frames_fail() {
        for cipher in TransportCipher::ALL {
            let (mut sealer, _) = keyed(cipher, [1u8; 32]);
            let (_, mut opener) = keyed(cipher, [2u8; 32]);
            let sealed = sealer.seal(frame(b"x")).unwrap();
            assert!(matches!(opener.open(sealed), Err(Error::Integrity { .. })));
            assert!(matches!(opener.open(Bytes::from_static(b"short")), Err(Error::Integrity { .. })));
        }
        // Same key, the other cipher: the tag does not verify.
        let (mut sealer, _) = keyed(TransportCipher::Aes256Gcm, [3u8; 32]);
        let (_, mut opener) = keyed(TransportCipher::ChaCha20Poly1305, [3u8; 32]);
        assert!(matches!(opener.open(sealer.seal(frame(b"x")).unwrap()), Err(Error::Integrity { .. })));
    }
}
