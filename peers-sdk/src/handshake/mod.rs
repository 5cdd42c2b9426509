//! The mutual-authentication handshake: Noise `XX` with static-key certificates.
//!
//! A sans-IO state machine: it turns bytes into bytes and takes the time as an
//! argument. [`Connection`](crate::Connection) drives it over a [`Socket`](crate::Socket).
//! Each state is its own type and is consumed by the step that leaves it, so an
//! out-of-order step does not compile.
//!
//! # Protocol
//!
//! `Noise_XX_25519_ChaChaPoly_SHA256`, prologue `"peers/v1" || binding`, three
//! messages, each a socket frame that starts with a one-byte tag:
//!
//! ```text
//!  initiator                                                  responder
//!  [0x01] e, Hello{v=2, ts, binding digest}               ──▶   check version, binding digest,
//!                                                               timestamp, replay guard
//!                                                         ◀──   [0x02] e, ee, s, es,
//!  check e ≠ our e (reflection), decrypt,                       {claim_R, cert_R}
//!  device id, static key, cert_R, timestamp,
//!  not ourselves, expected peer, trust ≥ floor
//!  [0x03] s, se, {claim_I, cert_I}                         ──▶   decrypt, device id, …, cert_I, trust
//! ```
//!
//! A certificate (ADR 0006; `docs/protocol.md` §2, "Static-key certificate") is the
//! device's ed25519 signature over its user id, device id, signing key and x25519
//! static key, made once per [`DeviceKeys`]. Noise's `es` (message 2) and `se`
//! (message 3) prove that the sender holds the static key's secret: the payload only
//! decrypts if it does. The rest of the claim (timestamp, AEAD choice, addresses) is
//! authenticated by that same encryption, bound to the transcript hash. Verified
//! certificates are cached ([`CERTIFICATE_CACHE_CAPACITY`]), so a known peer costs no
//! signature check. A static key that is the signing key's own Montgomery form (as
//! [`DeviceKeys::generate`] derives it, ADR 0008) needs no certificate at all: proving
//! its secret proves the signing key's, so a first contact costs no signature check
//! either.
//!
//! | check | attack it stops |
//! |---|---|
//! | `ee`, `es`, `se` key agreement with fresh ephemerals | eavesdropping; forward secrecy once ephemerals are erased; replayed messages 2 and 3 |
//! | payload decrypts after `es` / `se` | a sender that does not hold the static key it shows; any altered claim byte |
//! | certificate over the static key, `verify_strict` (unless the static key is the signing key's Montgomery form) | an identity claimed for someone else's x25519 key |
//! | `static_key` in the claim equals the Noise static | a certificate shown for another static key |
//! | `device_id` derived from `signing_key` | claiming another device's id |
//! | our own ephemeral coming back | reflection of message 1 |
//! | timestamp window and [`ReplayGuard`] | replay of an old message 1 |
//! | version in the Hello (in the transcript) | an old peer mistaken for a bad signature; a version downgrade |
//! | channel binding in the prologue | a man in the middle between two DTLS/TLS endpoints |
//! | device id ≠ ours | connecting to ourselves |
//! | expected device id | being redirected to another (trusted) device |
//! | trust floor | authenticated but unwelcome peers |
//!
//! After message 3 both sides [`split`](Session) the chaining key into one key per
//! direction. The AEAD layer is skipped only when the transport is confidential, a
//! channel binding was mixed into the prologue and both sides asked to skip.
//!
//! The transport frames' AEAD is negotiated: the Hello lists the initiator's
//! ciphers, the responder's claim names its choice ([`TransportCipher`],
//! ADR 0003). The offer is in `h1`, so a downgrade on the way fails message 2.

mod certificate;
mod cipher;
mod noise;
mod payload;
mod replay;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use rand_core::CryptoRngCore;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

pub use certificate::CERTIFICATE_CACHE_CAPACITY;
pub(crate) use certificate::certificate_text;
pub use cipher::TransportCipher;
pub(crate) use noise::nonce_bytes;
pub use payload::PROTOCOL_VERSION;
pub use replay::ReplayGuard;

