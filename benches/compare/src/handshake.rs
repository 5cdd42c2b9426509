//! Handshakes per second, both ends on this thread, no sockets: ours (Noise XX with
//! static-key certificates and a device claim, sans-IO, between known peers whose
//! certificates are cached) against `snow`'s Noise XX with the same primitives, with
//! our extra cost itemised (a first contact adds two certificate verifications).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signer, SigningKey};
use peers_sdk::DeviceKeys;
use peers_sdk::TrustLevel;
use peers_sdk::handshake::{HandshakeConfig, Initiator, ReplayGuard, Responder};
use peers_sdk::socket::TransportSecurity;
use rand_core::OsRng;

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

pub struct HandshakeTable {
    pub rows: Vec<(&'static str, f64)>,
    pub verifications_us: f64,
}

pub fn measure(budget: Duration) -> HandshakeTable {
    let alice = HandshakeConfig::new(Arc::new(DeviceKeys::generate("alice").unwrap()));
    let bob = HandshakeConfig::new(Arc::new(DeviceKeys::generate("bob").unwrap()));
    // A guard per batch: the real one refuses new first messages when full.
    let mut guard = ReplayGuard::new(300_000, 1 << 20);
    let builder = snow::Builder::new("Noise_XX_25519_ChaChaPoly_SHA256".parse().unwrap());
    let (ak, bk) = (builder.generate_keypair().unwrap(), builder.generate_keypair().unwrap());
    let verify_each_us = verify_us();
    let mut op_ours = || ours(&alice, &bob, &mut guard);
    let mut op_sha = || snow_xx("Noise_XX_25519_ChaChaPoly_SHA256", &ak.private, &bk.private);
    let mut op_blake = || snow_xx("Noise_XX_25519_ChaChaPoly_BLAKE2s", &ak.private, &bk.private);
    let rates = best_rates(budget, &mut [&mut op_ours, &mut op_sha, &mut op_blake]);
    HandshakeTable {
        rows: vec![
            ("ours (XX + certificates + claim), known peer", rates[0]),
            ("snow Noise_XX_25519_ChaChaPoly_SHA256", rates[1]),
            ("snow Noise_XX_25519_ChaChaPoly_BLAKE2s", rates[2]),
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
