//! Handshakes per second, both ends on this thread: ours (Noise XX with static-key
//! certificates and a device claim, sans-IO), between known peers whose certificates
//! are cached and at first contact (both certificates verified), against `snow`'s
//! Noise XX with the same primitives and against libp2p's Noise handshake (XX with an
//! identity signature over each static key, verified in every handshake, over an
//! in-memory pipe), with our extra cost itemised.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signer, SigningKey};
use futures::future::join;
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade};
use libp2p::{identity, noise};
use peers_sdk::DeviceKeys;
use peers_sdk::TrustLevel;
use peers_sdk::handshake::{HandshakeConfig, Initiator, ReplayGuard, Responder};
use peers_sdk::socket::TransportSecurity;
use rand_core::OsRng;
use tokio_util::compat::TokioAsyncReadCompatExt;

const ROUNDS: u32 = 3;

/// Runs each op for `budget / ROUNDS` per round, interleaved; returns the best rate of each.
fn best_rates(budget: Duration, ops: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let slice = budget / ROUNDS;
    let mut best = vec![0f64; ops.len()];
    for op in ops.iter_mut() {
        op();
    }
    for _ in 0..ROUNDS {
        for (op, best) in ops.iter_mut().zip(&mut best) {
            let start = Instant::now();
            let mut count = 0u64;
            while start.elapsed() < slice {
                op();
                count += 1;
            }
            *best = best.max(count as f64 / start.elapsed().as_secs_f64());
        }
    }
    best
}

fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// One of our handshakes, both ends.
fn ours(alice: &HandshakeConfig, bob: &HandshakeConfig, guard: &mut ReplayGuard) {
    let security = TransportSecurity::default();
    let now = unix_millis();
    let (expect_response, hello) = Initiator::start(alice.clone(), &security, None, now, &mut OsRng).unwrap();
    let responder = Responder::new(bob.clone(), &security, now).unwrap();
    let (expect_finish, response) = responder.read_hello(&hello, now, guard, &mut OsRng).unwrap();
    let verify = expect_response.read(&response, now).unwrap();
    let (finish, a) = verify.finish(TrustLevel::Trusted, TrustLevel::Known, now).unwrap();
    let b = expect_finish.read(&finish, now).unwrap().finish(TrustLevel::Trusted, TrustLevel::Known).unwrap();
    black_box((a, b));
}

/// One `snow` XX handshake, both ends, with static keys made once.
fn snow_xx(params: &str, alice_key: &[u8], bob_key: &[u8]) {
    let mut buf = [0u8; 256];
    let mut scratch = [0u8; 256];
    let mut i =
        snow::Builder::new(params.parse().unwrap()).local_private_key(alice_key).unwrap().build_initiator().unwrap();
    let mut r =
        snow::Builder::new(params.parse().unwrap()).local_private_key(bob_key).unwrap().build_responder().unwrap();
    let n = i.write_message(&[], &mut buf).unwrap();
    r.read_message(&buf[..n], &mut scratch).unwrap();
    let n = r.write_message(&[], &mut buf).unwrap();
    i.read_message(&buf[..n], &mut scratch).unwrap();
    let n = i.write_message(&[], &mut buf).unwrap();
    r.read_message(&buf[..n], &mut scratch).unwrap();
    black_box((i.into_transport_mode().unwrap(), r.into_transport_mode().unwrap()));
}

/// One libp2p Noise handshake (`libp2p-noise`: XX, 25519, ChaChaPoly, SHA-256, each
/// side's static key signed once by its ed25519 identity and that signature verified by
/// the other side in every handshake), both ends, over an in-memory pipe.
fn libp2p_noise(runtime: &tokio::runtime::Runtime, alice: &noise::Config, bob: &noise::Config) {
    let (a, b) = tokio::io::duplex(4096);
    let (dialed, accepted) = runtime.block_on(join(
        alice.clone().upgrade_outbound(a.compat(), "/noise"),
        bob.clone().upgrade_inbound(b.compat(), "/noise"),
    ));
    black_box((dialed.unwrap().0, accepted.unwrap().0));
}

/// Key pairs at first contact: more certificates (two per pair) than the certificate
/// cache holds (4,096), used in turn, so no handshake finds the other side cached.
const FIRST_CONTACT_PAIRS: usize = 2_304;