use self::noise::{LEN, SymmetricState, TAG_LEN, dh};
use self::payload::{Hello, IdentityClaim, check_timestamp, open_claim, prologue, seal_claim};
use crate::error::{Error, HandshakeError, decode_msgpack, encode_msgpack};
use crate::identity::{DeviceId, DeviceInfo, DeviceKeys};
use crate::socket::TransportSecurity;
use crate::trust::TrustLevel;

/// Tag byte of handshake message 1.
pub const TAG_HELLO: u8 = 0x01;
/// Tag byte of handshake message 2.
pub const TAG_RESPONSE: u8 = 0x02;
/// Tag byte of handshake message 3.
pub const TAG_FINISH: u8 = 0x03;
/// Largest handshake message accepted, in bytes.
pub const MAX_HANDSHAKE_MESSAGE: usize = 8 * 1024;

/// What one side brings to a handshake.
#[derive(Clone, Debug)]
pub struct HandshakeConfig {
    /// This device's keys.
    pub keys: Arc<DeviceKeys>,
    /// Addresses to advertise in our [`DeviceInfo`].
    pub addresses: Vec<String>,
    /// How far a peer's clock may be from ours.
    pub timestamp_window: Duration,
    /// Skip our own AEAD layer when the transport's encryption is bound into the
    /// handshake. Both sides must agree; otherwise frames are sealed.
    pub skip_aead_when_bound: bool,
    /// The AEADs we accept for transport frames, our preference first; must not be
    /// empty. Default: [`TransportCipher::preferred`] (AES-256-GCM first where the
    /// CPU accelerates it). Set it to `[ChaCha20Poly1305]` to never use AES-GCM.
    pub ciphers: Vec<TransportCipher>,
}

impl HandshakeConfig {
    /// Defaults: a 5-minute timestamp window, no advertised addresses, and the
    /// AEAD layer skipped on bound transports.
    pub fn new(keys: Arc<DeviceKeys>) -> Self {
        HandshakeConfig {
            keys,
            addresses: Vec::new(),
            timestamp_window: Duration::from_secs(300),
            skip_aead_when_bound: true,
            ciphers: TransportCipher::preferred(),
        }
    }

    fn check_ciphers(&self) -> Result<(), Error> {
        if self.ciphers.is_empty() {
            return Err(Error::InvalidInput { what: "HandshakeConfig::ciphers", detail: "the list is empty".into() });
        }
        Ok(())
    }

    fn window_ms(&self) -> u64 {
        u64::try_from(self.timestamp_window.as_millis()).unwrap_or(u64::MAX)
    }

    fn claim(&self, security: &TransportSecurity, now: u64) -> Result<IdentityClaim, Error> {
        Ok(IdentityClaim {
            info: self.keys.info(self.addresses.clone())?,
            ts: now,
            skip_aead: self.skip_aead_when_bound && security.confidential && security.channel_binding.is_some(),
            aead: None,
        })
    }
}

/// Which side of the handshake a device played.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Sent message 1 (dialed).
    Initiator,
    /// Answered (accepted).
    Responder,
}

