//! Handshake payloads and the channel-binding prologue.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::certificate::verify_certificate;
use crate::error::{HandshakeError, decode_msgpack};
use crate::identity::{DeviceInfo, DeviceKeys};
use crate::socket::ChannelBinding;

/// The protocol version this crate speaks: 2 since the static-key certificate
/// (ADR 0006) replaced version 1's per-handshake transcript signatures. A responder
/// refuses any other version in message 1 with
/// [`HandshakeError::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u8 = 2;

/// First bytes of every prologue (unchanged by version 2: versions are told apart by
/// the Hello's `v`, which is in the transcript).
const PROLOGUE_LABEL: &[u8] = b"peers/v1";

/// Message 1's payload, sent in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// Protocol version.
    pub(crate) v: u8,
    /// Initiator's clock, unix milliseconds.
    pub(crate) ts: u64,
    /// SHA-256 of the channel-binding bytes, when the transport has a binding.
    #[serde(with = "serde_bytes")]
    pub(crate) binding: Option<Vec<u8>>,
    /// Transport cipher ids the initiator accepts, its preference first
    /// ([`cipher`](super::cipher)). Absent means ChaCha20-Poly1305 only, as sent by
    /// initiators that predate negotiation.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub(crate) aeads: Option<Vec<u8>>,
}

/// The claim of messages 2 and 3, authenticated by Noise's encryption of the payload
/// (bound to the transcript); its identity part is certified by [`SignedIdentity::sig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IdentityClaim {
    /// Who the sender is.
    pub(crate) info: DeviceInfo,
    /// Sender's clock, unix milliseconds.
    pub(crate) ts: u64,
    /// The sender agrees to rely on the transport's bound encryption alone.
    pub(crate) skip_aead: bool,
    /// The transport cipher id the responder chose (message 2 only). Absent means
    /// ChaCha20-Poly1305, as sent by responders that predate negotiation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) aead: Option<u8>,
}

/// Messages 2 and 3 payload: the claim's exact bytes and the sender's static-key
/// certificate, the signature over [`certificate_text`](super::certificate::certificate_text)
/// (the same for every handshake of a device).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SignedIdentity {
    #[serde(with = "serde_bytes")]
    pub(crate) claim: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub(crate) sig: [u8; 64],
}

/// Encodes `claim` with the certificate of `keys` (signed once per [`DeviceKeys`]).
pub(crate) fn seal_claim(keys: &DeviceKeys, claim: &IdentityClaim) -> Result<Vec<u8>, crate::Error> {
    let claim_bytes = crate::error::encode_msgpack("identity claim", claim)?;
    let sig = keys.static_key_certificate();
    crate::error::encode_msgpack("signed identity", &SignedIdentity { claim: claim_bytes, sig })
}

/// Decodes a [`SignedIdentity`], checks the identity's internal consistency, that
/// its static key is the one proven in the key exchange and its certificate, and
/// returns the claim. The claim's other fields are authenticated by the Noise
/// payload encryption the caller already checked.
pub(crate) fn open_claim(
    payload: &[u8],
    proven_static: &[u8; 32],
    message: u8,
) -> Result<IdentityClaim, HandshakeError> {
    let malformed = |detail: String| HandshakeError::Malformed { message, detail };
    let signed: SignedIdentity = decode_msgpack("signed identity", payload).map_err(|e| malformed(e.to_string()))?;
    let claim: IdentityClaim = decode_msgpack("identity claim", &signed.claim).map_err(|e| malformed(e.to_string()))?;
    let key = claim
        .info
        .validated_key()
        .map_err(|_| HandshakeError::InconsistentIdentity("device id does not match signing key"))?;
    if &claim.info.static_key != proven_static {
        return Err(HandshakeError::InconsistentIdentity("static key differs from the one used in the key exchange"));
    }
    if !canonical_strong_key(&key) {
        return Err(HandshakeError::WeakSigningKey);
    }
    // A static key that is the signing key's own Montgomery form needs no certificate:
    // its secret is the signing key's scalar, so proving it in the key exchange is
    // proving the identity (ADR 0008). Any other static key needs the certificate.
    if key.to_montgomery().to_bytes() != claim.info.static_key {
        verify_certificate(&claim.info, &key, &signed.sig)?;
    }
    Ok(claim)
}

/// Whether an ed25519 public key is of large order and canonically encoded
/// (its encoding is the one its point compresses to).
pub(crate) fn canonical_strong_key(key: &ed25519_dalek::VerifyingKey) -> bool {
    !key.is_weak() && key.to_edwards().compress().as_bytes() == key.as_bytes()
}

/// The bytes both sides mix in as the Noise prologue, and their digest for the
/// Hello. `initiator_side` says whether the caller is the initiator, so both ends
/// order the binding's two values the same way.
pub(crate) fn prologue(binding: Option<&ChannelBinding>, initiator_side: bool) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut bytes = PROLOGUE_LABEL.to_vec();
    let Some(binding) = binding else { return (bytes, None) };
    let (first, second) =
        if initiator_side { (&binding.local, &binding.remote) } else { (&binding.remote, &binding.local) };
    let mut bound = Vec::new();
    for part in [binding.kind.as_bytes(), first.as_slice(), second.as_slice()] {
        bound.extend_from_slice(&(part.len() as u64).to_be_bytes());
        bound.extend_from_slice(part);
    }
    let digest = Sha256::digest(&bound).to_vec();
    bytes.extend_from_slice(&bound);
    (bytes, Some(digest))
}

/// Checks a peer timestamp against ours.
pub(crate) fn check_timestamp(theirs: u64, now: u64, window_ms: u64) -> Result<(), HandshakeError> {
    let skew_ms = theirs.abs_diff(now);
    if skew_ms > window_ms {
        return Err(HandshakeError::StaleTimestamp { skew_ms, window_ms });
    }
    Ok(())
}

#[cfg(test)]
mod key_tests {
    use super::canonical_strong_key;
    use ed25519_dalek::VerifyingKey;

    #[test]
    fn small_order_and_non_canonical_keys_are_refused() {
        // The identity point (small order), canonically encoded.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(!canonical_strong_key(&VerifyingKey::from_bytes(&identity).unwrap()));
        // y = 2^255 - 18 = p + 1 encodes the identity again, not canonically.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        if let Ok(key) = VerifyingKey::from_bytes(&non_canonical) {
            assert!(!canonical_strong_key(&key));
        }
        let good = crate::DeviceKeys::generate("strong").unwrap();
        assert!(canonical_strong_key(&good.signing_public()));
    }
}
