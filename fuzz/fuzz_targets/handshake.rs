//! Feeds arbitrary bytes to every handshake step that reads peer input:
//! message 1 to a responder, message 2 to an initiator, and message 3 to a
//! responder that has answered a genuine message 1. None may panic, and none may
//! accept forged input: reading message 3 must never succeed for fuzzed bytes.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use peers_sdk::DeviceKeys;
use peers_sdk::handshake::{HandshakeConfig, Initiator, ReplayGuard, Responder};
use peers_sdk::socket::TransportSecurity;
use rand_core::OsRng;

const NOW: u64 = 1_800_000_000_000;

fn keys() -> &'static (Arc<DeviceKeys>, Arc<DeviceKeys>) {
    static KEYS: OnceLock<(Arc<DeviceKeys>, Arc<DeviceKeys>)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (Arc::new(DeviceKeys::generate("alice").unwrap()), Arc::new(DeviceKeys::generate("bob").unwrap()))
    })
}

fuzz_target!(|data: &[u8]| {
    let (alice, bob) = keys();
    let sec = TransportSecurity::default();
    let mut guard = ReplayGuard::new(300_000, 16);

    // Message 1 to a responder.
    let responder = Responder::new(HandshakeConfig::new(bob.clone()), &sec, NOW).unwrap();
    let _ = responder.read_hello(data, NOW, &mut guard, &mut OsRng);

    // Message 2 to an initiator.
    let (expect_response, m1) =
        Initiator::start(HandshakeConfig::new(alice.clone()), &sec, None, NOW, &mut OsRng).unwrap();
    let _ = expect_response.read(data, NOW);

    // Message 3 to a responder mid-handshake.
    let responder = Responder::new(HandshakeConfig::new(bob.clone()), &sec, NOW).unwrap();
    let (expect_finish, _) = responder.read_hello(&m1, NOW, &mut guard, &mut OsRng).unwrap();
    assert!(expect_finish.read(data, NOW).is_err(), "forged message 3 accepted");
});
