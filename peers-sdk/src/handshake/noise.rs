//! The Noise `XX` symmetric state for `Noise_XX_25519_ChaChaPoly_SHA256`.
//!
//! This is the `CipherState` and `SymmetricState` of the Noise specification
//! (revision 34, sections 5.1 and 5.2), written as plain values with no I/O. The
//! token processing lives in the typed handshake states in `super`.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::error::HandshakeError;

/// The Noise protocol name; exactly 32 bytes, so it is used as the initial hash
/// without hashing (spec section 5.2, `InitializeSymmetric`).
pub(crate) const PROTOCOL_NAME: &[u8; 32] = b"Noise_XX_25519_ChaChaPoly_SHA256";
/// Length of a hash, a key and a DH public key.
pub(crate) const LEN: usize = 32;
/// Length of a ChaCha20-Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;

/// The 96-bit nonce Noise uses: 32 zero bits, then the 64-bit counter
/// little-endian. The transport frames use the same layout with either cipher.
pub(crate) fn nonce_bytes(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    n
}

fn nonce(counter: u64) -> Nonce {
    Nonce::from(nonce_bytes(counter))
}

/// Noise `HKDF` with two outputs; identical to RFC 5869 with the chaining key as
/// salt and empty info.
pub(crate) fn hkdf2(chaining_key: &[u8; LEN], input: &[u8]) -> (Zeroizing<[u8; LEN]>, Zeroizing<[u8; LEN]>) {
    let mut okm = Zeroizing::new([0u8; 2 * LEN]);
    Hkdf::<Sha256>::new(Some(chaining_key), input)
        .expand(&[], okm.as_mut_slice())
        .unwrap_or_else(|_| unreachable!("64 bytes is a valid HKDF-SHA256 output length"));
    let mut a = Zeroizing::new([0u8; LEN]);
    let mut b = Zeroizing::new([0u8; LEN]);
    let (first, second) = okm.split_at(LEN);
    a.copy_from_slice(first);
    b.copy_from_slice(second);
    (a, b)
}

/// Diffie-Hellman that refuses a non-contributory (low-order) result.
pub(crate) fn dh(secret: &StaticSecret, public: &[u8; LEN]) -> Result<Zeroizing<[u8; LEN]>, HandshakeError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(HandshakeError::WeakKey);
    }
    Ok(Zeroizing::new(*shared.as_bytes()))
}

/// `SymmetricState`: chaining key, handshake hash and the current cipher key.
pub(crate) struct SymmetricState {
    ck: Zeroizing<[u8; LEN]>,
    h: [u8; LEN],
    key: Option<Zeroizing<[u8; LEN]>>,
    n: u64,
}

impl SymmetricState {
    /// `InitializeSymmetric(protocol_name)` followed by `MixHash(prologue)`.
    pub(crate) fn new(prologue: &[u8]) -> Self {
        let mut state = SymmetricState { ck: Zeroizing::new(*PROTOCOL_NAME), h: *PROTOCOL_NAME, key: None, n: 0 };
        state.mix_hash(prologue);
        state
    }

    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        self.h = Sha256::new().chain_update(self.h).chain_update(data).finalize().into();
    }

    pub(crate) fn mix_key(&mut self, input: &[u8]) {
        let (ck, k) = hkdf2(&self.ck, input);
        self.ck = ck;
        self.key = Some(k);
        self.n = 0;
    }

    pub(crate) fn handshake_hash(&self) -> [u8; LEN] {
        self.h
    }

    /// `EncryptAndHash`: encrypts with the handshake hash as associated data once a
    /// key exists, and mixes the ciphertext into the hash.
    pub(crate) fn encrypt_and_hash(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let out = match &self.key {
            Some(key) => {
                let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_slice()));
                let sealed = cipher.encrypt(&nonce(self.n), Payload { msg: plaintext, aad: &self.h });
                self.n += 1;
                sealed.unwrap_or_else(|_| unreachable!("chacha20poly1305 encrypts any handshake-sized input"))
            }
            None => plaintext.to_vec(),
        };
        self.mix_hash(&out);
        out
    }

    /// `DecryptAndHash`; `message` names the handshake message for the error.
    pub(crate) fn decrypt_and_hash(&mut self, ciphertext: &[u8], message: u8) -> Result<Vec<u8>, HandshakeError> {
        let out = match &self.key {
            Some(key) => {
                let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_slice()));
                let opened = cipher
                    .decrypt(&nonce(self.n), Payload { msg: ciphertext, aad: &self.h })
                    .map_err(|_| HandshakeError::DecryptFailed { message })?;
                self.n += 1;
                opened
            }
            None => ciphertext.to_vec(),
        };
        self.mix_hash(ciphertext);
        Ok(out)
    }

    /// `Split`: the initiator-to-responder and responder-to-initiator keys.
    pub(crate) fn split(&self) -> (Zeroizing<[u8; LEN]>, Zeroizing<[u8; LEN]>) {
        hkdf2(&self.ck, &[])
    }
}