/// The result of a completed handshake.
pub struct Session {
    /// The authenticated peer.
    pub remote: DeviceInfo,
    /// The trust level the policy gave it.
    pub trust: TrustLevel,
    /// The final Noise handshake hash: a unique id of this session that both sides
    /// share.
    pub handshake_hash: [u8; 32],
    /// Which side we were.
    pub role: Role,
    /// Whether frames are sealed with our AEAD (false only on bound, confidential
    /// transports where both sides agreed).
    pub encrypted: bool,
    /// The AEAD negotiated for transport frames (unused when `encrypted` is false).
    pub cipher: TransportCipher,
    pub(crate) send_key: Zeroizing<[u8; 32]>,
    pub(crate) recv_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("remote", &self.remote.device_id)
            .field("trust", &self.trust)
            .field("role", &self.role)
            .field("encrypted", &self.encrypted)
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

fn split_tag(frame: &[u8], expected: u8, message: u8) -> Result<&[u8], HandshakeError> {
    if frame.len() > MAX_HANDSHAKE_MESSAGE {
        return Err(HandshakeError::Malformed { message, detail: format!("{} bytes is too long", frame.len()) });
    }
    match frame.split_first() {
        Some((&tag, rest)) if tag == expected => Ok(rest),
        Some((&tag, _)) => Err(HandshakeError::Malformed { message, detail: format!("unexpected tag {tag:#04x}") }),
        None => Err(HandshakeError::Malformed { message, detail: "empty frame".into() }),
    }
}

fn take<'a>(input: &mut &'a [u8], n: usize, message: u8) -> Result<&'a [u8], HandshakeError> {
    if input.len() < n {
        return Err(HandshakeError::Malformed {
            message,
            detail: format!("need {n} more bytes, have {}", input.len()),
        });
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn key32(bytes: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 32];
    k.copy_from_slice(bytes);
    k
}

/// The initiator, before it has sent anything.
#[derive(Debug)]
pub struct Initiator;

impl Initiator {
    /// Starts a handshake: returns message 1 and the state that waits for message 2.
    ///
    /// `expected` is the device we mean to reach, if we know it; any other device
    /// answering is refused.
    pub fn start(
        config: HandshakeConfig,
        security: &TransportSecurity,
        expected: Option<DeviceId>,
        now: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(ExpectResponse, Vec<u8>), Error> {
        config.check_ciphers()?;
        let (prologue, binding) = prologue(security.channel_binding.as_ref(), true);
        let mut symmetric = SymmetricState::new(&prologue);
        let ephemeral = StaticSecret::random_from_rng(rng);
        let e_pub = PublicKey::from(&ephemeral).to_bytes();
        let hello = encode_msgpack(
            "hello",
            &Hello { v: PROTOCOL_VERSION, ts: now, binding, aeads: Some(cipher::encode_offer(&config.ciphers)) },
        )?;
        let mut out = vec![TAG_HELLO];
        out.extend_from_slice(&e_pub);
        symmetric.mix_hash(&e_pub);
        out.extend_from_slice(&symmetric.encrypt_and_hash(&hello));
        let claim = config.claim(security, now)?;
        Ok((ExpectResponse { config, claim, symmetric, ephemeral, e_pub, expected }, out))
    }
}

/// The initiator, waiting for message 2.
pub struct ExpectResponse {
    config: HandshakeConfig,
    claim: IdentityClaim,
    symmetric: SymmetricState,
    ephemeral: StaticSecret,
    e_pub: [u8; 32],
    expected: Option<DeviceId>,
}

impl std::fmt::Debug for ExpectResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpectResponse").field("expected", &self.expected).finish_non_exhaustive()
    }
}

impl ExpectResponse {
    /// Reads message 2 and authenticates the responder. The trust decision comes
    /// next, in [`VerifyPeer::finish`].
    pub fn read(mut self, frame: &[u8], now: u64) -> Result<VerifyPeer<Initiating>, HandshakeError> {
        // Our own message 1 coming back, whatever its tag, is a reflection.
        if frame.get(1..1 + LEN) == Some(self.e_pub.as_slice()) {
            return Err(HandshakeError::Reflected);
        }
        let mut input = split_tag(frame, TAG_RESPONSE, 2)?;
        let re = key32(take(&mut input, LEN, 2)?);
        let s = &mut self.symmetric;
        s.mix_hash(&re);
        s.mix_key(dh(&self.ephemeral, &re)?.as_slice());
        let rs = key32(&s.decrypt_and_hash(take(&mut input, LEN + TAG_LEN, 2)?, 2)?);
        s.mix_key(dh(&self.ephemeral, &rs)?.as_slice());
        let payload = s.decrypt_and_hash(input, 2)?;
        let remote = open_claim(&payload, &rs, 2)?;
        let cipher = cipher::accept_choice(remote.aead, &self.config.ciphers)?;
        check_peer(&self.config, &remote, now, self.expected)?;
        Ok(VerifyPeer { remote, state: Initiating { inner: self, re, cipher } })
    }
}

