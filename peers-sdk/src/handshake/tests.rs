//! Handshake tests: full runs with a fake clock, tampering, and interop with the
//! `snow` crate (an independent Noise implementation).

use std::sync::Arc;

use proptest::prelude::*;
use rand_core::OsRng;

use super::*;
use crate::connection::seal::{FrameCipher, Opener, Sealer, for_session};
use crate::socket::ChannelBinding;

const NOW: u64 = 1_800_000_000_000;

fn keys(user: &str) -> Arc<DeviceKeys> {
    Arc::new(DeviceKeys::generate(user).unwrap())
}

/// Fresh keys as a key file written before ADR 0008 holds them: a static secret that
/// is not the signing key's scalar, so peers verify the certificate.
fn older_keys(user: &str) -> Arc<DeviceKeys> {
    use rand_core::RngCore;
    let (mut seed, mut secret) = ([0u8; 32], [0u8; 32]);
    OsRng.fill_bytes(&mut seed);
    OsRng.fill_bytes(&mut secret);
    Arc::new(DeviceKeys::from_secrets(user, seed, secret).unwrap())
}

fn plain() -> TransportSecurity {
    TransportSecurity::default()
}

/// Runs a whole handshake; the responder's clock is `skew` ms ahead.
fn run(
    alice: &Arc<DeviceKeys>,
    bob: &Arc<DeviceKeys>,
    sec_a: &TransportSecurity,
    sec_b: &TransportSecurity,
    skew: i64,
) -> Result<(Session, Session), Error> {
    let configs = (HandshakeConfig::new(alice.clone()), HandshakeConfig::new(bob.clone()));
    run_with(configs, sec_a, sec_b, skew, |m1| m1)
}

/// [`run`] with explicit configs; `wire` may rewrite message 1 on its way.
fn run_with(
    (config_a, config_b): (HandshakeConfig, HandshakeConfig),
    sec_a: &TransportSecurity,
    sec_b: &TransportSecurity,
    skew: i64,
    wire: impl FnOnce(Vec<u8>) -> Vec<u8>,
) -> Result<(Session, Session), Error> {
    let (alice, bob) = (config_a.keys.device_id(), config_b.keys.device_id());
    let later = NOW.saturating_add_signed(skew);
    let mut guard = ReplayGuard::new(300_000, 16);
    let (state, m1) = Initiator::start(config_a, sec_a, None, NOW, &mut OsRng)?;
    let responder = Responder::new(config_b, sec_b, later)?;
    let (expect_finish, m2) = responder.read_hello(&wire(m1), later, &mut guard, &mut OsRng)?;
    let verify = state.read(&m2, NOW)?;
    assert_eq!(verify.remote().device_id, bob);
    let (m3, a) = verify.finish(TrustLevel::Trusted, TrustLevel::Known, NOW)?;
    let verify = expect_finish.read(&m3, later)?;
    assert_eq!(verify.remote().device_id, alice);
    let b = verify.finish(TrustLevel::Known, TrustLevel::Known)?;
    Ok((a, b))
}

#[test]
fn both_sides_agree_on_keys_and_hash() {
    let (alice, bob) = (keys("alice"), keys("bob"));
    let (a, b) = run(&alice, &bob, &plain(), &plain(), 0).unwrap();
    assert_eq!(a.handshake_hash, b.handshake_hash);
    assert_eq!(*a.send_key, *b.recv_key);
    assert_eq!(*a.recv_key, *b.send_key);
    assert_ne!(*a.send_key, *a.recv_key);
    assert!(a.encrypted && b.encrypted);
    assert_eq!((a.role, b.role), (Role::Initiator, Role::Responder));
}

fn bound(local: &[u8], remote: &[u8]) -> TransportSecurity {
    TransportSecurity {
        confidential: true,
        channel_binding: Some(ChannelBinding {
            kind: "dtls-sha256-fingerprints".into(),
            local: local.to_vec(),
            remote: remote.to_vec(),
        }),
    }
}

