//! Side by side: our `Connection` against the stacks users would pick instead, in
//! the same run on the same machine.
//!
//! Each stack does the same round ([`common`]): connect until authenticated, a first
//! 64 B echo, sequential 64 B echoes, then a stream written in 1 MiB, 64 KiB, 16 KiB
//! and 1 KiB pieces with an acknowledgement at the end, and 1 MiB pieces the other
//! way. Every (stack, round) runs in its own process, with the listener and the
//! dialer each on a current-thread runtime on its own thread, after a warm-up round
//! in that process; rounds are interleaved across stacks and the best round of each
//! figure counts. Then handshakes per second, ours against `snow` and libp2p's Noise.
//!
//! ```text
//! cargo run --release --manifest-path benches/compare/Cargo.toml            # ~3 min
//! cargo run --release --manifest-path benches/compare/Cargo.toml -- --quick
//! ... -- --rounds 5 --mib 256 --stacks tcp,quinn,peers-socketio
//! ```

mod common;
mod handshake;
mod iroh_stack;
mod ours;
mod p2p;
mod quic;
mod tcp;

use std::process::Command;
use std::time::Duration;

use common::{Figures, MIB, Params};

/// Every stack, in the table's column order; the peers are the middle three.
const STACKS: [&str; 6] = ["tcp", "quinn", "iroh", "libp2p", "peers-socketio", "peers-webrtc"];
const PEERS: [&str; 3] = ["quinn", "iroh", "libp2p"];

fn run_round(stack: &str, params: &Params) -> Figures {
    match stack {
        "tcp" => tcp::round(params),
        "quinn" => quic::round(params),
        "iroh" => iroh_stack::round(params),
        "libp2p" => p2p::round(params),
        "peers-socketio" => ours::socketio_round(params),
        "peers-webrtc" => ours::webrtc_round(params),
        other => panic!("unknown stack {other:?}"),
    }
}

struct Options {
    rounds: usize,
    params: Params,
    stacks: Vec<String>,
    handshake_budget: Duration,
}

fn options(args: &[String]) -> Options {
    let quick = args.iter().any(|a| a == "--quick");
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let number = |name: &str, default: usize| value(name).map_or(default, |v| v.parse().expect(name));
    Options {
        rounds: number("--rounds", if quick { 1 } else { 3 }),
        params: Params {
            echoes: number("--echoes", if quick { 2_000 } else { 10_000 }),
            stream_bytes: number("--mib", if quick { 16 } else { 64 }) * MIB,
        },
        stacks: value("--stacks").map_or_else(
            || STACKS.iter().map(|s| s.to_string()).collect(),
            |v| v.split(',').map(String::from).collect(),
        ),
        handshake_budget: Duration::from_secs(if quick { 1 } else { 3 }),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        // One measured round of one stack, after a warm-up round in this process.
        let stack = &args[i + 1];
        let params: Params = serde_json::from_str(&args[i + 2]).unwrap();
        run_round(stack, &Params { echoes: 10, stream_bytes: MIB });
        println!("{}", serde_json::to_string(&run_round(stack, &params)).unwrap());
        return;
    }
    let options = options(&args);
    let mut results: Vec<Vec<Figures>> = vec![Vec::new(); options.stacks.len()];
    for round in 0..options.rounds {
        for (stack, results) in options.stacks.iter().zip(&mut results) {
            eprintln!("round {}/{}: {stack}", round + 1, options.rounds);
            let out = Command::new(std::env::current_exe().unwrap())
                .args(["--child", stack, &serde_json::to_string(&options.params).unwrap()])
                .output()
                .unwrap();
            assert!(out.status.success(), "{stack}: {}", String::from_utf8_lossy(&out.stderr));
            results.push(serde_json::from_slice(&out.stdout).unwrap());
        }
    }
    let best: Vec<Figures> = results.iter().map(|r| Figures::best(r)).collect();
    print_table(&options, &best);
    print_handshakes(&handshake::measure(options.handshake_budget));
}

