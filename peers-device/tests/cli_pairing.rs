//! `peers pair` and `peers join` as real processes: two data directories with running
//! daemons (`peers run --signaling` to a real signaling server on loopback) pair by
//! code and then sync a value without a restart; a wrong code pairs nothing and both
//! sides are told.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use peers_device::daemon::DataDir;
use peers_signaling::{ServerConfig, SignalingServer};
use serde_json::Value;

const PEERS: &str = env!("CARGO_BIN_EXE_peers");
const LIMIT: Duration = Duration::from_secs(60);

/// A child killed when dropped (a failed assertion leaves no process behind).
struct Peers(Child);

impl Drop for Peers {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn command(data: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(PEERS);
    command.arg("--data-dir").arg(data).args(args).env_remove("PEERS_SIGNALING_URL").env_remove("PEERS_ADVERTISE");
    command
}

fn ok(data: &Path, args: &[&str]) -> String {
    let out = command(data, args).output().unwrap();
    assert!(out.status.success(), "peers {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn spawn(data: &Path, args: &[&str], stdout: Stdio) -> Peers {
    Peers(command(data, args).stdin(Stdio::null()).stdout(stdout).stderr(Stdio::piped()).spawn().unwrap())
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `peers pair --json` on `data` and reads its code from the first line.
fn start_pair(data: &Path, url: &str) -> (Peers, BufReader<ChildStdout>, String) {
    let mut pairing = spawn(data, &["pair", "--group", "notes", "--json", "--signaling", url], Stdio::piped());
    let mut stdout = BufReader::new(pairing.0.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let event: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{first:?}: {e}"));
    assert_eq!(event["event"], "code", "{event}");
    (pairing, stdout, event["code"].as_str().unwrap().to_owned())
}

/// Waits for `child` (at most `LIMIT`); its exit and its JSON lines.
fn finish(mut child: Peers, stdout: Option<BufReader<ChildStdout>>) -> (Output, Vec<Value>) {
    let start = Instant::now();
    while child.0.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < LIMIT, "peers still running after {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut rest = String::new();
    match stdout {
        Some(mut stdout) => std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap(),
        None => std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut rest).unwrap(),
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let status = child.0.wait().unwrap();
    let events = rest.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"))).collect();
    (Output { status, stdout: rest.into_bytes(), stderr: stderr.into_bytes() }, events)
}

fn device_id(data: &Path) -> String {
    DataDir::new(data).keys().unwrap().device_id().to_string()
}

fn trusted_ids(data: &Path) -> Vec<String> {
    let trusted = DataDir::new(data).trusted().unwrap();
    trusted.iter().map(|t| t.info().unwrap().device_id.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paired_daemons_sync_a_group_without_a_restart() {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let url = server.url().unwrap();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        ok(&a, &["init", "--user", "alice"]);
        ok(&b, &["init", "--user", "alice"]);
        let run = ["run", "--group", "notes", "--signaling", &url];
        let _da = spawn(&a, &run, Stdio::null());
        let _db = spawn(&b, &run, Stdio::null());
        eventually("the daemons to answer", || {
            command(&a, &["status"]).output().unwrap().status.success()
                && command(&b, &["status"]).output().unwrap().status.success()
        });
        ok(&a, &["put", "notes", "before", "written before pairing"]);

        let (pairing, pairing_out, code) = start_pair(&a, &url);
        let joining = spawn(&b, &["join", &code, "--json", "--signaling", &url], Stdio::piped());
        let (joined, join_events) = finish(joining, None);
        assert!(joined.status.success(), "join: {}", String::from_utf8_lossy(&joined.stderr));
        let (paired, pair_events) = finish(pairing, Some(pairing_out));
        assert!(paired.status.success(), "pair: {}", String::from_utf8_lossy(&paired.stderr));
        let (id_a, id_b) = (device_id(&a), device_id(&b));
        let last = pair_events.last().unwrap();
        assert_eq!((last["event"].as_str(), last["device"].as_str()), (Some("paired"), Some(id_b.as_str())), "{last}");
        assert_eq!(last["groups"], serde_json::json!(["notes"]));
        let last = join_events.last().unwrap();
        assert_eq!((last["event"].as_str(), last["device"].as_str()), (Some("paired"), Some(id_a.as_str())), "{last}");
        assert_eq!(last["groups"], serde_json::json!(["notes"]));
        // The running daemons wrote it down too (they keep it after a restart).
        assert_eq!(trusted_ids(&a), vec![id_b]);
        assert_eq!(trusted_ids(&b), vec![id_a]);

        // No restart: the daemons connect and sync, both ways.
        eventually("b to get the value written before pairing", || {
            let out = command(&b, &["get", "notes", "before"]).output().unwrap();
            out.status.success() && out.stdout == b"written before pairing"
        });
        ok(&b, &["put", "notes", "reply", "from b"]);
        eventually("a to get b's value", || {
            let out = command(&a, &["get", "notes", "reply"]).output().unwrap();
            out.status.success() && out.stdout == b"from b"
        });
    })
    .await
    .unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_pairs_nothing_and_both_sides_are_told() {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let url = server.url().unwrap();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        ok(&a, &["init", "--user", "alice"]);
        ok(&b, &["init", "--user", "alice"]);
        let (pairing, pairing_out, code) = start_pair(&a, &url);
        let number = code.split('-').next().unwrap();
        let last = code.rsplit('-').next().unwrap();
        let wrong = format!("{number}-zebra-{}", if last == "apple" { "acorn" } else { "apple" });
        let wrong = if wrong == code { format!("{number}-yogurt-apple") } else { wrong };

        let joining = spawn(&b, &["join", &wrong, "--json", "--signaling", &url], Stdio::piped());
        let (joined, join_events) = finish(joining, None);
        let (paired, pair_events) = finish(pairing, Some(pairing_out));
        for (side, out, events) in [("join", &joined, &join_events), ("pair", &paired, &pair_events)] {
            assert!(!out.status.success(), "{side} succeeded with a wrong code");
            let last = events.last().unwrap();
            assert_eq!(last["event"], "error", "{side}: {last}");
            assert!(last["message"].as_str().unwrap().contains("code did not match"), "{side}: {last}");
        }
        assert!(trusted_ids(&a).is_empty() && trusted_ids(&b).is_empty());
        // The code is burnt: the right words no longer pair.
        let late = command(&b, &["join", &code, "--signaling", &url]).output().unwrap();
        assert!(!late.status.success());
        assert!(trusted_ids(&b).is_empty());
    })
    .await
    .unwrap();
    server.shutdown().await;
}