#[test]
fn bound_transport_skips_aead_and_mismatched_binding_is_refused() {
    let (alice, bob) = (keys("alice"), keys("bob"));
    let (a, b) = run(&alice, &bob, &bound(b"fp-a", b"fp-b"), &bound(b"fp-b", b"fp-a"), 0).unwrap();
    assert!(!a.encrypted && !b.encrypted, "bound, confidential transport should skip the second AEAD");
    // A man in the middle terminates DTLS on each side: each sees his fingerprint.
    let err = run(&alice, &bob, &bound(b"fp-a", b"fp-mitm"), &bound(b"fp-b", b"fp-mitm2"), 0).unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::ChannelBindingMismatch)), "{err}");
    // Binding on one side only is a mismatch too.
    let err = run(&alice, &bob, &bound(b"fp-a", b"fp-b"), &plain(), 0).unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::ChannelBindingMismatch)), "{err}");
    // Not confidential: bound but still encrypted by us.
    let mut weak = bound(b"fp-a", b"fp-b");
    weak.confidential = false;
    let mut weak_b = bound(b"fp-b", b"fp-a");
    weak_b.confidential = false;
    let (a, _) = run(&alice, &bob, &weak, &weak_b, 0).unwrap();
    assert!(a.encrypted);
}

#[test]
fn self_connection_is_refused() {
    let alice = keys("alice");
    let err = run(&alice, &alice, &plain(), &plain(), 0).unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::SelfConnection)), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// With a fake clock: a handshake succeeds exactly when the skew is inside
    /// the window.
    #[test]
    fn timestamp_window_is_enforced(skew in -600_000i64..600_000) {
        let (alice, bob) = (keys("alice"), keys("bob"));
        let result = run(&alice, &bob, &plain(), &plain(), skew);
        if skew.unsigned_abs() <= 300_000 {
            prop_assert!(result.is_ok(), "skew {} refused: {:?}", skew, result.err());
        } else {
            let stale = matches!(result, Err(Error::Handshake(HandshakeError::StaleTimestamp { .. })));
            prop_assert!(stale);
        }
    }

    /// Flipping any byte of any message makes the handshake fail, never succeed
    /// with altered content, and never panic.
    #[test]
    fn any_tampering_fails(which in 0usize..3, at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (alice, bob) = (keys("alice"), keys("bob"));
        let mut guard = ReplayGuard::new(300_000, 16);
        let (state, mut m1) = Initiator::start(HandshakeConfig::new(alice.clone()), &plain(), None, NOW, &mut OsRng).unwrap();
        if which == 0 { let i = at.index(m1.len()); m1[i] ^= 1 << bit; }
        let responder = Responder::new(HandshakeConfig::new(bob.clone()), &plain(), NOW).unwrap();
        let Ok((expect_finish, mut m2)) = responder.read_hello(&m1, NOW, &mut guard, &mut OsRng) else {
            prop_assert_eq!(which, 0); return Ok(());
        };
        if which == 1 { let i = at.index(m2.len()); m2[i] ^= 1 << bit; }
        let Ok(verify) = state.read(&m2, NOW) else { prop_assert!(which <= 1); return Ok(()); };
        let (mut m3, _) = verify.finish(TrustLevel::Trusted, TrustLevel::Known, NOW).unwrap();
        if which == 2 { let i = at.index(m3.len()); m3[i] ^= 1 << bit; }
        let outcome = expect_finish.read(&m3, NOW);
        prop_assert!(outcome.is_err(), "tampered message {} at byte {} was accepted", which + 1, at.index(1000));
    }
}

// ---- interop with snow --------------------------------------------------------

const NOISE: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

fn snow_builder(keys: &DeviceKeys) -> snow::Builder<'static> {
    let prologue: &'static [u8] = Box::leak(payload::prologue(None, true).0.into_boxed_slice());
    let secret: &'static [u8] = Box::leak(Box::new(keys.static_secret().to_bytes()));
    snow::Builder::new(NOISE.parse().unwrap()).local_private_key(secret).unwrap().prologue(prologue).unwrap()
}

fn tagged(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(body);
    v
}

fn claim_of(keys: &DeviceKeys) -> payload::IdentityClaim {
    payload::IdentityClaim { info: keys.info(vec![]).unwrap(), ts: NOW, skip_aead: false, aead: None }
}