fn print_table(options: &Options, best: &[Figures]) {
    println!(
        "side by side: best of {} interleaved rounds, one process per stack and round; {} MiB per stream cell; {} echoes",
        options.rounds,
        options.params.stream_bytes / MIB,
        options.params.echoes
    );
    let width = 22 + 15 * (options.stacks.len() + 2);
    println!("{}", "-".repeat(width));
    print!("{:<22}", "figure");
    for stack in &options.stacks {
        print!("{stack:>15}");
    }
    println!("{:>15}{:>15}", "sio/peer", "rtc/peer");
    println!("{}", "-".repeat(width));
    let column = |name: &str| options.stacks.iter().position(|s| s == name);
    let rows: [(&str, fn(&Figures) -> f64, bool); 8] = [
        ("connect, ms", |f| f.connect_ms, false),
        ("+ first echo, ms", |f| f.first_echo_ms, false),
        ("64 B round trips/s", |f| f.round_trips_per_s, true),
        ("MB/s, 1 MiB writes", |f| f.mb_per_s[0], true),
        ("MB/s, 64 KiB writes", |f| f.mb_per_s[1], true),
        ("MB/s, 16 KiB writes", |f| f.mb_per_s[2], true),
        ("MB/s, 1 KiB writes", |f| f.mb_per_s[3], true),
        ("MB/s, back, 1 MiB", |f| f.mb_per_s[4], true),
    ];
    for (name, get, higher_is_better) in rows {
        print!("{name:<22}");
        for figures in best {
            let v = get(figures);
            if v < 10.0 { print!("{v:>15.2}") } else { print!("{v:>15.0}") }
        }
        // The best peer library's figure, and ours against it (above 1 is better).
        let peers: Vec<f64> = PEERS.iter().filter_map(|p| column(p)).map(|i| get(&best[i])).collect();
        let best_peer = if higher_is_better {
            peers.iter().copied().fold(f64::NAN, f64::max)
        } else {
            peers.iter().copied().fold(f64::NAN, f64::min)
        };
        for ours in ["peers-socketio", "peers-webrtc"] {
            match column(ours) {
                Some(i) if !best_peer.is_nan() => {
                    let v = get(&best[i]);
                    print!("{:>15.2}", if higher_is_better { v / best_peer } else { best_peer / v });
                }
                _ => print!("{:>15}", "-"),
            }
        }
        println!();
    }
    println!("{}", "-".repeat(width));
    println!(
        "sio/peer, rtc/peer: ours over socket.io / WebRTC against the best of quinn, iroh, libp2p; above 1 is better."
    );
}

fn print_handshakes(table: &handshake::HandshakeTable) {
    println!();
    println!("handshakes, both ends on one thread, best of 3 interleaved rounds");
    println!(
        "{:<52}{:>12}{:>12}{:>12}{:>12}{:>12}",
        "handshake", "per s", "us each", "ours/this", "first/this", "older/this"
    );
    let (ours, first, older) = (table.rows[0].1, table.rows[1].1, table.rows[2].1);
    for (name, rate) in &table.rows {
        println!(
            "{name:<52}{rate:>12.0}{:>12.1}{:>12.2}{:>12.2}{:>12.2}",
            1e6 / rate,
            rate / ours,
            rate / first,
            rate / older
        );
    }
    let snow_us = 1e6 / table.rows[3].1;
    println!(
        "ours costs {:.1} us more than snow (SHA-256) per handshake for a known peer (the claim, payload encoding, replay guard and certificate cache), {:.1} us more at first contact, and {:.1} us more at first contact with older key files, where the 2 strict certificate verifications alone cost {:.1} us",
        1e6 / ours - snow_us,
        1e6 / first - snow_us,
        1e6 / older - snow_us,
        table.verifications_us,
    );
    println!(
        "ours/this, first/this, older/this: our time per handshake (known peer, first contact, first contact with older key files) over this row's; below 1.2 is the target against snow."
    );
}
