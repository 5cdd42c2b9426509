//! Negotiation of the AEAD that seals transport frames (ADR 0003).
//!
//! The handshake itself always uses ChaCha20-Poly1305 (`Noise_XX_25519_ChaChaPoly_SHA256`);
//! only the frames after it use the negotiated cipher, keyed by the same split.
//!
//! ```text
//! msg 1  Hello.aeads  = bin: one cipher id per byte, the initiator's preference first
//!                       (absent: the initiator only speaks ChaCha20-Poly1305)
//! msg 2  claim.aead   = u8: the id the responder chose among the offered ones, by its
//!                       own preference (absent: ChaCha20-Poly1305)
//! ```
//!
//! The offer travels in the clear but is mixed into the handshake hash, which is the
//! associated data of message 2's AEAD; an offer altered on the way makes message 2
//! fail to decrypt at the initiator. The choice sits inside the responder's encrypted
//! claim, authenticated by that AEAD (ADR 0006). Unknown ids in an
//! offer are skipped, so a later version can add ciphers without breaking this one;
//! an unknown id as the choice, or a choice the initiator did not offer, fails the
//! handshake.

use crate::error::HandshakeError;

/// Most cipher ids an offer may list.
pub(crate) const MAX_OFFER: usize = 16;

/// An AEAD for the frames after the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportCipher {
    /// ChaCha20-Poly1305 (RFC 8439), wire id 1. Fast everywhere in software; the
    /// cipher every peer speaks.
    ChaCha20Poly1305,
    /// AES-256-GCM, wire id 2. Preferred when the CPU has AES and carry-less
    /// multiplication instructions (x86-64 AES-NI and PCLMULQDQ, aarch64 AES/PMULL).
    Aes256Gcm,
}

impl TransportCipher {
    /// Every cipher this crate implements.
    pub const ALL: [TransportCipher; 2] = [TransportCipher::Aes256Gcm, TransportCipher::ChaCha20Poly1305];

    /// The id on the wire.
    pub fn id(self) -> u8 {
        match self {
            TransportCipher::ChaCha20Poly1305 => 1,
            TransportCipher::Aes256Gcm => 2,
        }
    }

    /// The cipher with wire id `id`, if this crate knows it.
    pub fn from_id(id: u8) -> Option<TransportCipher> {
        match id {
            1 => Some(TransportCipher::ChaCha20Poly1305),
            2 => Some(TransportCipher::Aes256Gcm),
            _ => None,
        }
    }

    /// The default preference on this CPU: AES-256-GCM first when the hardware
    /// accelerates it, then ChaCha20-Poly1305; ChaCha20-Poly1305 only otherwise
    /// (software AES is slow and not constant-time friendly).
    pub fn preferred() -> Vec<TransportCipher> {
        if aes_hardware() {
            vec![TransportCipher::Aes256Gcm, TransportCipher::ChaCha20Poly1305]
        } else {
            vec![TransportCipher::ChaCha20Poly1305]
        }
    }
}

impl std::fmt::Display for TransportCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportCipher::ChaCha20Poly1305 => "ChaCha20-Poly1305",
            TransportCipher::Aes256Gcm => "AES-256-GCM",
        })
    }
}

/// Whether this CPU runs AES-GCM in hardware, detected at run time.
fn aes_hardware() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        // Rust's "aes" feature on aarch64 includes PMULL.
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The wire form of our offer.
pub(crate) fn encode_offer(ciphers: &[TransportCipher]) -> Vec<u8> {
    ciphers.iter().map(|c| c.id()).collect()
}

/// The responder's choice: its first preference that the offer lists. An absent
/// offer means ChaCha20-Poly1305 only; unknown ids are skipped.
pub(crate) fn choose(offer: Option<&[u8]>, ours: &[TransportCipher]) -> Result<TransportCipher, HandshakeError> {
    let chacha_only = [TransportCipher::ChaCha20Poly1305.id()];
    let offer = offer.unwrap_or(&chacha_only);
    if offer.len() > MAX_OFFER {
        return Err(HandshakeError::Malformed {
            message: 1,
            detail: format!("cipher offer of {} entries (at most {MAX_OFFER})", offer.len()),
        });
    }
    ours.iter()
        .copied()
        .find(|cipher| offer.contains(&cipher.id()))
        .ok_or_else(|| HandshakeError::NoCommonCipher { offered: offer.to_vec() })
}

