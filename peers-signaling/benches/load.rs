//! The signaling load bench: P6 and the churn run (`docs/BENCHMARKS.md`,
//! "signaling load (P6) and churn").
//!
//! ```sh
//! cargo bench -p peers-signaling --features load-gen --bench load -- p6
//! cargo bench -p peers-signaling --features load-gen --bench load -- churn
//! cargo bench -p peers-signaling --features load-gen --bench load -- p6 --devices 1000 --seconds 5
//! ```
//!
//! P6: 10,000 registered devices held idle (server memory per device), then
//! 2,000 signals/s of about 1 KiB for 30 s (latency from the sender's timestamp
//! to the receiver, and every message's outcome). Our server (the
//! `peers-signaling` binary, SQLite store) and three baselines in Node
//! (`cd tests && npm ci` first): the PeerJS server (`tests/js/peerjs_server.mjs`,
//! npm `peer` 1.0.2), Node's reference socket.io server with a one-event relay
//! (`socketio_relay_server.mjs`, npm `socket.io`) and a plain WebSocket relay
//! (`ws_relay_server.mjs`, npm `ws`), each run in a child process under the
//! same load from the same generator, one after the other, and the table
//! prints the ratios.
//!
//! churn: 1,000 devices relaying at random for 60 s while each keeps leaving
//! and coming back; every message must end delivered, queued then delivered,
//! expired or rejected. Exits with status 1 on any loss.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use peers_signaling::load::ledger::Counts;
use peers_signaling::load::process::{ServerProcess, ServerStore, load_average, own_fd_limit};
use peers_signaling::load::{ChurnConfig, ChurnReport, Protocol, SteadyConfig, SteadyReport, run_churn, run_steady};

/// The stated PeerJS figures (npm `peer` 1.0.2, 10,000 connections, this
/// machine), printed when the baseline cannot run.
const PEERJS_STATED_KIB_PER_DEVICE: f64 = 7.7;
const PEERJS_STATED_P99_MS: f64 = 7.6;

/// The Node baselines of P6: script in `tests/js/`, the protocol its clients
/// speak, and the row's label (the npm versions are pinned in
/// `tests/package.json`).
const BASELINES: [(&str, Protocol, &str); 3] = [
    ("peerjs_server.mjs", Protocol::PeerJs, "baseline: PeerJS server (npm peer 1.0.2)"),
    ("socketio_relay_server.mjs", Protocol::SocketIo, "baseline: socket.io server (npm socket.io 4.8.4)"),
    ("ws_relay_server.mjs", Protocol::PeerJs, "baseline: ws relay (npm ws 8.23.1)"),
];

#[derive(Debug, Parser)]
#[command(about = "signaling load: P6 against PeerJS, socket.io and ws, and the churn run")]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true, global = true)]
    bench: bool,
    /// The peers-signaling binary [default: the one cargo built with this bench].
    #[arg(long, global = true)]
    server_bin: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// P6: idle memory per device, signal latency, outcomes; the Node baselines beside it.
    P6 {
        #[arg(long, default_value_t = 10_000)]
        devices: usize,
        /// Signals per second.
        #[arg(long, default_value_t = 2_000)]
        rate: u32,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Also measure our server with its in-memory store.
        #[arg(long)]
        memory_row: bool,
        /// Also measure our server with the Redis store, against the Redis at
        /// this URL (for example `redis-server --port 6390 --save ''` and
        /// `redis://127.0.0.1:6390`). Redis's own memory is not counted.
        #[arg(long, value_name = "URL")]
        redis_row: Option<String>,
        /// Skip the Node baselines (print the stated PeerJS figures instead).
        #[arg(long)]
        no_baselines: bool,
        /// node, for the baselines.
        #[arg(long, default_value = "node")]
        node: PathBuf,
    },
    /// Devices going offline and online while relaying; zero silent loss.
    Churn {
        #[arg(long, default_value_t = 1_000)]
        devices: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Signals per second over all devices.
        #[arg(long, default_value_t = 500)]
        rate: u32,
        /// Time to live of each signal, in seconds.
        #[arg(long, default_value_t = 5)]
        ttl: u64,
        /// The server's queue bound per device (a small one makes `queue_full`
        /// rejections happen) [default: the server's, 256].
        #[arg(long)]
        queue_per_device: Option<usize>,
    },
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let server_bin = args.server_bin.unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_peers-signaling")));
    match args.mode.unwrap_or(Mode::P6 {
        devices: 10_000,
        rate: 2_000,
        seconds: 30,
        memory_row: false,
        redis_row: None,
        no_baselines: false,
        node: PathBuf::from("node"),
    }) {
        Mode::P6 { devices, rate, seconds, memory_row, redis_row, no_baselines, node } => {
            let mut config = SteadyConfig::default();
            config.devices = devices;
            config.rate = rate;
            config.duration = Duration::from_secs(seconds);
            config.spread = devices.div_ceil(100).clamp(1, peers_signaling::load::MAX_SOURCE_ADDRESSES);
            p6(&server_bin, &config, memory_row, redis_row, (!no_baselines).then_some(node)).await
        }
        Mode::Churn { devices, seconds, rate, ttl, queue_per_device } => {
            let mut config = ChurnConfig::default();
            config.devices = devices;
            config.duration = Duration::from_secs(seconds);
            config.rate = rate;
            config.ttl = Duration::from_secs(ttl);
            config.spread = devices.div_ceil(50).clamp(1, peers_signaling::load::MAX_SOURCE_ADDRESSES);
            let mut server_args = server_limits(devices);
            if let Some(bound) = queue_per_device {
                server_args.extend(["--queue-per-device".to_owned(), bound.to_string()]);
            }
            churn(&server_bin, &config, &server_args).await
        }
    }
}

