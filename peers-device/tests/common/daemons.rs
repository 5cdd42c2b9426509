//! Daemons (`peers run`) as real processes for the command-line tests: two data
//! directories that trust each other, a daemon killed when dropped, waiting for a
//! condition.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::cli::peers_bin;

/// `peers --data-dir DATA ARGS...`, run to its end.
pub fn peers(data: &Path, args: &[&str]) -> Output {
    Command::new(peers_bin()).arg("--data-dir").arg(data).args(args).output().unwrap()
}

/// `peers` that must succeed; its standard output.
pub fn ok(data: &Path, args: &[&str]) -> String {
    let out = peers(data, args);
    assert!(out.status.success(), "peers {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The share code `peers info` printed.
pub fn share_code(info: &str) -> String {
    info.lines().find_map(|l| l.strip_prefix("share code ")).unwrap().trim().to_owned()
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `peers run`, killed when dropped.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `peers run --group notes` listening on `port`.
pub fn run(data: &Path, port: u16) -> Daemon {
    run_with(data, &["--listen", &format!("127.0.0.1:{port}")])
}

/// `peers run --group notes` with `args`.
pub fn run_with(data: &Path, args: &[&str]) -> Daemon {
    spawn_daemon(data, args, Stdio::null())
}

/// `peers run --group notes` with `args`, its log (standard error) in the file `log`.
pub fn run_logged(data: &Path, args: &[&str], log: &Path) -> Daemon {
    spawn_daemon(data, args, std::fs::File::create(log).unwrap().into())
}

fn spawn_daemon(data: &Path, args: &[&str], log: Stdio) -> Daemon {
    let child = Command::new(peers_bin())
        .arg("--data-dir")
        .arg(data)
        .args(["run", "--group", "notes"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Daemon(child)
}

/// Waits up to 30 s for `check`.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two initialised data directories that trust each other in `notes`, each
/// with a port to listen on (not running yet).
pub fn trusting_pair(dir: &Path) -> (std::path::PathBuf, u16, std::path::PathBuf, u16) {
    let (a, b) = (dir.join("a"), dir.join("b"));
    let (port_a, port_b) = (free_port(), free_port());
    ok(&a, &["init", "--user", "alice"]);
    ok(&b, &["init", "--user", "alice"]);
    let code_a = share_code(&ok(&a, &["info", "--advertise", &format!("http://127.0.0.1:{port_a}")]));
    let code_b = share_code(&ok(&b, &["info", "--advertise", &format!("http://127.0.0.1:{port_b}")]));
    ok(&a, &["trust", &code_b, "--group", "notes"]);
    ok(&b, &["trust", &code_a, "--group", "notes"]);
    (a, port_a, b, port_b)
}

/// The standard error of `out`.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The device id `peers info` printed.
pub fn device_id(info: &str) -> String {
    info.lines().find_map(|l| l.strip_prefix("device ")).unwrap().trim().to_owned()
}
