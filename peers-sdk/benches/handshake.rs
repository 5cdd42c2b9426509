//! Handshakes per second on one core, against the cost of the cryptography alone.
//!
//! Rows:
//! - the sans-IO state machine (`Initiator` → `Responder` → ... → `Session`), both
//!   ends on this thread, no sockets, no runtime, between two known peers (each
//!   side's static-key certificate already verified and cached, ADR 0006); also split
//!   into each side's share, since a listener only pays the responder's;
//! - the same at first contact: a pool of key pairs larger than the certificate cache,
//!   used in turn, so no handshake finds the other side cached: with keys as
//!   `DeviceKeys::generate` makes them (the static key derived from the signing key,
//!   ADR 0008: no certificate to verify), and with keys as key files written before
//!   that hold them (an independent static key: both certificates verified);
//! - `Connection::connect` + `Connection::accept` over a fresh `MemorySocket` pair,
//!   on a current-thread tokio runtime (the handshake plus task spawns, the `Ready`
//!   message and the teardown);
//! - the baseline, the "crypto floor": the public-key operations a Noise XX
//!   handshake cannot avoid (2 x25519 key generations, 6 x25519 DH); at first contact
//!   also 2 ed25519 verifications including decoding the peer's key. The ratio column
//!   is our rate divided by the floor of the same case.
//!
//! Measurements are interleaved in rounds and the best round is kept, so a busy
//! machine lowers all rows alike and the ratios hold.
//!
//! - the same handshake in TypeScript (`peers-js`) on Node, both ends on one thread,
//!   with its own crypto floor in its curve backend: `peers-js/bench/handshake.ts`, run
//!   as a child process when `node` and the built script are there (build it with
//!   `npx --prefix peers-js tsc -p peers-js`).
//!
//! `cargo bench -p peers-sdk --bench handshake`; shorter: append `-- --quick`, or set
//! `PEERS_BENCH_SECONDS` to the seconds spent on each row (default 3).

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use peers_sdk::handshake::{CERTIFICATE_CACHE_CAPACITY, HandshakeConfig, Initiator, ReplayGuard, Responder, Session};
use peers_sdk::socket::TransportSecurity;
use peers_sdk::{Connection, ConnectionConfig, DeviceId, DeviceInfo, DeviceKeys, MemorySocket, TrustLevel};
use rand_core::OsRng;
use x25519_dalek::{PublicKey, StaticSecret};

/// Rounds each row is measured in; the best round counts.
const ROUNDS: u32 = 3;

fn row_budget() -> Duration {
    common::budget(3.0, Duration::from_millis(300))
}

