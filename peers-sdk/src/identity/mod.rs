//! Device identity: keys, the device id derived from them, and the public
//! [`DeviceInfo`] a device shows its peers.
//!
//! A device has two long-term keys:
//!
//! - an **ed25519 signing key**: its identity. The [`DeviceId`] is derived from its
//!   public half, and it signs the static key's certificate (once, ADR 0006);
//! - an **x25519 static key**: used inside the Noise handshake. [`DeviceInfo`] carries
//!   both public keys, and the handshake checks that the x25519 key a peer proved it
//!   owns is the one its `DeviceInfo` names and its certificate signs.
//!
//! Keys generated here derive the static key from the signing key (ADR 0008): its
//! secret is the signing key's scalar (the first half of SHA-512 of the seed, as
//! ed25519 uses it), so its public half is the signing key's Montgomery form, and a
//! peer that sees that needs no certificate to know the two belong together. Keys
//! loaded from a key file keep whatever static key it holds.

mod keyfile;
mod share;

pub use keyfile::MAX_KEY_FILE_LEN;
pub use share::{MAX_SHARE_CODE_LEN, SHARE_CODE_PREFIX};

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use rand_core::{CryptoRngCore, OsRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x25519_dalek::StaticSecret;

use crate::error::{Error, Result};

/// Longest user id accepted, in bytes.
pub const MAX_USER_ID_LEN: usize = 128;
/// Most addresses a [`DeviceInfo`] may list.
pub const MAX_ADDRESSES: usize = 16;
/// Longest address accepted, in bytes.
pub const MAX_ADDRESS_LEN: usize = 256;

const DEVICE_ID_DOMAIN: &[u8] = b"peers/v1 device id";

/// A device's id: the first 20 bytes of `SHA-256("peers/v1 device id" || ed25519 public key)`.
///
/// It is shown and parsed as 40 lowercase hex digits. Because it is derived from the
/// signing key, a device cannot claim an id it does not hold the key for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceId(#[serde(with = "serde_bytes")] [u8; 20]);

impl DeviceId {
    /// Derives the id of the device that owns `key`.
    pub fn from_public_key(key: &VerifyingKey) -> Self {
        let digest = Sha256::new().chain_update(DEVICE_ID_DOMAIN).chain_update(key.as_bytes()).finalize();
        let mut id = [0u8; 20];
        id.copy_from_slice(&digest[..20]);
        DeviceId(id)
    }

    /// The raw 20 bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

impl FromStr for DeviceId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = || Error::InvalidInput { what: "device id", detail: format!("{s:?} is not 40 hex digits") };
        if s.len() != 40 || !s.is_ascii() {
            return Err(invalid());
        }
        let mut id = [0u8; 20];
        for (i, byte) in id.iter_mut().enumerate() {
            let pair = s.get(2 * i..2 * i + 2).ok_or_else(invalid)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
        }
        Ok(DeviceId(id))
    }
}

/// A device's secret keys. Create one with [`DeviceKeys::generate`], keep it with
/// [`DeviceKeys::save`] and [`DeviceKeys::load`].
///
/// The secrets are zeroized when the value is dropped.
#[derive(Clone)]
pub struct DeviceKeys {
    user_id: String,
    signing: SigningKey,
    static_secret: StaticSecret,
    /// Cached: deriving it is a scalar multiplication, and every handshake needs it.
    static_public: x25519_dalek::PublicKey,
    /// The static-key certificate, signed on first use (ed25519 is deterministic, so
    /// it never changes for these keys).
    certificate: OnceLock<[u8; 64]>,
}

impl fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKeys")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id())
            .finish_non_exhaustive()
    }
}

impl DeviceKeys {
    /// Generates fresh keys from the operating system's random source for a device of
    /// `user_id`.
    pub fn generate(user_id: impl Into<String>) -> Result<Self> {
        Self::generate_with(user_id, &mut OsRng)
    }

    /// Generates keys from `rng` (tests use a seeded generator). The static key is
    /// derived from the signing key (see the module documentation).
    pub fn generate_with(user_id: impl Into<String>, rng: &mut impl CryptoRngCore) -> Result<Self> {
        let user_id = user_id.into();
        validate_user_id(&user_id)?;
        let signing = SigningKey::generate(rng);
        let static_secret = StaticSecret::from(signing.to_scalar_bytes());
        Ok(Self::assemble(user_id, signing, static_secret))
    }

    /// Keys from their secrets, as a key file holds them: an ed25519 seed and an
    /// x25519 secret. A static secret that is not the seed's scalar (key files written
    /// before ADR 0008 hold an independent one) works the same, but every peer that
    /// has not met this device yet verifies its certificate.
    pub fn from_secrets(user_id: impl Into<String>, signing_seed: [u8; 32], static_secret: [u8; 32]) -> Result<Self> {
        let user_id = user_id.into();
        validate_user_id(&user_id)?;
        Ok(Self::assemble(user_id, SigningKey::from_bytes(&signing_seed), StaticSecret::from(static_secret)))
    }

    fn assemble(user_id: String, signing: SigningKey, static_secret: StaticSecret) -> Self {
        let static_public = x25519_dalek::PublicKey::from(&static_secret);
        DeviceKeys { user_id, signing, static_secret, static_public, certificate: OnceLock::new() }
    }

    /// The user this device belongs to.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// This device's id.
    pub fn device_id(&self) -> DeviceId {
        DeviceId::from_public_key(&self.signing.verifying_key())
    }

    /// The ed25519 public key.
    pub fn signing_public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The x25519 static public key.
    pub fn static_public(&self) -> x25519_dalek::PublicKey {
        self.static_public
    }

