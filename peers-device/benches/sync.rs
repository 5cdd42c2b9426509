//! Sync throughput and catch-up, as a program printing a table.
//!
//! - Changes applied per second between two devices connected over socket.io on
//!   loopback (file-backed SQLite), against the rate the same device writes them
//!   locally (the floor: each change is written once on each side).
//! - The time a new device takes to catch up on 100,000 changes over socket.io,
//!   against the same pull in process (engine to engine, no network, no RPC).
//!
//! Each figure is the median of three (or `--rounds`) interleaved rounds on fresh devices: the
//! machine is shared, and one round says little.
//!
//! `cargo bench -p peers-device --bench sync` (`-- --quick` for a smaller run, `--
//! --changes N` for N changes in the live rounds instead of 20,000, `-- --page
//! N` for pages of N changes instead of the engine's default, `-- --rounds N`
//! for N rounds instead of three, `-- --no-compression` to see what the
//! codec's compression costs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use peers_device::sync::{
    ChangeBatch, ChangeNotice, EngineOptions, ListChanges, NetworkInfo, PeerDevice, SqliteSyncEngine, SyncGroup,
};
use peers_device::transports::{SocketIoDialer, SocketIoListener};
use peers_device::{ConnectionManager, GroupId, ManagerConfig};
use peers_sdk::codec::Compression;
use peers_sdk::{ConnectionConfig, DeviceId, DeviceInfo, DeviceKeys, TrustLevel};
use peers_transport_socketio::{ClientOptions, ServerOptions, SocketIoServer};

struct Device {
    id: DeviceId,
    manager: ConnectionManager,
    engine: SqliteSyncEngine,
}

/// What the devices are made with: the engine's options, and whether
/// connections compress (`--no-compression`, a diagnostic that shows what the
/// codec's Brotli costs; the figures to quote use the default).
struct Setup {
    options: EngineOptions,
    compress: bool,
}

async fn device(dir: &std::path::Path, name: &str, group: &GroupId, setup: &Setup) -> Device {
    let keys = Arc::new(DeviceKeys::generate(name).unwrap());
    let trust = |_: &DeviceInfo| TrustLevel::Trusted;
    let mut config = ConnectionConfig::new(keys.clone(), trust);
    if !setup.compress {
        config.codec.compression = Compression::Off;
    }
    let manager = ConnectionManager::new(ManagerConfig::new(config));
    let options = &setup.options;
    let path = dir.join(format!("{name}.sqlite3"));
    let engine = SqliteSyncEngine::open(path, group.clone(), keys.device_id(), options.clone()).await.unwrap();
    Device { id: keys.device_id(), manager, engine }
}

/// `from` listens; `to` dials it over socket.io and both sync `group`.
async fn connect(from: &Device, to: &Device) -> SocketIoListener {
    from.manager.add_group(Arc::new(from.engine.clone()), [to.id]).await;
    to.manager.add_group(Arc::new(to.engine.clone()), [from.id]).await;
    let server = SocketIoServer::bind(ServerOptions::default()).await.unwrap();
    let listener = SocketIoListener::start(from.manager.clone(), server);
    let dialer = SocketIoDialer::new(ClientOptions::default());
    dialer.set_urls(from.id, vec![listener.url().to_owned()]);
    to.manager.add_dialer(Arc::new(dialer));
    to.manager.keep_connected(from.id);
    listener
}