/// Our transport keys must be Noise's: a frame we seal opens in snow's transport
/// mode and the other way round.
fn check_transport(session: &Session, mut snow: snow::TransportState) {
    // The peer did not negotiate, so the transport stays Noise's ChaChaPoly.
    assert_eq!(session.cipher, TransportCipher::ChaCha20Poly1305);
    let chacha = |key| Some(FrameCipher::new(TransportCipher::ChaCha20Poly1305, key));
    let mut sealer = Sealer::new(chacha(&session.send_key));
    let mut frame = bytes::BytesMut::from(&[0u8; 8][..]);
    frame.extend_from_slice(b"from us");
    let sealed = sealer.seal(frame).unwrap();
    let mut out = [0u8; 64];
    let n = snow.read_message(&sealed[8..], &mut out).unwrap();
    assert_eq!(&out[..n], b"from us");

    let n = snow.write_message(b"from snow", &mut out).unwrap();
    let mut framed = 0u64.to_be_bytes().to_vec();
    framed.extend_from_slice(&out[..n]);
    let mut opener = Opener::new(chacha(&session.recv_key));
    assert_eq!(&opener.open(framed.into()).unwrap()[..], b"from snow");
}

#[test]
fn our_initiator_completes_a_handshake_with_snow() {
    let (alice, bob) = (keys("alice"), keys("bob"));
    let mut snow = snow_builder(&bob).build_responder().unwrap();
    let mut buf = vec![0u8; 4096];

    let (state, m1) = Initiator::start(HandshakeConfig::new(alice.clone()), &plain(), None, NOW, &mut OsRng).unwrap();
    let n = snow.read_message(&m1[1..], &mut buf).unwrap();
    let hello: payload::Hello = crate::error::decode_msgpack("hello", &buf[..n]).unwrap();
    assert_eq!(hello.v, PROTOCOL_VERSION);

    let p2 = payload::seal_claim(&bob, &claim_of(&bob)).unwrap();
    let n = snow.write_message(&p2, &mut buf).unwrap();
    let verify = state.read(&tagged(TAG_RESPONSE, &buf[..n]), NOW).unwrap();
    assert_eq!(verify.remote().device_id, bob.device_id());
    let (m3, session) = verify.finish(TrustLevel::Trusted, TrustLevel::Known, NOW).unwrap();

    let n = snow.read_message(&m3[1..], &mut buf).unwrap();
    let remote_static: [u8; 32] = snow.get_remote_static().unwrap().try_into().unwrap();
    let claim = payload::open_claim(&buf[..n], &remote_static, 3).unwrap();
    assert_eq!(claim.info.device_id, alice.device_id());
    assert_eq!(snow.get_handshake_hash(), session.handshake_hash);
    check_transport(&session, snow.into_transport_mode().unwrap());
}

#[test]
fn snow_initiator_completes_a_handshake_with_our_responder() {
    let (alice, bob) = (keys("alice"), keys("bob"));
    let mut snow = snow_builder(&alice).build_initiator().unwrap();
    let mut buf = vec![0u8; 4096];
    let mut guard = ReplayGuard::new(300_000, 16);

    let hello =
        encode_msgpack("hello", &payload::Hello { v: PROTOCOL_VERSION, ts: NOW, binding: None, aeads: None }).unwrap();
    let n = snow.write_message(&hello, &mut buf).unwrap();
    let responder = Responder::new(HandshakeConfig::new(bob.clone()), &plain(), NOW).unwrap();
    let (expect_finish, m2) = responder.read_hello(&tagged(TAG_HELLO, &buf[..n]), NOW, &mut guard, &mut OsRng).unwrap();

    let n = snow.read_message(&m2[1..], &mut buf).unwrap();
    let remote_static: [u8; 32] = snow.get_remote_static().unwrap().try_into().unwrap();
    let claim = payload::open_claim(&buf[..n], &remote_static, 2).unwrap();
    assert_eq!(claim.info.device_id, bob.device_id());

    let p3 = payload::seal_claim(&alice, &claim_of(&alice)).unwrap();
    let n = snow.write_message(&p3, &mut buf).unwrap();
    let verify = expect_finish.read(&tagged(TAG_FINISH, &buf[..n]), NOW).unwrap();
    assert_eq!(verify.remote().device_id, alice.device_id());
    let session = verify.finish(TrustLevel::Known, TrustLevel::Known).unwrap();
    assert_eq!(snow.get_handshake_hash(), session.handshake_hash);
    check_transport(&session, snow.into_transport_mode().unwrap());
}