/// Pairs of devices that have not met, with keys from `keys`.
fn strangers(keys: impl Fn(&str) -> DeviceKeys) -> Vec<(HandshakeConfig, HandshakeConfig)> {
    (0..FIRST_CONTACT_PAIRS)
        .map(|_| {
            // Signed once per device, as a device does on first use; not part of a handshake.
            let [a, b] = [keys("alice"), keys("bob")].map(|keys| {
                keys.static_key_certificate();
                HandshakeConfig::new(Arc::new(keys))
            });
            (a, b)
        })
        .collect()
}

pub struct HandshakeTable {
    pub rows: Vec<(&'static str, f64)>,
    pub verifications_us: f64,
}

/// The rows, in this order: ours for a known peer, ours at first contact (keys as
/// `DeviceKeys::generate` makes them: the static key derived from the signing key, no
/// certificate to verify, ADR 0008), ours at first contact with keys from an older key
/// file (an independent static key: both certificates verified), snow with SHA-256,
/// snow with BLAKE2s, libp2p's Noise.
pub fn measure(budget: Duration) -> HandshakeTable {
    let alice = HandshakeConfig::new(Arc::new(DeviceKeys::generate("alice").unwrap()));
    let bob = HandshakeConfig::new(Arc::new(DeviceKeys::generate("bob").unwrap()));
    let derived = strangers(|user| DeviceKeys::generate(user).unwrap());
    let certified = strangers(|user| {
        let (seed, secret) = (SigningKey::generate(&mut OsRng).to_bytes(), SigningKey::generate(&mut OsRng).to_bytes());
        DeviceKeys::from_secrets(user, seed, secret).unwrap()
    });
    // A guard per batch: the real one refuses new first messages when full.
    let mut guard = ReplayGuard::new(300_000, 1 << 20);
    let mut first_guard = ReplayGuard::new(300_000, 1 << 20);
    let mut certified_guard = ReplayGuard::new(300_000, 1 << 20);
    let builder = snow::Builder::new("Noise_XX_25519_ChaChaPoly_SHA256".parse().unwrap());
    let (ak, bk) = (builder.generate_keypair().unwrap(), builder.generate_keypair().unwrap());
    let (p2p_alice, p2p_bob) = (
        noise::Config::new(&identity::Keypair::generate_ed25519()).unwrap(),
        noise::Config::new(&identity::Keypair::generate_ed25519()).unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let verify_each_us = verify_us();
    let mut op_ours = || ours(&alice, &bob, &mut guard);
    let (mut next, mut next_certified) = (0, 0);
    let mut op_first = || {
        let (a, b) = &derived[next % derived.len()];
        next += 1;
        ours(a, b, &mut first_guard);
    };
    let mut op_certified = || {
        let (a, b) = &certified[next_certified % certified.len()];
        next_certified += 1;
        ours(a, b, &mut certified_guard);
    };
    let mut op_sha = || snow_xx("Noise_XX_25519_ChaChaPoly_SHA256", &ak.private, &bk.private);
    let mut op_blake = || snow_xx("Noise_XX_25519_ChaChaPoly_BLAKE2s", &ak.private, &bk.private);
    let mut op_p2p = || libp2p_noise(&runtime, &p2p_alice, &p2p_bob);
    let rates = best_rates(
        budget,
        &mut [&mut op_ours, &mut op_first, &mut op_certified, &mut op_sha, &mut op_blake, &mut op_p2p],
    );
    HandshakeTable {
        rows: vec![
            ("ours (XX + certificates + claim), known peer", rates[0]),
            ("ours, first contact (derived static keys)", rates[1]),
            ("ours, first contact, older key files (2 verified)", rates[2]),
            ("snow Noise_XX_25519_ChaChaPoly_SHA256", rates[3]),
            ("snow Noise_XX_25519_ChaChaPoly_BLAKE2s", rates[4]),
            ("libp2p-noise (XX + 2 identity verifications)", rates[5]),
        ],
        verifications_us: 2.0 * verify_each_us,
    }
}

/// Microseconds for one strict ed25519 verification (decoding the key included): each
/// side of a first contact verifies the other's certificate once.
fn verify_us() -> f64 {
    let key = SigningKey::generate(&mut OsRng);
    let public = key.verifying_key().to_bytes();
    let message = [7u8; 120];
    let signature = key.sign(&message);
    let mut op = || {
        let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
        black_box(verifying.verify_strict(&message, &signature).unwrap());
    };
    let rate = best_rates(Duration::from_millis(600), &mut [&mut op])[0];
    1e6 / rate
}
