//! The `peers` binary as a real process, for the command-line tests: a child killed
//! when dropped, its JSON lines, the code it prints first; a signaling server for a
//! test's processes; the arguments of `peers receive`.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use peers_signaling::{ServerConfig, SignalingServer};
use serde_json::Value;

/// Runs `test` with the URL of a real signaling server on loopback (in-memory stores),
/// on a blocking thread (it starts processes and waits for them), then shuts the
/// server down.
pub async fn with_server(test: impl FnOnce(String) + Send + 'static) {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let url = server.url().unwrap();
    tokio::task::spawn_blocking(move || test(url)).await.unwrap();
    server.shutdown().await;
}

/// The arguments of `peers receive CODE` into `out`, answering yes, with JSON lines,
/// over `paths` (`loopback`, `relay`, ...), through the server at `url`.
pub fn receive_args<'a>(code: &'a str, out: &'a str, paths: &'a str, url: &'a str) -> Vec<&'a str> {
    vec!["receive", code, "--out", out, "--yes", "--json", "--paths", paths, "--signaling", url]
}

/// The `peers` binary Cargo built for these tests (looked up when a test runs, so
/// that test files without a use for it build when the binary is not built).
pub fn peers_bin() -> &'static str {
    match option_env!("CARGO_BIN_EXE_peers") {
        Some(path) => path,
        None => panic!("the peers binary is not built with these features"),
    }
}

/// `peers` with `args`, with no signaling server or advertised URLs from the
/// environment; with `data` as its data directory when given.
pub fn command(data: Option<&Path>, args: &[&str]) -> Command {
    let mut command = Command::new(peers_bin());
    if let Some(data) = data {
        command.arg("--data-dir").arg(data);
    }
    command.args(args).env_remove("PEERS_SIGNALING_URL").env_remove("PEERS_ADVERTISE");
    command
}

/// A child killed when dropped (a failed assertion leaves no process behind).
pub struct Peers(pub Child);

impl Drop for Peers {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Peers {
    /// Starts `command` with its standard output piped (or `stdout`), its standard
    /// error piped and no standard input.
    pub fn spawn(mut command: Command, stdout: Stdio) -> Peers {
        Peers(command.stdin(Stdio::null()).stdout(stdout).stderr(Stdio::piped()).spawn().unwrap())
    }

    /// Reads the first line, a `code` event, from standard output; returns the rest
    /// of standard output and the code.
    pub fn read_code(&mut self) -> (BufReader<ChildStdout>, String) {
        let mut stdout = BufReader::new(self.0.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let event: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{first:?}: {e}"));
        assert_eq!(event["event"], "code", "{event}");
        (stdout, event["code"].as_str().unwrap().to_owned())
    }

    /// Waits for the process (at most `limit`); its exit, the rest of its output
    /// (from `stdout` when part of it was read already) and its JSON lines.
    pub fn finish(mut self, stdout: Option<BufReader<ChildStdout>>, limit: Duration) -> (Output, Vec<Value>) {
        let start = Instant::now();
        while self.0.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < limit, "peers still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut rest = String::new();
        match stdout {
            Some(mut stdout) => stdout.read_to_string(&mut rest).unwrap(),
            None => self.0.stdout.as_mut().unwrap().read_to_string(&mut rest).unwrap(),
        };
        let mut stderr = String::new();
        self.0.stderr.as_mut().unwrap().read_to_string(&mut stderr).unwrap();
        let status = self.0.wait().unwrap();
        let events = rest.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"))).collect();
        (Output { status, stdout: rest.into_bytes(), stderr: stderr.into_bytes() }, events)
    }
}

/// A code with the session number of `code` and other words: a guess.
pub fn wrong_code(code: &str) -> String {
    let number = code.split('-').next().unwrap();
    let last = code.rsplit('-').next().unwrap();
    let wrong = format!("{number}-zebra-{}", if last == "apple" { "acorn" } else { "apple" });
    if wrong == code { format!("{number}-yogurt-apple") } else { wrong }
}