// ---- transport cipher negotiation (ADR 0003) ------------------------------------

const BOTH: [TransportCipher; 2] = [TransportCipher::Aes256Gcm, TransportCipher::ChaCha20Poly1305];
const CHACHA: [TransportCipher; 1] = [TransportCipher::ChaCha20Poly1305];
const AES: [TransportCipher; 1] = [TransportCipher::Aes256Gcm];

fn configs(offer: &[TransportCipher], allowed: &[TransportCipher]) -> (HandshakeConfig, HandshakeConfig) {
    let mut initiator = HandshakeConfig::new(keys("alice"));
    initiator.ciphers = offer.to_vec();
    let mut responder = HandshakeConfig::new(keys("bob"));
    responder.ciphers = allowed.to_vec();
    (initiator, responder)
}

/// A frame sealed on each side opens on the other.
fn assert_frames_flow(a: &Session, b: &Session) {
    let (mut seal_a, mut open_a) = for_session(a);
    let (mut seal_b, mut open_b) = for_session(b);
    for (sealer, opener) in [(&mut seal_a, &mut open_b), (&mut seal_b, &mut open_a)] {
        let mut frame = bytes::BytesMut::from(&[0u8; 8][..]);
        frame.extend_from_slice(b"hello");
        assert_eq!(&opener.open(sealer.seal(frame).unwrap()).unwrap()[..], b"hello");
    }
}

#[test]
fn negotiation_prefers_aes_gcm_when_both_offer_it_and_falls_back_to_chacha() {
    use TransportCipher::{Aes256Gcm, ChaCha20Poly1305};
    let cases: [(&[TransportCipher], &[TransportCipher], TransportCipher); 6] = [
        (&BOTH, &BOTH, Aes256Gcm),
        (&CHACHA, &BOTH, ChaCha20Poly1305),
        (&BOTH, &CHACHA, ChaCha20Poly1305),
        (&AES, &AES, Aes256Gcm),
        // The responder's preference decides among what was offered.
        (&[ChaCha20Poly1305, Aes256Gcm], &BOTH, Aes256Gcm),
        (&BOTH, &[ChaCha20Poly1305, Aes256Gcm], ChaCha20Poly1305),
    ];
    for (offer, allowed, expected) in cases {
        let (a, b) = run_with(configs(offer, allowed), &plain(), &plain(), 0, |m1| m1).unwrap();
        assert_eq!((a.cipher, b.cipher), (expected, expected), "offer {offer:?}, responder allows {allowed:?}");
        assert_frames_flow(&a, &b);
    }
}

#[test]
fn default_preference_always_ends_with_chacha() {
    let preferred = TransportCipher::preferred();
    assert_eq!(preferred.last(), Some(&TransportCipher::ChaCha20Poly1305));
    assert_eq!(HandshakeConfig::new(keys("alice")).ciphers, preferred);
}

#[test]
fn no_common_cipher_or_an_empty_list_is_refused() {
    let err = run_with(configs(&CHACHA, &AES), &plain(), &plain(), 0, |m1| m1).unwrap_err();
    assert!(matches!(&err, Error::Handshake(HandshakeError::NoCommonCipher { offered }) if offered == &[1]), "{err}");
    for (offer, allowed) in [(&[][..], &BOTH[..]), (&BOTH[..], &[][..])] {
        let err = run_with(configs(offer, allowed), &plain(), &plain(), 0, |m1| m1).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    }
}

/// Rewrites the cipher offer of message 1, as a man in the middle would.
fn rewrite_offer(m1: Vec<u8>, offer: Option<Vec<u8>>) -> Vec<u8> {
    let (head, hello) = m1.split_at(1 + LEN);
    let mut hello: payload::Hello = crate::error::decode_msgpack("hello", hello).unwrap();
    assert_eq!(hello.aeads.as_deref(), Some(&[2, 1][..]), "the offer is readable in message 1");
    hello.aeads = offer;
    let mut out = head.to_vec();
    out.extend_from_slice(&encode_msgpack("hello", &hello).unwrap());
    out
}