async fn wait_same(a: &SqliteSyncEngine, b: &SqliteSyncEngine) {
    while a.info().digest != b.info().digest {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn write(engine: &SqliteSyncEngine, prefix: &str, count: usize, batch: usize) {
    for start in (0..count).step_by(batch) {
        let items = (start..(start + batch).min(count))
            .map(|i| (format!("{prefix}{i:08}"), Some(format!("value {i} with some text").into_bytes())))
            .collect();
        engine.put_many(items).await.unwrap();
    }
}

/// In-process member: calls the other engine directly.
struct Direct {
    engine: SqliteSyncEngine,
    id: DeviceId,
    caller: DeviceId,
}

#[async_trait]
impl PeerDevice for Direct {
    fn device_id(&self) -> DeviceId {
        self.id
    }
    async fn list_changes(&self, request: ListChanges) -> peers_device::Result<ChangeBatch> {
        self.engine.list_changes(&self.caller, request).await
    }
    async fn get_network_info(&self) -> peers_device::Result<NetworkInfo> {
        self.engine.get_network_info(&self.caller).await
    }
    async fn notify_of_changes(&self, _: ChangeNotice) -> peers_device::Result<()> {
        Ok(())
    }
}

/// CPU time the whole process has used so far (user and system, every
/// thread), from `/proc/self/stat` in ticks of 10 ms; `None` where there is no
/// such file. On a shared machine the wall-clock rates move with the other
/// load; the CPU spent per change moves much less.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name (which ends at the last ')'), utime and stime
    // are the 12th and 13th fields.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The median of `values`.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let (mut live, catch_up) = if quick { (2_000, 10_000) } else { (20_000, 100_000) };
    if let Some(n) = args.iter().position(|a| a == "--changes").and_then(|i| args.get(i + 1)) {
        live = n.parse().expect("--changes takes a number");
    }
    // `--page N`: changes per page (the engine's page size and its cap on a
    // page it serves or applies); the engine's default otherwise.
    let mut options = EngineOptions::default();
    if let Some(n) = args.iter().position(|a| a == "--page").and_then(|i| args.get(i + 1)) {
        options.page_size = n.parse().expect("--page takes a number");
        options.limits.max_batch_changes = options.page_size as usize;
    }
    let setup = Setup { options, compress: !args.iter().any(|a| a == "--no-compression") };
    // `--rounds N`: interleaved rounds per figure (default 3); on a loaded
    // machine one slow round moves a median of three.
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map_or(3, |n| n.parse().expect("--rounds takes a number"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let group = GroupId::new("bench").unwrap();

        // Interleaved rounds, each on fresh devices: the local write rate (the
        // floor), batches of 100, then the same writes on a device whose peer
        // follows over socket.io.
        let (mut local, mut synced, mut written_on_a) = (Vec::new(), Vec::new(), Vec::new());
        let (mut local_cpu, mut synced_cpu) = (Vec::new(), Vec::new());
        let per_change_us = |from: Option<f64>| match (from, cpu_seconds()) {
            (Some(from), Some(to)) => Some((to - from) * 1e6 / live as f64),
            _ => None,
        };
        for round in 0..rounds {
            let solo = device(dir.path(), &format!("solo{round}"), &group, &setup).await;
            let (started, cpu) = (Instant::now(), cpu_seconds());
            write(&solo.engine, "k", live, 100).await;
            local.push(live as f64 / started.elapsed().as_secs_f64());
            local_cpu.extend(per_change_us(cpu));

            let a = device(dir.path(), &format!("a{round}"), &group, &setup).await;
            let b = device(dir.path(), &format!("b{round}"), &group, &setup).await;
            let listener = connect(&a, &b).await;
            while b.manager.connection(&a.id).is_none() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let (started, cpu) = (Instant::now(), cpu_seconds());
            write(&a.engine, "k", live, 100).await;
            written_on_a.push(live as f64 / started.elapsed().as_secs_f64());
            wait_same(&a.engine, &b.engine).await;
            synced.push(live as f64 / started.elapsed().as_secs_f64());
            synced_cpu.extend(per_change_us(cpu));
            listener.shutdown().await;
            a.manager.shutdown().await;
            b.manager.shutdown().await;
        }

        // Catch-up of a new device on `catch_up` changes, in process and over
        // socket.io, interleaved.
        let source = device(dir.path(), "source", &group, &setup).await;
        write(&source.engine, "c", catch_up, 1_000).await;
        let (mut in_process, mut over_socketio) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let direct = device(dir.path(), &format!("direct{round}"), &group, &setup).await;
            let started = Instant::now();
            let peer = Direct { engine: source.engine.clone(), id: source.id, caller: direct.id };
            direct.engine.peer_ready(Arc::new(peer)).await;
            direct.engine.sync_now(&source.id).await.unwrap();
            wait_same(&source.engine, &direct.engine).await;
            in_process.push(started.elapsed().as_secs_f64());
            let newcomer = device(dir.path(), &format!("newcomer{round}"), &group, &setup).await;
            let started = Instant::now();
            let listener = connect(&source, &newcomer).await;
            wait_same(&source.engine, &newcomer.engine).await;
            over_socketio.push(started.elapsed().as_secs_f64());
            listener.shutdown().await;
            newcomer.manager.shutdown().await;
        }
        let ratios = |num: &[f64], den: &[f64]| median(num.iter().zip(den).map(|(n, d)| n / d).collect());
        let synced_ratio = ratios(&synced, &local);
        let catch_up_ratio = ratios(&in_process, &over_socketio);
        let a_ratio = ratios(&written_on_a, &local);
        let (local, synced, written_on_a) = (median(local), median(synced), median(written_on_a));
        let (in_process, over_socketio) = (median(in_process), median(over_socketio));

        println!("sync benchmark: two devices in one process, socket.io on loopback, SQLite files (WAL)");
        println!("median of {rounds} interleaved rounds; ratio: the median of the rounds' ratios");
        let compression = if setup.compress { "compressed as configured by default" } else { "NOT compressed" };
        println!("pages of {} changes, {compression}", setup.options.page_size);
        let line = "-".repeat(84);
        println!("{line}");
        println!("{:<58} {:>12} {:>10}", "measure", "value", "ratio");
        println!("{line}");
        println!("{:<58} {:>10.0}/s {:>10}", format!("local writes, batches of 100 ({live} changes)"), local, "-");
        println!("{:<58} {:>10.0}/s {:>10.2}", "written on A and applied on B over socket.io", synced, synced_ratio);
        println!("{:<58} {:>10.0}/s {:>10.2}", "  of which A's writes alone (while B follows)", written_on_a, a_ratio);
        println!(
            "{:<58} {:>10.2} s {:>10}",
            format!("catch-up on {catch_up} changes, in process (no network)"),
            in_process,
            "-"
        );
        println!(
            "{:<58} {:>10.2} s {:>10.2}",
            format!("catch-up on {catch_up} changes over socket.io (connect included)"),
            over_socketio,
            catch_up_ratio
        );
        if !local_cpu.is_empty() && !synced_cpu.is_empty() {
            let (local_cpu, synced_cpu) = (median(local_cpu), median(synced_cpu));
            println!("{:<58} {:>9.2} us {:>10}", "CPU per change, local writes", local_cpu, "-");
            println!(
                "{:<58} {:>9.2} us {:>10.2}",
                "CPU per change, written on A and applied on B",
                synced_cpu,
                local_cpu / synced_cpu
            );
        }
        println!("{line}");
        println!("ratio: our path's rate over the baseline's (1.00 = no cost over the baseline)");
    });
}