/// The initiator's check of the responder's choice: a known id that we offered.
/// An absent choice (a responder that predates negotiation) means ChaCha20-Poly1305.
pub(crate) fn accept_choice(
    choice: Option<u8>,
    offered: &[TransportCipher],
) -> Result<TransportCipher, HandshakeError> {
    let cipher = match choice {
        None => TransportCipher::ChaCha20Poly1305,
        Some(id) => TransportCipher::from_id(id).ok_or(HandshakeError::UnknownCipher { id })?,
    };
    if !offered.contains(&cipher) {
        return Err(HandshakeError::CipherNotOffered { cipher });
    }
    Ok(cipher)
}

#[cfg(test)]
mod tests {
    use super::TransportCipher::{Aes256Gcm, ChaCha20Poly1305};
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_none() {
        for cipher in TransportCipher::ALL {
            assert_eq!(TransportCipher::from_id(cipher.id()), Some(cipher));
        }
        for id in [0, 3, 0x80, 0xff] {
            assert_eq!(TransportCipher::from_id(id), None);
        }
    }

    #[test]
    fn responder_picks_its_own_preference_among_the_offered() {
        assert_eq!(choose(Some(&[1, 2]), &[Aes256Gcm, ChaCha20Poly1305]), Ok(Aes256Gcm));
        assert_eq!(choose(Some(&[2, 1]), &[ChaCha20Poly1305, Aes256Gcm]), Ok(ChaCha20Poly1305));
        assert_eq!(choose(Some(&[1]), &[Aes256Gcm, ChaCha20Poly1305]), Ok(ChaCha20Poly1305));
        assert_eq!(choose(None, &[Aes256Gcm, ChaCha20Poly1305]), Ok(ChaCha20Poly1305), "absent = ChaCha");
        assert_eq!(choose(Some(&[9, 2, 200]), &[Aes256Gcm]), Ok(Aes256Gcm), "unknown ids are skipped");
    }

    #[test]
    fn no_common_cipher_and_oversized_offers_are_refused() {
        assert_eq!(choose(Some(&[1]), &[Aes256Gcm]), Err(HandshakeError::NoCommonCipher { offered: vec![1] }));
        assert_eq!(choose(None, &[Aes256Gcm]), Err(HandshakeError::NoCommonCipher { offered: vec![1] }));
        assert_eq!(choose(Some(&[7, 8]), &[Aes256Gcm]), Err(HandshakeError::NoCommonCipher { offered: vec![7, 8] }));
        assert_eq!(choose(Some(&[]), &[ChaCha20Poly1305]), Err(HandshakeError::NoCommonCipher { offered: vec![] }));
        assert!(matches!(
            choose(Some(&[1; MAX_OFFER + 1]), &[ChaCha20Poly1305]),
            Err(HandshakeError::Malformed { .. })
        ));
    }

    #[test]
    fn initiator_refuses_unknown_or_unoffered_choices() {
        assert_eq!(accept_choice(Some(2), &[Aes256Gcm, ChaCha20Poly1305]), Ok(Aes256Gcm));
        assert_eq!(accept_choice(None, &[Aes256Gcm, ChaCha20Poly1305]), Ok(ChaCha20Poly1305));
        assert_eq!(accept_choice(Some(0), &TransportCipher::ALL), Err(HandshakeError::UnknownCipher { id: 0 }));
        assert_eq!(accept_choice(Some(77), &TransportCipher::ALL), Err(HandshakeError::UnknownCipher { id: 77 }));
        assert_eq!(
            accept_choice(Some(2), &[ChaCha20Poly1305]),
            Err(HandshakeError::CipherNotOffered { cipher: Aes256Gcm })
        );
        assert_eq!(
            accept_choice(None, &[Aes256Gcm]),
            Err(HandshakeError::CipherNotOffered { cipher: ChaCha20Poly1305 })
        );
    }
}