#[test]
fn a_downgraded_offer_fails_the_handshake() {
    // Stripping AES-GCM, or the whole offer (posing as an older initiator): the
    // responder goes along and picks ChaCha20-Poly1305, but the offer is part of the
    // handshake hash, so the initiator cannot open message 2.
    for forged in [Some(vec![1]), None] {
        let err =
            run_with(configs(&BOTH, &BOTH), &plain(), &plain(), 0, |m1| rewrite_offer(m1, forged.clone())).unwrap_err();
        assert!(matches!(err, Error::Handshake(HandshakeError::DecryptFailed { message: 2 })), "{forged:?}: {err}");
    }
}

/// Our initiator offering `offer` reads a message 2 (written by snow, with our
/// payload) whose claim names `choice`.
fn initiator_given_choice(offer: &[TransportCipher], choice: Option<u8>) -> Result<TransportCipher, HandshakeError> {
    let (alice, bob) = (keys("alice"), keys("bob"));
    let mut snow = snow_builder(&bob).build_responder().unwrap();
    let mut buf = vec![0u8; 4096];
    let mut config = HandshakeConfig::new(alice);
    config.ciphers = offer.to_vec();
    let (state, m1) = Initiator::start(config, &plain(), None, NOW, &mut OsRng).unwrap();
    snow.read_message(&m1[1..], &mut buf).unwrap();
    let claim = payload::IdentityClaim { aead: choice, ..claim_of(&bob) };
    let n = snow.write_message(&payload::seal_claim(&bob, &claim).unwrap(), &mut buf).unwrap();
    let verify = state.read(&tagged(TAG_RESPONSE, &buf[..n]), NOW)?;
    let (_, session) = verify.finish(TrustLevel::Trusted, TrustLevel::Known, NOW).unwrap();
    Ok(session.cipher)
}

#[test]
fn unknown_or_unoffered_choices_are_refused() {
    assert_eq!(initiator_given_choice(&BOTH, Some(2)), Ok(TransportCipher::Aes256Gcm));
    assert_eq!(initiator_given_choice(&BOTH, None), Ok(TransportCipher::ChaCha20Poly1305), "an older responder");
    for id in [0, 3, 0x80, 0xff] {
        assert_eq!(initiator_given_choice(&BOTH, Some(id)), Err(HandshakeError::UnknownCipher { id }));
    }
    let cipher = TransportCipher::Aes256Gcm;
    assert_eq!(initiator_given_choice(&CHACHA, Some(2)), Err(HandshakeError::CipherNotOffered { cipher }));
    let cipher = TransportCipher::ChaCha20Poly1305;
    assert_eq!(initiator_given_choice(&AES, None), Err(HandshakeError::CipherNotOffered { cipher }));
}

/// Our responder allowing `allowed` answers a message 1 (written by snow) that
/// offers `offer`.
fn responder_given_offer(offer: Option<Vec<u8>>, allowed: &[TransportCipher]) -> Result<TransportCipher, Error> {
    let mut snow = snow_builder(&keys("alice")).build_initiator().unwrap();
    let mut buf = vec![0u8; 4096];
    let hello = payload::Hello { v: PROTOCOL_VERSION, ts: NOW, binding: None, aeads: offer };
    let n = snow.write_message(&encode_msgpack("hello", &hello).unwrap(), &mut buf).unwrap();
    let mut config = HandshakeConfig::new(keys("bob"));
    config.ciphers = allowed.to_vec();
    let responder = Responder::new(config, &plain(), NOW)?;
    let mut guard = ReplayGuard::new(300_000, 16);
    let (finish, _) = responder.read_hello(&tagged(TAG_HELLO, &buf[..n]), NOW, &mut guard, &mut OsRng)?;
    Ok(finish.cipher)
}

#[test]
fn offers_with_unknown_ids_are_read_safely() {
    // Unknown ids are skipped (room for future ciphers) ...
    assert_eq!(responder_given_offer(Some(vec![99, 2, 1]), &BOTH).unwrap(), TransportCipher::Aes256Gcm);
    // ... but an offer of nothing we know is refused, never a panic.
    for offer in [vec![0, 99, 255], vec![]] {
        let err = responder_given_offer(Some(offer.clone()), &BOTH).unwrap_err();
        assert!(
            matches!(&err, Error::Handshake(HandshakeError::NoCommonCipher { offered }) if offered == &offer),
            "{err}"
        );
    }
    let err = responder_given_offer(Some(vec![1; 17]), &BOTH).unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::Malformed { message: 1, .. })), "{err}");
}

