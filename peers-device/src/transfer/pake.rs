//! The PAKE that turns a short code into trust in one device key.
//!
//! SPAKE2 (the `spake2` crate, Ed25519 group, symmetric mode, ADR 0005) on the whole code
//! as the password, then key confirmation that carries each side's device key:
//!
//! ```text
//!  creator (sender / pairer)                              joiner (receiver)
//!   ── PakeMessage  (33 B SPAKE2 element) ─────────────▶
//!   ◀──────────────────────────────────  PakeMessage ──
//!        both: K = SPAKE2(code, both elements)
//!   ── Confirm { device: DeviceInfo, mac } ────────────▶
//!   ◀──────────────────────── Confirm { device, mac } ──
//!        mac = HMAC-SHA256(HKDF(K, "peers/v1 transfer confirm <role>"), device fields)
//! ```
//!
//! Either message may be sent as soon as it is ready; neither side waits for the other's
//! to send its own. What each check stops:
//!
//! | attack | stopped by |
//! |---|---|
//! | the signaling server (or anyone on its path) reads the messages and guesses offline | SPAKE2: the elements reveal nothing that tests a guess without a protocol run |
//! | someone who does not know the words joins first | their `Confirm` fails: both sides get [`TransferError::WrongCode`] and the creator burns the session (one guess per code) |
//! | the server substitutes its own device key | the key travels inside the MAC'd `Confirm`: changing it needs `K` |
//! | a side's own `Confirm` reflected back to it | each role has its own confirmation key |
//!
//! The device key confirmed here is the only one the following `Connection` handshake
//! accepts, so the data that moves afterwards is bound to the code.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use peers_sdk::DeviceInfo;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use spake2::{Ed25519Group, Identity, Password, Spake2};

use super::{TransferCode, TransferError};

/// The SPAKE2 identity both sides use (symmetric mode).
const PAKE_IDENTITY: &[u8] = b"peers/v1 transfer pake";
/// Size of a SPAKE2 message for the Ed25519 group (a side byte and a point).
pub const PAKE_MESSAGE_LEN: usize = 33;

/// Which end of a code session this device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CodeRole {
    /// Made the code: the sender of a transfer, the pairer that prints a pairing code.
    Creator,
    /// Typed the code in: the receiver, the device that joins.
    Joiner,
}

impl CodeRole {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Creator => b"peers/v1 transfer confirm creator",
            Self::Joiner => b"peers/v1 transfer confirm joiner",
        }
    }

    /// The other end.
    pub fn peer(self) -> Self {
        match self {
            Self::Creator => Self::Joiner,
            Self::Joiner => Self::Creator,
        }
    }
}

/// The first PAKE message: one SPAKE2 element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PakeMessage(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// The second PAKE message: this side's device, confirmed with the PAKE key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirm {
    /// The device (its keys) that will connect for this code.
    pub device: DeviceInfo,
    /// HMAC-SHA256 under this side's confirmation key over the device's fields, each
    /// length-prefixed (`docs/protocol.md` §9.2).
    #[serde(with = "serde_bytes")]
    pub mac: Vec<u8>,
}

/// Waiting for the peer's [`PakeMessage`].
#[must_use = "the PAKE goes on with the peer's message"]
pub struct AwaitPake {
    role: CodeRole,
    spake: Spake2<Ed25519Group>,
}

impl std::fmt::Debug for AwaitPake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwaitPake").field("role", &self.role).finish_non_exhaustive()
    }
}

/// Starts the PAKE on `code` as `role`; send the returned message to the peer.
pub fn start(code: &TransferCode, role: CodeRole) -> (AwaitPake, PakeMessage) {
    start_with_rng(code, role, rand_core::OsRng)
}

/// [`start`] drawing its secret scalar (64 bytes, reduced mod the group order) from
/// `rng`; fixed randomness makes test vectors that other implementations reproduce.
pub fn start_with_rng(
    code: &TransferCode,
    role: CodeRole,
    rng: impl rand_core::CryptoRng + rand_core::RngCore,
) -> (AwaitPake, PakeMessage) {
    let (spake, message) = Spake2::<Ed25519Group>::start_symmetric_with_rng(
        &Password::new(code.password()),
        &Identity::new(PAKE_IDENTITY),
        rng,
    );
    (AwaitPake { role, spake }, PakeMessage(message))
}

impl AwaitPake {
    /// Takes the peer's element; returns the state waiting for its `Confirm` and this
    /// side's `Confirm` for `own` to send.
    pub fn receive(self, peer: &PakeMessage, own: &DeviceInfo) -> Result<(AwaitConfirm, Confirm), TransferError> {
        if peer.0.len() != PAKE_MESSAGE_LEN {
            return Err(TransferError::Protocol(format!(
                "PAKE message of {} bytes, expected {PAKE_MESSAGE_LEN}",
                peer.0.len()
            )));
        }
        let key = self.spake.finish(&peer.0).map_err(|e| TransferError::Protocol(format!("PAKE message: {e}")))?;
        let confirm = Confirm { device: own.clone(), mac: confirmation(&key, self.role).mac(own) };
        Ok((AwaitConfirm { role: self.role, key }, confirm))
    }
}