/// Runs each op for `budget / ROUNDS` per round, interleaved, and returns the best
/// rate (ops per second) of each.
fn best_rates(budget: Duration, ops: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let slice = budget / ROUNDS;
    let mut best = vec![0f64; ops.len()];
    for op in ops.iter_mut() {
        op(); // warm-up
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

/// Time spent in each side's steps of the sans-IO handshake.
#[derive(Default)]
struct SideTimes {
    initiator: Duration,
    responder: Duration,
    handshakes: u32,
}

/// One complete sans-IO handshake, both ends; returns both sessions.
fn sans_io_handshake(
    alice: &HandshakeConfig,
    bob: &HandshakeConfig,
    bob_id: DeviceId,
    guard: &mut ReplayGuard,
    times: &mut SideTimes,
) -> (Session, Session) {
    let security = TransportSecurity::default();
    let now = unix_millis();
    let t0 = Instant::now();
    let (expect_response, hello) = Initiator::start(alice.clone(), &security, Some(bob_id), now, &mut OsRng).unwrap();
    let t1 = Instant::now();
    let responder = Responder::new(bob.clone(), &security, now).unwrap();
    let (expect_finish, response) = responder.read_hello(&hello, now, guard, &mut OsRng).unwrap();
    let t2 = Instant::now();
    let verify = expect_response.read(&response, now).unwrap();
    let (finish, alice_session) = verify.finish(TrustLevel::Trusted, TrustLevel::Known, now).unwrap();
    let t3 = Instant::now();
    let verify = expect_finish.read(&finish, now).unwrap();
    let bob_session = verify.finish(TrustLevel::Trusted, TrustLevel::Known).unwrap();
    let t4 = Instant::now();
    times.initiator += (t1 - t0) + (t3 - t2);
    times.responder += (t2 - t1) + (t4 - t3);
    times.handshakes += 1;
    (alice_session, bob_session)
}

/// The keys a handshake's floor works with, prepared once.
struct FloorKeys {
    alice_signing: SigningKey,
    bob_signing: SigningKey,
    alice_static: StaticSecret,
    bob_static: StaticSecret,
    alice_static_public: PublicKey,
    bob_static_public: PublicKey,
}

impl FloorKeys {
    fn new() -> Self {
        let alice_static = StaticSecret::random_from_rng(OsRng);
        let bob_static = StaticSecret::random_from_rng(OsRng);
        FloorKeys {
            alice_signing: SigningKey::generate(&mut OsRng),
            bob_signing: SigningKey::generate(&mut OsRng),
            alice_static_public: PublicKey::from(&alice_static),
            bob_static_public: PublicKey::from(&bob_static),
            alice_static,
            bob_static,
        }
    }

    /// The public-key work of one XX handshake, both ends; with `verify`, also each
    /// side's verification of the other's certificate (first contact).
    fn handshake(&self, transcript: &[u8], signatures: &[ed25519_dalek::Signature; 2], verify: bool) {
        // Fresh ephemerals: a random scalar and its public key, per side.
        let alice_e = StaticSecret::random_from_rng(OsRng);
        let alice_e_public = PublicKey::from(&alice_e);
        let bob_e = StaticSecret::random_from_rng(OsRng);
        let bob_e_public = PublicKey::from(&bob_e);
        // ee, es, se, computed once on each side.
        black_box(alice_e.diffie_hellman(&bob_e_public));
        black_box(bob_e.diffie_hellman(&alice_e_public));
        black_box(alice_e.diffie_hellman(&self.bob_static_public));
        black_box(self.bob_static.diffie_hellman(&alice_e_public));
        black_box(self.alice_static.diffie_hellman(&bob_e_public));
        black_box(bob_e.diffie_hellman(&self.alice_static_public));
        if !verify {
            return;
        }
        // Each side decodes the other's key and verifies its certificate (signed once).
        for (signer, signature) in [&self.bob_signing, &self.alice_signing].into_iter().zip(signatures) {
            let key = VerifyingKey::from_bytes(&signer.verifying_key().to_bytes()).unwrap();
            assert!(key.verify(black_box(transcript), signature).is_ok());
        }
    }
}

fn main() {
    let budget = row_budget();
    let alice_keys = Arc::new(DeviceKeys::generate("alice").unwrap());
    let bob_keys = Arc::new(DeviceKeys::generate("bob").unwrap());
    let bob_id = bob_keys.device_id();
    let alice = HandshakeConfig::new(alice_keys.clone());
    let bob = HandshakeConfig::new(bob_keys.clone());
    // One guard per listener, as `ConnectionConfig` shares it.
    let mut guard = ReplayGuard::new(300_000, ReplayGuard::DEFAULT_CAPACITY);
    let mut times = SideTimes::default();
    let mut guard_first = ReplayGuard::new(300_000, ReplayGuard::DEFAULT_CAPACITY);

    let trust = |_: &DeviceInfo| TrustLevel::Trusted;
    let dial_config = ConnectionConfig::new(alice_keys.clone(), trust);
    let accept_config = ConnectionConfig::new(bob_keys.clone(), trust);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let connection_handshake = || async {
        let (a, b) = MemorySocket::pair(8, 64 * 1024);
        let (dialer, listener) = tokio::join!(
            Connection::connect(Box::new(a), dial_config.clone(), Some(bob_id)),
            Connection::accept(Box::new(b), accept_config.clone()),
        );
        assert!(dialer.unwrap().is_encrypted() && listener.unwrap().is_encrypted());
    };

    let floor = FloorKeys::new();
    let transcript = [7u8; 120]; // about the size of a certificate's text
    let signatures = [floor.bob_signing.sign(&transcript), floor.alice_signing.sign(&transcript)];

    // First contact: more certificates than the cache holds, used in turn (oldest
    // evicted first), so none is cached when its turn comes again.
    let strangers = |keys: &dyn Fn(&str) -> DeviceKeys| -> Vec<(HandshakeConfig, HandshakeConfig, DeviceId)> {
        (0..CERTIFICATE_CACHE_CAPACITY / 2 + 256)
            .map(|_| {
                let (a, b) = (keys("alice"), keys("bob"));
                // Signed once per device, as in use; not part of a handshake.
                let _ = (a.static_key_certificate(), b.static_key_certificate());
                let id = b.device_id();
                (HandshakeConfig::new(Arc::new(a)), HandshakeConfig::new(Arc::new(b)), id)
            })
            .collect()
    };
    let derived = strangers(&|user| DeviceKeys::generate(user).unwrap());
    let certified = strangers(&|user| {
        let (seed, secret) = (SigningKey::generate(&mut OsRng).to_bytes(), StaticSecret::random_from_rng(OsRng));
        DeviceKeys::from_secrets(user, seed, secret.to_bytes()).unwrap()
    });
    let (mut next_derived, mut next_certified) = (0, 0);
    let (mut first_times, mut certified_times) = (SideTimes::default(), SideTimes::default());
    let mut guard_certified = ReplayGuard::new(300_000, ReplayGuard::DEFAULT_CAPACITY);

    println!("handshake benchmark: {budget:?} per row, best of {ROUNDS} interleaved rounds, one thread");
    let mut sans_io_op = || {
        black_box(sans_io_handshake(&alice, &bob, bob_id, &mut guard, &mut times));
    };
    let mut first_contact_op = || {
        let (a, b, id) = &derived[next_derived % derived.len()];
        next_derived += 1;
        black_box(sans_io_handshake(a, b, *id, &mut guard_first, &mut first_times));
    };
    let mut certified_op = || {
        let (a, b, id) = &certified[next_certified % certified.len()];
        next_certified += 1;
        black_box(sans_io_handshake(a, b, *id, &mut guard_certified, &mut certified_times));
    };
    let mut connection_op = || runtime.block_on(connection_handshake());
    let mut floor_op = || floor.handshake(&transcript, &signatures, false);
    let mut floor_first_op = || floor.handshake(&transcript, &signatures, true);
    let rates = best_rates(
        budget,
        &mut [
            &mut sans_io_op,
            &mut first_contact_op,
            &mut certified_op,
            &mut connection_op,
            &mut floor_op,
            &mut floor_first_op,
        ],
    );
    let (sans_io, first_contact, first_certified, connection, floor_rate, floor_first) =
        (rates[0], rates[1], rates[2], rates[3], rates[4], rates[5]);

    // Parts, to see where the time goes (µs per operation).
    let mut keygen_op = || {
        black_box(PublicKey::from(&StaticSecret::random_from_rng(OsRng)));
    };
    let mut dh_op = || {
        black_box(floor.alice_static.diffie_hellman(&floor.bob_static_public));
    };
    let mut sign_op = || {
        black_box(floor.alice_signing.sign(&transcript));
    };
    let signature = floor.alice_signing.sign(&transcript);
    let key_bytes = floor.alice_signing.verifying_key().to_bytes();
    let mut verify_op = || {
        let key = VerifyingKey::from_bytes(black_box(&key_bytes)).unwrap();
        assert!(key.verify(&transcript, &signature).is_ok());
    };
    let mut decompress_op = || {
        black_box(VerifyingKey::from_bytes(black_box(&key_bytes)).unwrap());
    };
    let mut static_public_op = || {
        black_box(alice_keys.static_public());
    };
    let mut info_op = || {
        black_box(alice_keys.info(Vec::new()).unwrap());
    };
    let parts = best_rates(
        budget / 2,
        &mut [
            &mut keygen_op,
            &mut dh_op,
            &mut sign_op,
            &mut verify_op,
            &mut decompress_op,
            &mut static_public_op,
            &mut info_op,
        ],
    );

    let line = "-".repeat(100);
    println!("{line}");
    println!("{:<70} {:>12} {:>8} {:>7}", "path", "handshakes/s", "µs each", "/floor");
    println!("{line}");
    let row = |name: &str, rate: f64| {
        println!("{name:<70} {rate:>12.0} {:>8.1} {:>7.2}", 1e6 / rate, rate / floor_rate);
    };
    row("sans-IO state machine, both ends, known peers (certificates cached)", sans_io);
    let per = |d: Duration| d.as_secs_f64() / f64::from(times.handshakes.max(1));
    let (initiator, responder) = (per(times.initiator), per(times.responder));
    let share = |name: &str, seconds: f64| {
        println!(
            "{name:<70} {:>12.0} {:>8.1} {:>7.2}",
            1.0 / seconds,
            seconds * 1e6,
            1.0 / (2.0 * seconds * floor_rate)
        );
    };
    share("  initiator's steps only (one side; /floor vs half the floor)", initiator);
    share("  responder's steps only (one side; /floor vs half the floor)", responder);
    row("sans-IO state machine, both ends, first contact (derived static keys)", first_contact);
    println!(
        "{:<70} {first_certified:>12.0} {:>8.1} {:>7.2}",
        "sans-IO, first contact, older key files (2 certificates verified)",
        1e6 / first_certified,
        first_certified / floor_first
    );
    for (name, times) in [("derived", &first_times), ("older key files", &certified_times)] {
        let per = |d: Duration| d.as_secs_f64() / f64::from(times.handshakes.max(1));
        println!(
            "  one side at first contact, {name}: initiator {:.1} µs, responder {:.1} µs",
            per(times.initiator) * 1e6,
            per(times.responder) * 1e6
        );
    }
    row("Connection::connect + accept, MemorySocket, current_thread (known)", connection);
    row("baseline: crypto floor, both ends (2 keygen, 6 DH)", floor_rate);
    println!(
        "{:<70} {floor_first:>12.0} {:>8.1} {:>7.2}",
        "baseline at first contact (2 keygen, 6 DH, 2 decode key + verify)",
        1e6 / floor_first,
        1.0
    );
    println!("{line}");
    println!("parts, µs per operation:");
    let names = [
        "x25519 key generation (OsRng + base point mult)",
        "x25519 DH",
        "ed25519 sign (120 bytes)",
        "ed25519 decode key + verify (120 bytes)",
        "ed25519 decode key only (VerifyingKey::from_bytes)",
        "DeviceKeys::static_public (cached)",
        "DeviceKeys::info (static_public + key checks)",
    ];
    for (name, rate) in names.iter().zip(&parts) {
        println!("  {name:<68} {:>8.1}", 1e6 / rate);
    }
    node_rows(budget, sans_io, floor_rate);
}

/// The TypeScript handshake on Node, measured by `peers-js/bench/handshake.ts` in a
/// child process, beside the Rust figures of this run.
fn node_rows(budget: Duration, rust_sans_io: f64, rust_floor: f64) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../peers-js/dist/bench/handshake.js");
    if !script.exists() {
        println!("peers-js on Node: not measured ({} is not built)", script.display());
        return;
    }
    let output = std::process::Command::new("node")
        .arg(&script)
        .args(["--seconds", &budget.as_secs_f64().to_string(), "--rounds", &ROUNDS.to_string()])
        .output();
    // One line: handshakes/s, floor/s, Node's version, the curve backend.
    let line =
        output.ok().filter(|out| out.status.success()).map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
    let fields: Vec<String> = line.unwrap_or_default().split_whitespace().map(str::to_owned).collect();
    let rate = |at: usize| fields.get(at).and_then(|field| field.parse::<f64>().ok());
    let (Some(js), Some(js_floor), Some(node), Some(backend)) = (rate(0), rate(1), fields.get(2), fields.get(3)) else {
        println!("peers-js on Node: not measured (node failed to run {})", script.display());
        return;
    };
    println!("peers-js (TypeScript, curves in {backend}) on Node {node}, both ends on one thread:");
    println!("{:<70} {:>12} {:>8} {:>7}", "path", "handshakes/s", "µs each", "/Rust");
    println!(
        "{:<70} {js:>12.1} {:>8.0} {:>7.3}",
        "peers-js sans-IO state machine, both ends",
        1e6 / js,
        js / rust_sans_io
    );
    println!(
        "{:<70} {js_floor:>12.1} {:>8.0} {:>7.3}",
        "peers-js crypto floor (the same 8 operations, its backend)",
        1e6 / js_floor,
        js_floor / rust_floor
    );
    println!("peers-js handshake / its own floor: {:.2}", js / js_floor);
}
