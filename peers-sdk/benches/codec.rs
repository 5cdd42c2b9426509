//! `FrameEncoder` / `FrameDecoder` throughput, and where Brotli starts to pay.
//!
//! Table 1: encode and decode speed in MB/s of message bytes (before compression),
//! for random and compressible (JSON-like) messages of 1 KiB to 16 MiB, with
//! compression off and at the default setting (Brotli quality 3 from 4 KiB). The
//! baseline is a plain `memcpy` of the same message, measured in the same run; the
//! ratio columns divide by it.
//!
//! Table 2: compressible messages of 256 B to 64 KiB, encoded with Brotli forced on
//! (`min_size: 0`) and with compression off: the bytes saved against the time spent
//! compressing and decompressing, and the link speed below which that trade pays.
//!
//! Frames are cut for a 256 KiB socket frame with the AEAD's 8 bytes of headroom and
//! 16 of tailroom, as the connection does. Timings are the best of 3 interleaved
//! rounds.
//!
//! `cargo bench -p peers-sdk --bench codec`; shorter: append `-- --quick`, or set
//! `PEERS_BENCH_SECONDS` to the seconds spent on each cell (default 0.4).

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use peers_sdk::codec::{CodecConfig, Compression, FrameDecoder, FrameEncoder};

const MAX_FRAME: usize = 256 * 1024;
const HEADROOM: usize = 8;
const TAILROOM: usize = 16;
const ROUNDS: u32 = 3;
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn cell_budget() -> Duration {
    common::budget(0.4, Duration::from_millis(40))
}

/// Seconds per call of each op: the best of `ROUNDS` interleaved rounds of about
/// `budget / ROUNDS` each (at least one call per round).
fn best_times(budget: Duration, ops: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let slice = budget / ROUNDS;
    let mut best = vec![f64::INFINITY; ops.len()];
    for _ in 0..ROUNDS {
        for (op, best) in ops.iter_mut().zip(&mut best) {
            op(); // warm-up: caches, allocator
            let start = Instant::now();
            let (mut calls, mut batch) = (0u64, 1u64);
            loop {
                for _ in 0..batch {
                    op();
                }
                calls += batch;
                let elapsed = start.elapsed();
                if elapsed >= slice {
                    *best = best.min(elapsed.as_secs_f64() / calls as f64);
                    break;
                }
                if elapsed < slice / 64 {
                    batch *= 2;
                }
            }
        }
    }
    best
}

/// splitmix64: fast, deterministic, and incompressible for Brotli.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut mix = Mix(len as u64);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&mix.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// JSON-like records, the kind of data apps sync: repeated keys, varied values.
fn compressible_bytes(len: usize) -> Vec<u8> {
    let kinds = ["note", "task", "photo", "contact", "event"];
    let mut mix = Mix(7);
    let mut out = String::with_capacity(len + 256);
    let mut id = 10_000u64;
    while out.len() < len {
        let r = mix.next();
        id += 1 + r % 7;
        out.push_str(&format!(
            "{{\"id\":{id},\"device\":\"dev-{:04x}\",\"ts\":{},\"kind\":\"{}\",\"value\":{}.{:02},\"done\":{}}},\n",
            (r >> 8) % 24,
            1_760_000_000_000 + (r >> 16) % 1_000_000,
            kinds[(r >> 40) as usize % kinds.len()],
            (r >> 44) % 1000,
            (r >> 54) % 100,
            r & 1 == 1,
        ));
    }
    out.truncate(len);
    out.into_bytes()
}

fn config(compression: Compression) -> CodecConfig {
    CodecConfig { compression, ..CodecConfig::default() }
}

/// Encodes once and returns the frames as the decoder receives them.
fn wire_frames(message: &[u8], compression: Compression) -> Vec<Bytes> {
    let mut encoder = FrameEncoder::new(config(compression));
    let records = encoder.encode(message, MAX_FRAME, HEADROOM, TAILROOM).unwrap();
    records.into_iter().map(|mut record| record.split_off(HEADROOM).freeze()).collect()
}

/// Seconds per encode and per decode of `message`, and per memcpy of it.
fn measure(message: &[u8], compression: Compression, budget: Duration) -> (f64, f64, f64) {
    let frames = wire_frames(message, compression);
    let mut encoder = FrameEncoder::new(config(compression));
    let mut decoder = FrameDecoder::new(config(compression));
    let mut copy = vec![0u8; message.len()];
    let mut encode = || {
        black_box(encoder.encode(black_box(message), MAX_FRAME, HEADROOM, TAILROOM).unwrap());
    };
    let mut decode = || {
        let mut done = None;
        for frame in &frames {
            done = decoder.decode(frame.clone()).unwrap();
        }
        assert_eq!(done.map(|m| m.len()), Some(message.len()));
    };
    let mut memcpy = || {
        copy.copy_from_slice(black_box(message));
        black_box(&mut copy);
    };
    let times = best_times(budget, &mut [&mut encode, &mut decode, &mut memcpy]);
    (times[0], times[1], times[2])
}