// ---- static-key certificates (ADR 0006) ------------------------------------------

/// Our initiator reads a message 2 written by snow holding `mallory`'s static key,
/// whose payload shows `info` with the certificate `sig`.
fn initiator_reads_forged(mallory: &DeviceKeys, info: DeviceInfo, sig: [u8; 64]) -> Result<(), HandshakeError> {
    let mut snow = snow_builder(mallory).build_responder().unwrap();
    let mut buf = vec![0u8; 4096];
    let (state, m1) = Initiator::start(HandshakeConfig::new(keys("alice")), &plain(), None, NOW, &mut OsRng).unwrap();
    snow.read_message(&m1[1..], &mut buf).unwrap();
    let claim = payload::IdentityClaim { info, ts: NOW, skip_aead: false, aead: None };
    let signed = payload::SignedIdentity { claim: encode_msgpack("claim", &claim).unwrap(), sig };
    let n = snow.write_message(&encode_msgpack("signed", &signed).unwrap(), &mut buf).unwrap();
    state.read(&tagged(TAG_RESPONSE, &buf[..n]), NOW).map(|_| ())
}

#[test]
fn a_certificate_for_another_static_key_is_refused() {
    let (bob, mallory) = (keys("bob"), keys("mallory"));
    let bob_cert = bob.static_key_certificate();
    // Bob's genuine claim and certificate, replayed by Mallory, who holds another
    // static key: the key she proved in the DH is not the certified one.
    let err = initiator_reads_forged(&mallory, bob.info(vec![]).unwrap(), bob_cert).unwrap_err();
    assert!(matches!(err, HandshakeError::InconsistentIdentity(_)), "{err}");
    // Bob's identity with Mallory's static key put in: Bob's certificate does not
    // cover it.
    let mut forged = bob.info(vec![]).unwrap();
    forged.static_key = mallory.static_public().to_bytes();
    let err = initiator_reads_forged(&mallory, forged, bob_cert).unwrap_err();
    assert_eq!(err, HandshakeError::BadSignature { device: bob.device_id() });
    // Mallory's own certificate over her own identity is fine.
    initiator_reads_forged(&mallory, mallory.info(vec![]).unwrap(), mallory.static_key_certificate()).unwrap();
}

#[test]
fn a_cached_certificate_does_not_let_another_static_key_through() {
    // Bob's static key is not derived from his signing key (an older key file), so
    // his certificate is verified, and then remembered.
    let bob = older_keys("bob");
    let (alice, mallory) = (keys("alice"), keys("mallory"));
    let bob_cert = bob.static_key_certificate();
    run(&alice, &bob, &plain(), &plain(), 0).unwrap();
    assert!(certificate::cached(&bob.info(vec![]).unwrap(), &bob_cert), "a verified certificate is remembered");
    // Bob is now a known peer: a second handshake with him verifies no signature,
    // and still completes.
    run(&alice, &bob, &plain(), &plain(), 0).unwrap();

    let mut forged = bob.info(vec![]).unwrap();
    forged.static_key = mallory.static_public().to_bytes();
    for _ in 0..2 {
        let err = initiator_reads_forged(&mallory, forged.clone(), bob_cert).unwrap_err();
        assert_eq!(err, HandshakeError::BadSignature { device: bob.device_id() });
        assert!(!certificate::cached(&forged, &bob_cert), "a refused certificate is never remembered");
    }
    let err = initiator_reads_forged(&mallory, bob.info(vec![]).unwrap(), bob_cert).unwrap_err();
    assert!(matches!(err, HandshakeError::InconsistentIdentity(_)), "{err}");
}

