//! The `peers` binary end to end: two daemons on loopback, set up with init,
//! info and trust, sync a value written with `put`, read with `get`, and
//! `status` shows the connection and its class.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PEERS: &str = env!("CARGO_BIN_EXE_peers");

fn peers(data: &Path, args: &[&str]) -> Output {
    Command::new(PEERS).arg("--data-dir").arg(data).args(args).output().unwrap()
}

fn ok(data: &Path, args: &[&str]) -> String {
    let out = peers(data, args);
    assert!(out.status.success(), "peers {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn share_code(info: &str) -> String {
    info.lines().find_map(|l| l.strip_prefix("share code ")).unwrap().trim().to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(data: &Path, port: u16) -> Daemon {
    run_with(data, &["--listen", &format!("127.0.0.1:{port}")])
}

fn run_with(data: &Path, args: &[&str]) -> Daemon {
    let child = Command::new(PEERS)
        .arg("--data-dir")
        .arg(data)
        .args(["run", "--group", "notes"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Daemon(child)
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_daemons_sync_a_value_and_report_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (port_a, port_b) = (free_port(), free_port());
    ok(&a, &["init", "--user", "alice"]);
    ok(&b, &["init", "--user", "alice"]);
    assert!(!peers(&a, &["init"]).status.success(), "init twice must fail");
    let code_a = share_code(&ok(&a, &["info", "--advertise", &format!("http://127.0.0.1:{port_a}")]));
    let code_b = share_code(&ok(&b, &["info", "--advertise", &format!("http://127.0.0.1:{port_b}")]));
    ok(&a, &["trust", &code_b, "--group", "notes"]);
    ok(&b, &["trust", &code_a, "--group", "notes"]);
    assert!(!peers(&a, &["trust", "PEERS1NOTACODE"]).status.success());

    // Written before the daemons run: kept in the database, synced later.
    ok(&a, &["put", "notes", "early", "bird"]);
    let _da = run(&a, port_a);
    let _db = run(&b, port_b);
    eventually("the daemons to answer", || peers(&a, &["status"]).status.success());
    ok(&a, &["put", "notes", "greeting", "hello from a"]);
    eventually("b to get the value", || {
        let out = peers(&b, &["get", "notes", "greeting"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "hello from a"
    });
    assert_eq!(ok(&b, &["get", "notes", "early"]).trim(), "bird");
    let status = ok(&b, &["status"]);
    assert!(status.contains("local") && status.contains("socket.io"), "{status}");
    assert!(!peers(&b, &["get", "notes", "missing"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_without_listeners_meet_through_the_signaling_server() {
    let server = peers_signaling::SignalingServer::bind(peers_signaling::ServerConfig::in_memory()).await.unwrap();
    let url = server.url().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(&a, &["init"]);
    ok(&b, &["init"]);
    let (code_a, code_b) = (share_code(&ok(&a, &["info"])), share_code(&ok(&b, &["info"])));
    ok(&a, &["trust", &code_b, "--group", "notes"]);
    ok(&b, &["trust", &code_a, "--group", "notes"]);
    let _da = run_with(&a, &["--signaling", &url]);
    let _db = run_with(&b, &["--signaling", &url]);
    let (a2, b2) = (a.clone(), b.clone());
    tokio::task::spawn_blocking(move || {
        eventually("the daemons to answer", || peers(&a2, &["status"]).status.success());
        ok(&a2, &["put", "notes", "met", "through signaling"]);
        eventually("b to get the value", || {
            let out = peers(&b2, &["get", "notes", "met"]);
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "through signaling"
        });
        // They end on WebRTC (the relay, if it came first, gave way).
        eventually("a WebRTC connection", || {
            let status = ok(&b2, &["status"]);
            status.lines().any(|l| l.contains("webrtc-direct") && l.contains(" yes "))
        });
    })
    .await
    .unwrap();
    server.shutdown().await;
}