/// The responder, waiting for message 1.
pub struct Responder {
    config: HandshakeConfig,
    claim: IdentityClaim,
    symmetric: SymmetricState,
    binding: Option<Vec<u8>>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

impl Responder {
    /// Prepares to answer a handshake on a socket with `security`.
    pub fn new(config: HandshakeConfig, security: &TransportSecurity, now: u64) -> Result<Self, Error> {
        config.check_ciphers()?;
        let (prologue, binding) = prologue(security.channel_binding.as_ref(), false);
        let claim = config.claim(security, now)?;
        Ok(Responder { config, claim, symmetric: SymmetricState::new(&prologue), binding })
    }

    /// Makes message 2 claim `info` (hostile-input tests only).
    #[cfg(test)]
    pub(crate) fn forge_info_for_tests(&mut self, info: DeviceInfo) {
        self.claim.info = info;
    }

    /// Reads message 1 and writes message 2.
    ///
    /// `guard` remembers first messages across handshakes; share one per listener.
    pub fn read_hello(
        mut self,
        frame: &[u8],
        now: u64,
        guard: &mut ReplayGuard,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(ExpectFinish, Vec<u8>), Error> {
        let mut input = split_tag(frame, TAG_HELLO, 1)?;
        let re = key32(take(&mut input, LEN, 1)?);
        let s = &mut self.symmetric;
        s.mix_hash(&re);
        let hello: Hello = decode_msgpack("hello", &s.decrypt_and_hash(input, 1)?)
            .map_err(|e| HandshakeError::Malformed { message: 1, detail: e.to_string() })?;
        if hello.v != PROTOCOL_VERSION {
            return Err(HandshakeError::UnsupportedVersion(hello.v).into());
        }
        if hello.binding != self.binding {
            return Err(HandshakeError::ChannelBindingMismatch.into());
        }
        check_timestamp(hello.ts, now, self.config.window_ms())?;
        guard.check(&re, now)?;
        let cipher = cipher::choose(hello.aeads.as_deref(), &self.config.ciphers)?;

        let ephemeral = StaticSecret::random_from_rng(rng);
        let e_pub = PublicKey::from(&ephemeral).to_bytes();
        let mut out = vec![TAG_RESPONSE];
        out.extend_from_slice(&e_pub);
        s.mix_hash(&e_pub);
        s.mix_key(dh(&ephemeral, &re)?.as_slice());
        out.extend_from_slice(&s.encrypt_and_hash(self.config.keys.static_public().as_bytes()));
        s.mix_key(dh(self.config.keys.static_secret(), &re)?.as_slice());
        self.claim.ts = now;
        self.claim.aead = Some(cipher.id());
        let signed = seal_claim(&self.config.keys, &self.claim)?;
        out.extend_from_slice(&self.symmetric.encrypt_and_hash(&signed));
        Ok((ExpectFinish { responder: self, ephemeral, cipher }, out))
    }
}

/// The responder, waiting for message 3.
pub struct ExpectFinish {
    responder: Responder,
    ephemeral: StaticSecret,
    cipher: TransportCipher,
}

impl std::fmt::Debug for ExpectFinish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpectFinish").finish_non_exhaustive()
    }
}

impl ExpectFinish {
    /// Reads message 3 and authenticates the initiator. The trust decision comes
    /// next, in [`VerifyPeer::finish`].
    pub fn read(mut self, frame: &[u8], now: u64) -> Result<VerifyPeer<Responding>, HandshakeError> {
        let mut input = split_tag(frame, TAG_FINISH, 3)?;
        let s = &mut self.responder.symmetric;
        let rs = key32(&s.decrypt_and_hash(take(&mut input, LEN + TAG_LEN, 3)?, 3)?);
        s.mix_key(dh(&self.ephemeral, &rs)?.as_slice());
        let payload = s.decrypt_and_hash(input, 3)?;
        let remote = open_claim(&payload, &rs, 3)?;
        check_peer(&self.responder.config, &remote, now, None)?;
        Ok(VerifyPeer { remote, state: Responding { inner: self } })
    }
}