#[test]
fn a_static_key_derived_from_the_signing_key_needs_no_certificate() {
    let (bob, mallory) = (keys("bob"), keys("mallory"));
    // Generated keys derive the static key: its public half is the signing key's
    // Montgomery form (ADR 0008).
    assert_eq!(bob.static_public().to_bytes(), bob.signing_public().to_montgomery().to_bytes());
    // Proving that static key in the DH proves the identity: the certificate is not
    // looked at (a wrong one passes, and nothing enters the cache).
    let info = bob.info(vec![]).unwrap();
    initiator_reads_forged(&bob, info.clone(), [7; 64]).unwrap();
    assert!(!certificate::cached(&info, &[7; 64]));
    // Without the secret, claiming that identity and static key fails in the DH's
    // authentication: Mallory cannot write a payload under Bob's static key.
    let err = initiator_reads_forged(&mallory, info, bob.static_key_certificate()).unwrap_err();
    assert!(matches!(err, HandshakeError::InconsistentIdentity(_)), "{err}");
}

#[test]
fn an_independent_static_key_from_an_older_key_file_is_certified() {
    let old = older_keys("carol");
    assert_ne!(old.static_public().to_bytes(), old.signing_public().to_montgomery().to_bytes());
    let info = old.info(vec![]).unwrap();
    let err = initiator_reads_forged(&old, info.clone(), [7; 64]).unwrap_err();
    assert_eq!(err, HandshakeError::BadSignature { device: old.device_id() });
    initiator_reads_forged(&old, info, old.static_key_certificate()).unwrap();
}

/// Message 2 of a fresh handshake from `bob` to `alice`, and the state that reads it.
fn fresh_messages(alice: &Arc<DeviceKeys>, bob: &Arc<DeviceKeys>) -> (ExpectResponse, Vec<u8>) {
    let (state, m1) = Initiator::start(HandshakeConfig::new(alice.clone()), &plain(), None, NOW, &mut OsRng).unwrap();
    let responder = Responder::new(HandshakeConfig::new(bob.clone()), &plain(), NOW).unwrap();
    let (_, m2) = responder.read_hello(&m1, NOW, &mut ReplayGuard::new(300_000, 16), &mut OsRng).unwrap();
    (state, m2)
}

#[test]
fn a_tampered_claim_fails_noise_authentication() {
    let (alice, bob) = (keys("alice"), keys("bob"));
    // A byte of message 2's or 3's encrypted claim (after the tag, e and the
    // encrypted s), whatever field it belongs to (ts, skip_aead, aead, addresses,
    // the certificate): the payload no longer decrypts.
    let m2_payload = 1 + LEN + LEN + TAG_LEN;
    let m3_payload = 1 + LEN + TAG_LEN;
    for offset in [0, 7, 40, 90, 150] {
        let (state, mut m2) = fresh_messages(&alice, &bob);
        m2[m2_payload + offset] ^= 0x01;
        assert_eq!(state.read(&m2, NOW).unwrap_err(), HandshakeError::DecryptFailed { message: 2 });

        let (state, m1) =
            Initiator::start(HandshakeConfig::new(alice.clone()), &plain(), None, NOW, &mut OsRng).unwrap();
        let responder = Responder::new(HandshakeConfig::new(bob.clone()), &plain(), NOW).unwrap();
        let (expect_finish, m2) =
            responder.read_hello(&m1, NOW, &mut ReplayGuard::new(300_000, 16), &mut OsRng).unwrap();
        let (mut m3, _) = state.read(&m2, NOW).unwrap().finish(TrustLevel::Trusted, TrustLevel::Known, NOW).unwrap();
        m3[m3_payload + offset] ^= 0x01;
        assert_eq!(expect_finish.read(&m3, NOW).unwrap_err(), HandshakeError::DecryptFailed { message: 3 });
    }
}

#[test]
fn a_version_1_peer_is_refused_as_unsupported() {
    // A version-1 initiator's Hello (snow writes it, as any Noise stack would).
    let mut snow = snow_builder(&keys("alice")).build_initiator().unwrap();
    let mut buf = vec![0u8; 4096];
    let hello = payload::Hello { v: 1, ts: NOW, binding: None, aeads: None };
    let n = snow.write_message(&encode_msgpack("hello", &hello).unwrap(), &mut buf).unwrap();
    let responder = Responder::new(HandshakeConfig::new(keys("bob")), &plain(), NOW).unwrap();
    let mut guard = ReplayGuard::new(300_000, 16);
    let err = responder.read_hello(&tagged(TAG_HELLO, &buf[..n]), NOW, &mut guard, &mut OsRng).unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::UnsupportedVersion(1))), "{err}");
}
