//! `peers pair` and `peers join` as real processes: two data directories with running
//! daemons (`peers run --signaling` to a real signaling server on loopback) pair by
//! code and then sync a value without a restart; a wrong code pairs nothing and both
//! sides are told.

mod common;

use std::io::BufReader;
use std::path::Path;
use std::process::{ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cli::{self, Peers, with_server, wrong_code};
use peers_device::daemon::DataDir;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn command(data: &Path, args: &[&str]) -> Command {
    cli::command(Some(data), args)
}

fn ok(data: &Path, args: &[&str]) -> String {
    let out = command(data, args).output().unwrap();
    assert!(out.status.success(), "peers {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn spawn(data: &Path, args: &[&str], stdout: Stdio) -> Peers {
    Peers::spawn(command(data, args), stdout)
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
    let (stdout, code) = pairing.read_code();
    (pairing, stdout, code)
}

/// Waits for `child` (at most `LIMIT`); its exit and its JSON lines.
fn finish(child: Peers, stdout: Option<BufReader<ChildStdout>>) -> (Output, Vec<Value>) {
    child.finish(stdout, LIMIT)
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
    with_server(|url| {
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
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_pairs_nothing_and_both_sides_are_told() {
    with_server(|url| {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        ok(&a, &["init", "--user", "alice"]);
        ok(&b, &["init", "--user", "alice"]);
        let (pairing, pairing_out, code) = start_pair(&a, &url);
        let wrong = wrong_code(&code);

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
    .await;
}