    pub(crate) fn static_secret(&self) -> &StaticSecret {
        &self.static_secret
    }

    /// This device's static-key certificate (ADR 0006): the ed25519 signature over its
    /// user id, device id, signing key and static key, as every handshake sends it.
    /// Signed on first use and kept.
    pub fn static_key_certificate(&self) -> [u8; 64] {
        *self.certificate.get_or_init(|| {
            let text = crate::handshake::certificate_text(
                &self.user_id,
                &self.device_id(),
                self.signing.verifying_key().as_bytes(),
                self.static_public.as_bytes(),
            );
            self.sign(&text)
        })
    }

    /// Signs `message` with the device's ed25519 key.
    ///
    /// Prefix `message` with a domain label of your own so a signature made for one
    /// purpose cannot be replayed for another.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The public description of this device, listing `addresses` where it can be
    /// reached.
    pub fn info(&self, addresses: Vec<String>) -> Result<DeviceInfo> {
        let info = DeviceInfo {
            user_id: self.user_id.clone(),
            device_id: self.device_id(),
            signing_key: self.signing.verifying_key().to_bytes(),
            static_key: self.static_public().to_bytes(),
            addresses,
        };
        info.validate()?;
        Ok(info)
    }
}

fn validate_user_id(user_id: &str) -> Result<()> {
    if user_id.is_empty() || user_id.len() > MAX_USER_ID_LEN {
        return Err(Error::InvalidInput {
            what: "user id",
            detail: format!("must be 1 to {MAX_USER_ID_LEN} bytes, got {}", user_id.len()),
        });
    }
    Ok(())
}

/// What a device tells its peers about itself.
///
/// In a handshake the `DeviceInfo` is authenticated by Noise's encryption of the
/// payload; its `user_id`, `device_id`, `signing_key` and `static_key` are also
/// covered by the sender's static-key certificate (ADR 0006). The receiver checks
/// that `device_id` derives from `signing_key` and that `static_key` is the key used
/// in the key exchange. The `user_id` is a claim: the
/// trust policy decides what it is worth.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The user the device says it belongs to.
    pub user_id: String,
    /// The device's id, derived from `signing_key`.
    pub device_id: DeviceId,
    /// The ed25519 public key.
    #[serde(with = "serde_bytes")]
    pub signing_key: [u8; 32],
    /// The x25519 static public key.
    #[serde(with = "serde_bytes")]
    pub static_key: [u8; 32],
    /// Addresses where the device can be reached (URLs, `host:port`), advisory.
    pub addresses: Vec<String>,
}

impl DeviceInfo {
    /// Checks sizes and that the device id derives from the signing key.
    pub fn validate(&self) -> Result<()> {
        self.validated_key().map(|_| ())
    }

    /// [`validate`](Self::validate), returning the decoded signing key.
    pub(crate) fn validated_key(&self) -> Result<VerifyingKey> {
        validate_user_id(&self.user_id)?;
        if self.addresses.len() > MAX_ADDRESSES || self.addresses.iter().any(|a| a.len() > MAX_ADDRESS_LEN) {
            return Err(Error::InvalidInput {
                what: "addresses",
                detail: format!("at most {MAX_ADDRESSES} of at most {MAX_ADDRESS_LEN} bytes each"),
            });
        }
        let key = self.verifying_key()?;
        if DeviceId::from_public_key(&key) != self.device_id {
            return Err(Error::InvalidInput {
                what: "device id",
                detail: "does not derive from the signing key".into(),
            });
        }
        Ok(key)
    }

    /// The ed25519 key as a verifying key.
    pub fn verifying_key(&self) -> Result<VerifyingKey> {
        VerifyingKey::from_bytes(&self.signing_key)
            .map_err(|_| Error::InvalidInput { what: "signing key", detail: "not a valid ed25519 point".into() })
    }

    /// Verifies a signature made with [`DeviceKeys::sign`] by this device.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = self.verifying_key() else { return false };
        key.verify(message, &ed25519_dalek::Signature::from_bytes(signature)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_round_trips_through_text() {
        let keys = DeviceKeys::generate("alice").unwrap();
        let id = keys.device_id();
        let text = id.to_string();
        assert_eq!(text.len(), 40);
        assert_eq!(text.parse::<DeviceId>().unwrap(), id);
        assert!("zz".parse::<DeviceId>().is_err());
        assert!(text.replace(&text[..2], "g0").parse::<DeviceId>().is_err());
    }

    #[test]
    fn info_validates_and_rejects_a_foreign_device_id() {
        let a = DeviceKeys::generate("alice").unwrap();
        let b = DeviceKeys::generate("alice").unwrap();
        let mut info = a.info(vec!["127.0.0.1:1".into()]).unwrap();
        info.validate().unwrap();
        info.device_id = b.device_id();
        assert!(info.validate().is_err());
    }

    #[test]
    fn signatures_verify_only_for_the_signer() {
        let a = DeviceKeys::generate("alice").unwrap();
        let b = DeviceKeys::generate("bob").unwrap();
        let sig = a.sign(b"hello");
        assert!(a.info(vec![]).unwrap().verify(b"hello", &sig));
        assert!(!a.info(vec![]).unwrap().verify(b"hellO", &sig));
        assert!(!b.info(vec![]).unwrap().verify(b"hello", &sig));
    }

    #[test]
    fn user_id_is_bounded() {
        assert!(DeviceKeys::generate("").is_err());
        assert!(DeviceKeys::generate("x".repeat(MAX_USER_ID_LEN + 1)).is_err());
    }
}
