//! Feeds arbitrary bytes to every handshake step that reads peer input:
//! message 1 to a responder, message 2 to an initiator, and message 3 to a
//! responder that has answered a genuine message 1. None may panic, and none may
//! accept forged input: reading message 3 must never succeed for fuzzed bytes.
//!
//! Input layout: the first byte picks the step (its value modulo 3: message 1, 2 or 3),
//! the rest is the message. One step per case keeps a case to the key agreement that
//! step needs (a genuine message 1 and its answer only for message 3), so the fuzzer
//! runs about three times as many cases as when every case ran all three. Randomness
//! comes from a ChaCha20 generator with a fixed seed, so a crash replays exactly.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use peers_sdk::DeviceKeys;
use peers_sdk::handshake::{HandshakeConfig, Initiator, ReplayGuard, Responder};
use peers_sdk::socket::TransportSecurity;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const NOW: u64 = 1_800_000_000_000;

fn keys() -> &'static (Arc<DeviceKeys>, Arc<DeviceKeys>) {
    static KEYS: OnceLock<(Arc<DeviceKeys>, Arc<DeviceKeys>)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (Arc::new(DeviceKeys::generate("alice").unwrap()), Arc::new(DeviceKeys::generate("bob").unwrap()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, message)) = data.split_first() else {
        return;
    };
    let (alice, bob) = keys();
    let sec = TransportSecurity::default();
    let mut guard = ReplayGuard::new(300_000, 16);
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(step));
    match step % 3 {
        0 => {
            // Message 1 to a responder.
            let responder = Responder::new(HandshakeConfig::new(bob.clone()), &sec, NOW).unwrap();
            let _ = responder.read_hello(message, NOW, &mut guard, &mut rng);
        }
        1 => {
            // Message 2 to an initiator.
            let (expect_response, _) =
                Initiator::start(HandshakeConfig::new(alice.clone()), &sec, None, NOW, &mut rng).unwrap();
            let _ = expect_response.read(message, NOW);
        }
        _ => {
            // Message 3 to a responder mid-handshake.
            let (_, m1) = Initiator::start(HandshakeConfig::new(alice.clone()), &sec, None, NOW, &mut rng).unwrap();
            let responder = Responder::new(HandshakeConfig::new(bob.clone()), &sec, NOW).unwrap();
            let (expect_finish, _) = responder.read_hello(&m1, NOW, &mut guard, &mut rng).unwrap();
            assert!(expect_finish.read(message, NOW).is_err(), "forged message 3 accepted");
        }
    }
});