fn size_name(size: usize) -> String {
    match size {
        s if s >= MIB => format!("{} MiB", s / MIB),
        s if s >= KIB => format!("{} KiB", s / KIB),
        s => format!("{s} B"),
    }
}

fn main() {
    let budget = cell_budget();
    let default = Compression::default();
    println!("codec benchmark: {budget:?} per cell, best of {ROUNDS} interleaved rounds, one thread");
    println!("frames for a {} socket frame; default compression = {default:?}", size_name(MAX_FRAME));
    let line = "-".repeat(104);
    println!("{line}");
    println!(
        "{:<13} {:>7} {:>11} {:>7} {:>7} {:>11} {:>11} {:>11} {:>9} {:>9}",
        "data",
        "size",
        "compression",
        "frames",
        "wire %",
        "encode MB/s",
        "decode MB/s",
        "memcpy MB/s",
        "enc/copy",
        "dec/copy"
    );
    println!("{line}");
    let mb_s = |size: usize, seconds: f64| size as f64 / seconds / 1e6;
    for (data, make) in [("random", random_bytes as fn(usize) -> Vec<u8>), ("compressible", compressible_bytes)] {
        for size in [KIB, 64 * KIB, MIB, 16 * MIB] {
            let message = make(size);
            for (name, compression) in [("off", Compression::Off), ("default", default)] {
                let frames = wire_frames(&message, compression);
                let wire: usize = frames.iter().map(Bytes::len).sum();
                let (encode, decode, memcpy) = measure(&message, compression, budget);
                println!(
                    "{data:<13} {:>7} {name:>11} {:>7} {:>6.1}% {:>11.0} {:>11.0} {:>11.0} {:>9.3} {:>9.3}",
                    size_name(size),
                    frames.len(),
                    100.0 * wire as f64 / size as f64,
                    mb_s(size, encode),
                    mb_s(size, decode),
                    mb_s(size, memcpy),
                    memcpy / encode,
                    memcpy / decode,
                );
            }
        }
    }
    println!("{line}");
    println!("MB/s count message bytes before compression; wire % = frame bytes / message bytes.");
    println!("decode of a single uncompressed frame returns a slice of it, without copying.");

    println!();
    println!("Brotli threshold sweep: compressible data, quality 3, forced on (min_size 0) vs off");
    let line = "-".repeat(104);
    println!("{line}");
    println!(
        "{:>7} {:>9} {:>9} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>14}",
        "size",
        "wire off",
        "wire on",
        "saved",
        "enc off µs",
        "enc on µs",
        "dec off µs",
        "dec on µs",
        "extra µs",
        "pays below"
    );
    println!("{line}");
    let forced = Compression::Brotli { min_size: 0, quality: 3 };
    let mut size = 256;
    while size <= 64 * KIB {
        let message = compressible_bytes(size);
        let wire = |c| wire_frames(&message, c).iter().map(Bytes::len).sum::<usize>();
        let (wire_off, wire_on) = (wire(Compression::Off), wire(forced));
        let (enc_off, dec_off, _) = measure(&message, Compression::Off, budget / 2);
        let (enc_on, dec_on, _) = measure(&message, forced, budget / 2);
        let saved = wire_off.saturating_sub(wire_on);
        let extra = (enc_on - enc_off) + (dec_on - dec_off);
        // Sending `saved` bytes takes longer than `extra` on links slower than this.
        let break_even_mbit = saved as f64 * 8.0 / extra / 1e6;
        println!(
            "{:>7} {wire_off:>9} {wire_on:>9} {:>6.0}% {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>9.0} Mbit/s",
            size_name(size),
            100.0 * saved as f64 / wire_off as f64,
            enc_off * 1e6,
            enc_on * 1e6,
            dec_off * 1e6,
            dec_on * 1e6,
            extra * 1e6,
            break_even_mbit,
        );
        size *= 2;
    }
    println!("{line}");
    println!("extra µs = (encode + decode) with Brotli minus without; compression saves time overall");
    println!("on links slower than 'pays below' (saved bytes × 8 / extra µs), CPU time aside.");
}
