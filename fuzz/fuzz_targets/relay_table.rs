//! Drives the signaling server's frame relay bookkeeping
//! (`peers_signaling::relay::RelayTable`) with arbitrary sequences of opens,
//! frames, credit, closes, departures and expiry, from six devices on three
//! addresses, and checks it against a model: a frame is forwarded exactly
//! when it is within the size limit, the credit the receiver granted and the
//! pair's byte cap; no device, address or server ever holds more relays than
//! its quota; nothing panics.
//!
//! Input layout: operations of four bytes each (`op`, `x`, `y`, `z`).

#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use peers_sdk::{CloseCode, DeviceId};
use peers_signaling::protocol::{RELAY_WINDOW_BYTES, RELAY_WINDOW_FRAMES};
use peers_signaling::relay::{FrameRefusal, Opening, RelayLimits, RelayTable};

const DEVICES: u8 = 6;

/// One relay as the model sees it: per side (a = 0, b = 1) what it sent and
/// what the other side granted it.
struct Model {
    parties: [DeviceId; 2],
    origins: [Option<IpAddr>; 2],
    sent: [(u64, u64); 2],
    granted: [(u64, u64); 2],
}

/// Device `n % DEVICES`, parsed once (parsing on every operation made up most
/// of a case's cost under coverage instrumentation).
fn device(n: u8) -> DeviceId {
    static IDS: OnceLock<Vec<DeviceId>> = OnceLock::new();
    let ids = IDS
        .get_or_init(|| (1..=DEVICES).map(|d| format!("{d:02x}").repeat(20).parse().expect("40 hex digits")).collect());
    ids[usize::from(n % DEVICES)]
}

fn address(n: u8) -> Option<IpAddr> {
    (n % 4 != 3).then(|| IpAddr::V4(Ipv4Addr::new(192, 0, 2, n % 4)))
}

fuzz_target!(|data: &[u8]| {
    let mut limits = RelayLimits::default();
    limits.max_relays = 5;
    limits.per_device = 2;
    limits.per_address = 3;
    limits.max_pending_per_device = 3;
    limits.max_frame = 1024;
    limits.max_bytes = 64 * 1024;
    limits.max_duration = Duration::from_millis(5_000);
    limits.pending_wait = Duration::from_millis(1_000);
    let mut table = RelayTable::new(limits.clone());
    let mut relays: HashMap<u64, Model> = HashMap::new();
    let mut now = 1_000_000u64;
    for op in data.chunks_exact(4) {
        let (x, y, z) = (op[1], op[2], op[3]);
        match op[0] % 6 {
            0 => {
                let (from, to) = (device(x), device(y));
                if let Ok(Opening::Open(relay)) = table.open(now, from, address(z), to) {
                    assert!(!relays.contains_key(&relay.id), "relay ids are never reused");
                    assert_eq!([relay.a, relay.b], [to, from]);
                    let window = (RELAY_WINDOW_FRAMES, RELAY_WINDOW_BYTES);
                    relays.insert(
                        relay.id,
                        Model {
                            parties: [relay.a, relay.b],
                            origins: relay.origins,
                            sent: [(0, 0); 2],
                            granted: [window; 2],
                        },
                    );
                }
            }
            1 => {
                let Some(id) = pick(&relays, x) else { continue };
                let side = usize::from(y & 1);
                let len = u64::from(z) * 8 + u64::from(y >> 1) * 64;
                let model = &relays[&id];
                let (sent, granted) = (model.sent[side], model.granted[side]);
                let total = model.sent[0].1 + model.sent[1].1;
                let allowed = len <= limits.max_frame as u64
                    && sent.0 < granted.0
                    && sent.1 + len <= granted.1
                    && total + len <= limits.max_bytes;
                let from = model.parties[side];
                match table.frame(id, &from, len as usize) {
                    Ok(to) => {
                        assert!(allowed, "forwarded a frame beyond a limit");
                        assert_eq!(to, model.parties[1 - side]);
                        let model = relays.get_mut(&id).expect("modelled");
                        model.sent[side] = (sent.0 + 1, sent.1 + len);
                    }
                    Err(refusal) => {
                        assert!(!allowed, "refused a frame within every limit");
                        assert!(matches!(refusal, FrameRefusal::Ended(Some(_))), "a refused frame ends its relay");
                        relays.remove(&id);
                    }
                }
            }
            2 => {
                let Some(id) = pick(&relays, x) else { continue };
                let side = usize::from(y & 1);
                let model = relays.get_mut(&id).expect("modelled");
                // Side `side` grants its sender, the other side.
                let (frames, bytes) = (u64::from(z), u64::from(y) * 4096);
                let granter = model.parties[side];
                assert_eq!(table.credit(id, &granter, frames, bytes), Some(model.parties[1 - side]));
                let leg = &mut model.granted[1 - side];
                *leg = (leg.0.max(frames), leg.1.max(bytes));
            }
            3 => {
                let Some(id) = pick(&relays, x) else { continue };
                assert!(table.end(id, CloseCode::Normal, "bye").is_some());
                relays.remove(&id);
                assert!(table.end(id, CloseCode::Normal, "again").is_none());
            }
            4 => {
                let gone = device(x);
                for ended in table.device_gone(&gone) {
                    assert!(relays.remove(&ended.relay.id).is_some());
                }
                assert!(relays.values().all(|r| !r.parties.contains(&gone)));
            }
            _ => {
                now += u64::from(x) * 64;
                for ended in table.expire(now) {
                    assert!(relays.remove(&ended.relay.id).is_some());
                }
            }
        }
        check_quotas(&table, &relays, &limits);
    }
});

fn pick(relays: &HashMap<u64, Model>, n: u8) -> Option<u64> {
    let mut ids: Vec<u64> = relays.keys().copied().collect();
    ids.sort_unstable();
    (!ids.is_empty()).then(|| ids[usize::from(n) % ids.len()])
}

fn check_quotas(table: &RelayTable, relays: &HashMap<u64, Model>, limits: &RelayLimits) {
    assert_eq!(table.len(), relays.len());
    assert!(relays.len() <= limits.max_relays);
    for n in 0..DEVICES {
        let d = device(n);
        assert!(relays.values().filter(|r| r.parties.contains(&d)).count() <= limits.per_device);
    }
    for n in 0..3 {
        let a = address(n);
        assert!(relays.values().filter(|r| r.origins.contains(&a)).count() <= limits.per_address);
    }
}