fn check_fd_limit(devices: usize) -> anyhow::Result<()> {
    let limit = own_fd_limit().unwrap_or(0);
    if limit < devices as u64 + 256 {
        bail!("the open-file limit is {limit}; {devices} devices need about {}: raise it (ulimit -n)", devices + 256);
    }
    Ok(())
}

fn server_limits(devices: usize) -> Vec<String> {
    // The default connection cap is 10,000; a bigger run raises it.
    if devices > 10_000 { vec!["--max-connections".into(), devices.to_string()] } else { Vec::new() }
}

async fn p6(
    bin: &std::path::Path,
    config: &SteadyConfig,
    memory_row: bool,
    redis_row: Option<String>,
    node: Option<PathBuf>,
) -> anyhow::Result<()> {
    check_fd_limit(config.devices)?;
    let load_before = load_average().unwrap_or_default();
    let mut rows: Vec<(String, SteadyReport)> = Vec::new();
    let data = tempfile::tempdir().context("temporary data directory")?;
    let mut stores = vec![("peers-signaling, SQLite store", ServerStore::Sqlite(data.path().to_path_buf()))];
    if memory_row {
        stores.push(("peers-signaling, memory store", ServerStore::Memory));
    }
    if let Some(url) = redis_row {
        stores.push(("peers-signaling, Redis store", ServerStore::Redis(url)));
    }
    let namespace = peers_signaling::protocol::DEFAULT_NAMESPACE.to_owned();
    for (label, store) in stores {
        eprintln!("running {label} …");
        let server = ServerProcess::signaling(bin, &store, &server_limits(config.devices)).await?;
        let report = run_steady(&server, Protocol::Signaling { namespace: namespace.clone() }, config).await;
        server.stop().await;
        rows.push((label.to_owned(), report.context(label)?));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut notes = Vec::new();
    if let Some(node) = node {
        for (script, protocol, label) in BASELINES {
            let script = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/js/")).join(script);
            eprintln!("running {label} …");
            match ServerProcess::node(&node, &script, config.devices + 100).await {
                Ok(server) => {
                    let report = run_steady(&server, protocol, config).await;
                    server.stop().await;
                    match report {
                        Ok(report) => rows.push((label.to_owned(), report)),
                        Err(err) => notes.push(format!("the run of {label} failed: {err}")),
                    }
                }
                Err(err) => notes.push(format!("{label} did not start ({err}); run `npm ci` in tests/")),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    } else {
        notes.push("the Node baselines skipped (--no-baselines)".into());
    }
    print_p6(config, &rows, &notes, load_before);
    Ok(())
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn print_p6(config: &SteadyConfig, rows: &[(String, SteadyReport)], notes: &[String], load_before: f64) {
    let line = "-".repeat(156);
    println!(
        "signaling load (P6): {} devices, {} signals/s of ~{} B for {} s; generator: one process, 2 tokio workers; servers: child processes, one at a time",
        config.devices,
        config.rate,
        config.body_bytes,
        config.duration.as_secs()
    );
    println!("{line}");
    println!(
        "{:<50}{:>9}{:>10}{:>10}{:>10}{:>8}{:>8}{:>8}{:>8}{:>8}{:>6}{:>6}{:>8}{:>7}{:>7}",
        "server",
        "connect",
        "idle RSS",
        "KiB/dev",
        "after",
        "p50",
        "p95",
        "p99",
        "max",
        "sent",
        "lost",
        "rej",
        "rate/s",
        "srvCPU",
        "genCPU"
    );
    println!(
        "{:<50}{:>9}{:>10}{:>10}{:>10}{:>8}{:>8}{:>8}{:>8}{:>8}{:>6}{:>6}{:>8}{:>7}{:>7}",
        "", "s", "MiB", "", "MiB", "ms", "ms", "ms", "ms", "", "", "", "", "%", "%"
    );
    println!("{line}");
    for (label, r) in rows {
        println!(
            "{:<50}{:>9.1}{:>10.1}{:>10.2}{:>10.1}{:>8.2}{:>8.2}{:>8.2}{:>8.1}{:>8}{:>6}{:>6}{:>8.0}{:>7.0}{:>7.0}",
            label,
            r.connect_seconds,
            r.rss_idle as f64 / 1048576.0,
            r.idle_bytes_per_device() / 1024.0,
            r.rss_after as f64 / 1048576.0,
            ms(r.latency.p50),
            ms(r.latency.p95),
            ms(r.latency.p99),
            ms(r.latency.max),
            r.counts.sent,
            r.counts.lost_total(),
            r.counts.rejected_total(),
            r.pace.achieved_rate(),
            100.0 * r.server_cpu / r.relay_wall.max(1e-9),
            100.0 * r.generator_cpu / r.relay_wall.max(1e-9),
        );
    }
    println!("{line}");
    if let Some((_, ours)) = rows.first() {
        let baselines: Vec<_> = rows.iter().filter(|(label, _)| label.starts_with("baseline")).collect();
        for (label, b) in &baselines {
            let name = label.trim_start_matches("baseline: ");
            println!(
                "ours / {name}: memory per idle device {:.2}, p99 {:.2}   (target: both < 1.00)",
                ours.idle_bytes_per_device() / b.idle_bytes_per_device().max(1e-9),
                ms(ours.latency.p99) / ms(b.latency.p99).max(1e-9)
            );
        }
        if baselines.is_empty() {
            println!(
                "ours / PeerJS (the stated figures): memory per idle device {:.2}, p99 {:.2}   (target: both < 1.00)",
                ours.idle_bytes_per_device() / 1024.0 / PEERJS_STATED_KIB_PER_DEVICE,
                ms(ours.latency.p99) / PEERJS_STATED_P99_MS
            );
        }
    }
    println!(
        "stated bar (PeerJS 1.0.2 at 10,000 connections on this machine): {PEERJS_STATED_KIB_PER_DEVICE} KiB per idle connection, p99 {PEERJS_STATED_P99_MS} ms, 0 lost"
    );
    for note in notes {
        println!("note: {note}");
    }
    for (label, r) in rows {
        print_details(label, r);
    }
    println!("load average before the run: {load_before:.2}; after: {:.2}", load_average().unwrap_or_default());
}

fn print_details(label: &str, r: &SteadyReport) {
    let mut notes = Vec::new();
    if r.pace.skipped > 0
        || r.pace.achieved_rate() < 0.98 * (r.pace.issued + r.pace.skipped) as f64 / r.pace.seconds.max(1e-9)
    {
        notes.push(format!("{} signals skipped by the generator (full inboxes)", r.pace.skipped));
    }
    if r.pace.max_due_at_once > 20 {
        notes.push(format!("the pacer fell behind by up to {} signals at one tick", r.pace.max_due_at_once));
    }
    let (server, generator) = (r.server_cpu / r.relay_wall.max(1e-9), r.generator_cpu / r.relay_wall.max(1e-9));
    if server + generator > 1.7 {
        let who = if generator > server {
            "the generator used more of it than the server"
        } else {
            "the server used most of it"
        };
        notes.push(format!("both cores were nearly busy ({:.0}% together): {who}", 100.0 * (server + generator)));
    } else if generator > 0.9 {
        notes.push(format!("the generator used {:.0}% CPU: it may be the limit", 100.0 * generator));
    }
    if r.unexpected_closes > 0 {
        notes.push(format!("{} connections closed by the server", r.unexpected_closes));
    }
    if !r.notices.is_empty() {
        notes.push(format!("server notices: {:?}", r.notices));
    }
    if !r.counts.rejected.is_empty() {
        notes.push(format!("rejected: {:?}", r.counts.rejected));
    }
    if !r.counts.lost.is_empty() {
        notes.push(format!("lost: {:?}", r.counts.lost));
    }
    println!(
        "{label}: RSS before {:.1} MiB; {} latency samples; signal phase {:.1} s wall, server {:.1} s CPU, generator {:.1} s CPU{}",
        r.rss_before as f64 / 1048576.0,
        r.latency.count,
        r.relay_wall,
        r.server_cpu,
        r.generator_cpu,
        if notes.is_empty() { String::new() } else { format!("; {}", notes.join("; ")) }
    );
}

async fn churn(bin: &std::path::Path, config: &ChurnConfig, server_args: &[String]) -> anyhow::Result<()> {
    check_fd_limit(config.devices)?;
    let data = tempfile::tempdir().context("temporary data directory")?;
    let server = ServerProcess::signaling(bin, &ServerStore::Sqlite(data.path().to_path_buf()), server_args).await?;
    let namespace = peers_signaling::protocol::DEFAULT_NAMESPACE;
    let report = run_churn(server.addr, namespace, config).await;
    let rss = server.rss().unwrap_or_default();
    server.stop().await;
    let report = report?;
    print_churn(config, &report, rss);
    if !report.counts.is_clean() {
        bail!("silent loss: {} messages without an outcome", report.counts.lost_total());
    }
    Ok(())
}

fn print_churn(config: &ChurnConfig, r: &ChurnReport, rss: u64) {
    let c: &Counts = &r.counts;
    let line = "-".repeat(72);
    println!(
        "signaling churn: {} devices for {} s, {} signals/s of ~{} B, time to live {} s, online {:?}..{:?}, offline {:?}..{:?}",
        config.devices,
        config.duration.as_secs(),
        config.rate,
        config.body_bytes,
        config.ttl.as_secs(),
        config.online.0,
        config.online.1,
        config.offline.0,
        config.offline.1
    );
    println!("{line}");
    let row = |name: &str, value: u64| println!("{name:<56}{value:>16}");
    row("messages sent", c.sent);
    row("  delivered at once (reply delivered, received)", c.delivered);
    row("  queued, then delivered (outcome delivered, received)", c.queued_then_delivered);
    row("  queued, then expired (outcome expired)", c.expired_in_queue);
    row("  expired at once (reply expired)", c.expired_at_once);
    for (code, n) in &c.rejected {
        row(&format!("  rejected: {code}"), *n);
    }
    row("  LOST (no final outcome)", c.lost_total());
    for (why, n) in &c.lost {
        row(&format!("    {why}"), *n);
    }
    row("duplicates received", c.duplicates);
    row("events about unknown messages", c.unknown);
    println!("{line}");
    row("registrations (incl. the first)", r.registrations);
    row("departures (leave, then close)", r.departures);
    row("connect attempts that failed (retried)", r.connect_failures);
    row("connections closed by the server unasked", r.unexpected_closes);
    row("signals skipped by the generator", r.pace.skipped);
    println!("{:<56}{:>16}", "server notices", format!("{:?}", r.notices));
    println!("{:<56}{:>16.2}", "settle time after the churn, s", r.settle_seconds);
    println!(
        "{:<56}{:>16}",
        "direct signal latency p50 / p99 / max, ms",
        format!("{:.2} / {:.2} / {:.1}", ms(r.latency.p50), ms(r.latency.p99), ms(r.latency.max))
    );
    println!("{:<56}{:>16.1}", "server RSS at the end, MiB", rss as f64 / 1048576.0);
    println!("{line}");
    println!(
        "result: {}",
        if c.is_clean() { "zero silent loss: every message ended with an outcome" } else { "LOSS: see above" }
    );
}