fn check_peer(
    config: &HandshakeConfig,
    remote: &IdentityClaim,
    now: u64,
    expected: Option<DeviceId>,
) -> Result<(), HandshakeError> {
    if remote.info.device_id == config.keys.device_id() {
        return Err(HandshakeError::SelfConnection);
    }
    check_timestamp(remote.ts, now, config.window_ms())?;
    match expected {
        Some(expected) if expected != remote.info.device_id => {
            Err(HandshakeError::UnexpectedPeer { expected, actual: remote.info.device_id })
        }
        _ => Ok(()),
    }
}

fn check_trust(remote: &DeviceInfo, level: TrustLevel, floor: TrustLevel) -> Result<(), HandshakeError> {
    if level == TrustLevel::Untrusted || level < floor {
        return Err(HandshakeError::Untrusted { device: remote.device_id, level, floor });
    }
    Ok(())
}

/// A peer that proved its identity and waits for the trust decision.
#[derive(Debug)]
pub struct VerifyPeer<S> {
    remote: IdentityClaim,
    state: S,
}

impl<S> VerifyPeer<S> {
    /// The authenticated peer, for the trust policy to judge.
    pub fn remote(&self) -> &DeviceInfo {
        &self.remote.info
    }
}

/// [`VerifyPeer`] state on the initiator's side.
pub struct Initiating {
    inner: ExpectResponse,
    re: [u8; 32],
    cipher: TransportCipher,
}

impl std::fmt::Debug for Initiating {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiating").finish_non_exhaustive()
    }
}

/// [`VerifyPeer`] state on the responder's side.
pub struct Responding {
    inner: ExpectFinish,
}

impl std::fmt::Debug for Responding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responding").finish_non_exhaustive()
    }
}

impl VerifyPeer<Initiating> {
    /// Applies the trust decision; when it passes, writes message 3 and returns the
    /// session.
    pub fn finish(self, level: TrustLevel, floor: TrustLevel, now: u64) -> Result<(Vec<u8>, Session), Error> {
        check_trust(&self.remote.info, level, floor)?;
        let Initiating { inner, re, cipher } = self.state;
        let ExpectResponse { config, mut claim, mut symmetric, .. } = inner;
        let mut out = vec![TAG_FINISH];
        out.extend_from_slice(&symmetric.encrypt_and_hash(config.keys.static_public().as_bytes()));
        symmetric.mix_key(dh(config.keys.static_secret(), &re)?.as_slice());
        claim.ts = now;
        let signed = seal_claim(&config.keys, &claim)?;
        out.extend_from_slice(&symmetric.encrypt_and_hash(&signed));
        let (to_responder, to_initiator) = symmetric.split();
        let session = Session {
            encrypted: !(claim.skip_aead && self.remote.skip_aead),
            cipher,
            remote: self.remote.info,
            trust: level,
            handshake_hash: symmetric.handshake_hash(),
            role: Role::Initiator,
            send_key: to_responder,
            recv_key: to_initiator,
        };
        Ok((out, session))
    }
}

impl VerifyPeer<Responding> {
    /// Applies the trust decision and returns the session.
    pub fn finish(self, level: TrustLevel, floor: TrustLevel) -> Result<Session, HandshakeError> {
        check_trust(&self.remote.info, level, floor)?;
        let ExpectFinish { responder, cipher, .. } = self.state.inner;
        let (to_responder, to_initiator) = responder.symmetric.split();
        Ok(Session {
            encrypted: !(responder.claim.skip_aead && self.remote.skip_aead),
            cipher,
            remote: self.remote.info,
            trust: level,
            handshake_hash: responder.symmetric.handshake_hash(),
            role: Role::Responder,
            send_key: to_initiator,
            recv_key: to_responder,
        })
    }
}