/// Waiting for the peer's [`Confirm`].
#[must_use = "the PAKE ends with the peer's Confirm"]
pub struct AwaitConfirm {
    role: CodeRole,
    key: Vec<u8>,
}

impl std::fmt::Debug for AwaitConfirm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwaitConfirm").field("role", &self.role).finish_non_exhaustive()
    }
}

impl AwaitConfirm {
    /// Checks the peer's `Confirm`: on success, the peer's device is the one that knows
    /// the code. A wrong MAC is [`TransferError::WrongCode`].
    pub fn receive(self, confirm: &Confirm) -> Result<DeviceInfo, TransferError> {
        let mut mac = confirmation(&self.key, self.role.peer());
        mac.update(&mac_input(&confirm.device));
        mac.verify_slice(&confirm.mac).map_err(|_| TransferError::WrongCode)?;
        confirm.device.validate().map_err(|e| TransferError::Protocol(format!("confirmed device: {e}")))?;
        Ok(confirm.device.clone())
    }
}

struct Confirmation(Hmac<Sha256>);

impl Confirmation {
    fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn verify_slice(self, tag: &[u8]) -> Result<(), hmac::digest::MacError> {
        self.0.verify_slice(tag)
    }

    fn mac(mut self, device: &DeviceInfo) -> Vec<u8> {
        self.update(&mac_input(device));
        self.0.finalize().into_bytes().to_vec()
    }
}

/// The confirmation MAC of `role` under the PAKE key.
fn confirmation(key: &[u8], role: CodeRole) -> Confirmation {
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8,160-byte maximum, so expand cannot fail.
    let _ = Hkdf::<Sha256>::new(None, key).expand(role.label(), &mut okm);
    // HMAC takes a key of any length.
    Confirmation(<Hmac<Sha256> as Mac>::new_from_slice(&okm).unwrap_or_else(|_| unreachable!("HMAC takes any key")))
}

/// The bytes a `Confirm` MAC covers: every field of the device, each length-prefixed.
fn mac_input(device: &DeviceInfo) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut field = |bytes: &[u8]| {
        out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    field(device.user_id.as_bytes());
    field(device.device_id.as_bytes());
    field(&device.signing_key);
    field(&device.static_key);
    for address in &device.addresses {
        field(address.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use peers_sdk::DeviceKeys;

    use super::*;

    fn device(name: &str) -> DeviceInfo {
        DeviceKeys::generate(name).unwrap().info(vec!["http://10.0.0.1:7700/".into()]).unwrap()
    }

    /// Runs both sides with their own codes; returns what each side concluded.
    fn run(
        creator_code: &str,
        joiner_code: &str,
    ) -> (Result<DeviceInfo, TransferError>, Result<DeviceInfo, TransferError>) {
        let (alice, bob) = (device("alice"), device("bob"));
        let (a, a_msg) = start(&creator_code.parse().unwrap(), CodeRole::Creator);
        let (b, b_msg) = start(&joiner_code.parse().unwrap(), CodeRole::Joiner);
        let (a, a_confirm) = a.receive(&b_msg, &alice).unwrap();
        let (b, b_confirm) = b.receive(&a_msg, &bob).unwrap();
        (a.receive(&b_confirm), b.receive(&a_confirm))
    }

    #[test]
    fn the_same_code_confirms_both_devices() {
        let (a, b) = run("7-maple-orbit", "7-maple-orbit");
        assert_eq!(a.unwrap().user_id, "bob");
        assert_eq!(b.unwrap().user_id, "alice");
    }

    #[test]
    fn a_wrong_code_fails_on_both_sides() {
        for wrong in ["7-maple-otter", "8-maple-orbit"] {
            let (a, b) = run("7-maple-orbit", wrong);
            assert!(matches!(a, Err(TransferError::WrongCode)), "{a:?}");
            assert!(matches!(b, Err(TransferError::WrongCode)), "{b:?}");
        }
    }

    #[test]
    fn a_substituted_device_or_a_reflected_confirm_is_refused() {
        let code: TransferCode = "7-maple-orbit".parse().unwrap();
        let (alice, bob) = (device("alice"), device("bob"));
        // The server swaps the joiner's device for its own, keeping the MAC.
        let (b, b_msg) = start(&code, CodeRole::Joiner);
        let (a, a_msg) = start(&code, CodeRole::Creator);
        let (_, mut b_confirm) = b.receive(&a_msg, &bob).unwrap();
        b_confirm.device = device("mallory");
        let (a, _) = a.receive(&b_msg, &alice).unwrap();
        assert!(matches!(a.receive(&b_confirm), Err(TransferError::WrongCode)));

        // The creator's own Confirm sent back to it as if it were the joiner's.
        let (a, a_confirm) = start(&code, CodeRole::Creator).0.receive(&b_msg, &alice).unwrap();
        assert!(matches!(a.receive(&a_confirm), Err(TransferError::WrongCode)));
    }

    #[test]
    fn a_malformed_element_is_a_protocol_error() {
        let code: TransferCode = "7-maple-orbit".parse().unwrap();
        for bytes in [vec![], vec![0u8; 32], vec![0u8; 34], vec![0xffu8; 33]] {
            let (a, _) = start(&code, CodeRole::Creator);
            assert!(matches!(a.receive(&PakeMessage(bytes), &device("a")), Err(TransferError::Protocol(_))));
        }
    }
}
