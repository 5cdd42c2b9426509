//! `peers send` and `peers receive` as real processes against a real signaling server
//! on loopback, with `--json`: a directory arrives with every file intact; a wrong code
//! fails both and burns the code; a receiver killed mid-way does not leave the sender
//! hanging.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use peers_signaling::{ServerConfig, SignalingServer};
use serde_json::Value;

const PEERS: &str = env!("CARGO_BIN_EXE_peers");

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Every file under `dir` with its bytes, and every directory, by relative path.
fn tree(dir: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if p.is_dir() {
                out.push((rel, None));
                stack.push(p);
            } else {
                out.push((rel, Some(fs::read(&p).unwrap())));
            }
        }
    }
    out.sort();
    out
}

/// A child killed when dropped (a failed assertion leaves no process behind).
struct Peers(Child);

impl Drop for Peers {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Peers {
    let child = Command::new(PEERS)
        .args(args)
        .env_remove("PEERS_SIGNALING_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Peers(child)
}

/// Starts `peers send --json` and reads its code from the first line.
fn start_send(url: &str, paths: &[&Path]) -> (Peers, BufReader<ChildStdout>, String) {
    let mut args = vec!["send", "--json", "--signaling", url];
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let mut sender = spawn(&args);
    let mut stdout = BufReader::new(sender.0.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let event: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{first:?}: {e}"));
    assert_eq!(event["event"], "code", "{event}");
    let code = event["code"].as_str().unwrap().to_owned();
    (sender, stdout, code)
}

/// Waits for `child` (at most `limit`), with the rest of its output.
fn finish(mut child: Peers, stdout: Option<BufReader<ChildStdout>>, limit: Duration) -> (Output, Vec<Value>) {
    let start = Instant::now();
    while child.0.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < limit, "peers still running after {limit:?}");
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

fn last_event(events: &[Value]) -> &Value {
    events.last().expect("no JSON line")
}

const LIMIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_receive_move_a_directory_between_two_processes() {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let url = server.url().unwrap();
    tokio::task::spawn_blocking(move || {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let docs = src.path().join("docs");
        fs::create_dir_all(docs.join("deep/er/empty")).unwrap();
        for (i, len) in [0usize, 10, 70_000, (2 << 20) + 5].into_iter().enumerate() {
            fs::write(docs.join(format!("f{i}.bin")), noise(len, i as u64)).unwrap();
            fs::write(docs.join(format!("deep/er/g{i}")), noise(len + 1, 50 + i as u64)).unwrap();
        }
        let single = src.path().join("notes.txt");
        fs::write(&single, b"one more file beside the directory\n").unwrap();

        let (sender, sender_out, code) = start_send(&url, &[&docs, &single]);
        let target = out.path().join("inbox");
        let receiver =
            spawn(&["receive", &code, "--out", target.to_str().unwrap(), "--yes", "--json", "--signaling", &url]);
        let (received, events) = finish(receiver, None, LIMIT);
        assert!(received.status.success(), "receive: {}", String::from_utf8_lossy(&received.stderr));
        let offer = events.iter().find(|e| e["event"] == "offer").expect("an offer line");
        assert_eq!(offer["names"], serde_json::json!(["docs/", "notes.txt"]));
        assert_eq!(offer["files"], 9);
        let done = last_event(&events);
        assert_eq!(done["event"], "done", "{done}");
        assert!(events.iter().any(|e| e["event"] == "status" && e["path"] == "server-relay"), "{events:?}");

        let (sent, events) = finish(sender, Some(sender_out), LIMIT);
        assert!(sent.status.success(), "send: {}", String::from_utf8_lossy(&sent.stderr));
        assert_eq!(last_event(&events)["bytes"], done["bytes"]);

        assert_eq!(tree(&target.join("docs")), tree(&docs));
        assert_eq!(fs::read(target.join("notes.txt")).unwrap(), fs::read(&single).unwrap());
        assert_eq!(fs::read_dir(&target).unwrap().count(), 2, "nothing else (no staging) left behind");
    })
    .await
    .unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_fails_both_processes_and_the_right_one_no_longer_works() {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let url = server.url().unwrap();
    tokio::task::spawn_blocking(move || {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = src.path().join("secret.txt");
        fs::write(&file, b"not for guessers").unwrap();
        let (sender, sender_out, code) = start_send(&url, &[&file]);
        let number = code.split('-').next().unwrap();
        let last = code.rsplit('-').next().unwrap();
        let wrong = format!("{number}-zebra-{}", if last == "apple" { "acorn" } else { "apple" });
        let wrong = if wrong == code { format!("{number}-yogurt-apple") } else { wrong };
        let out_dir = out.path().to_str().unwrap();

        let guesser = spawn(&["receive", &wrong, "--out", out_dir, "--yes", "--json", "--signaling", &url]);
        let (guessed, events) = finish(guesser, None, LIMIT);
        assert!(!guessed.status.success());
        let stderr = String::from_utf8_lossy(&guessed.stderr);
        assert!(stderr.contains("did not match"), "{stderr}");
        assert_eq!(last_event(&events)["event"], "error");

        let (sent, events) = finish(sender, Some(sender_out), LIMIT);
        assert!(!sent.status.success());
        assert!(last_event(&events)["message"].as_str().unwrap().contains("did not match"), "{events:?}");

        let late = spawn(&["receive", &code, "--out", out_dir, "--yes", "--signaling", &url]);
        let (late, _) = finish(late, None, LIMIT);
        assert!(!late.status.success());
        let stderr = String::from_utf8_lossy(&late.stderr);
        assert!(stderr.contains("session_closed"), "{stderr}");
        assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
    })
    .await
    .unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_mid_way_ends_the_sender_with_an_error() {
    let server = SignalingServer::bind(ServerConfig::in_memory()).await.unwrap();
    let url = server.url().unwrap();
    tokio::task::spawn_blocking(move || {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = src.path().join("big.bin");
        fs::write(&file, noise(64 << 20, 9)).unwrap();
        let (sender, sender_out, code) = start_send(&url, &[&file]);
        let mut receiver =
            spawn(&["receive", &code, "--out", out.path().to_str().unwrap(), "--yes", "--json", "--signaling", &url]);
        // Kill it once bytes move.
        let mut lines = BufReader::new(receiver.0.stdout.take().unwrap()).lines();
        let moving = lines.by_ref().map_while(Result::ok).find(|l| l.contains("\"moving\""));
        assert!(moving.is_some(), "the receiver never started moving bytes");
        receiver.0.kill().unwrap();
        let _ = receiver.0.wait();
        let killed_at = Instant::now();
        let (sent, events) = finish(sender, Some(sender_out), LIMIT);
        assert!(!sent.status.success());
        assert_eq!(last_event(&events)["event"], "error", "{events:?}");
        // Stated bound: the relay closes when the receiver's signaling connection drops,
        // and the stall timeout (60 s) backs that up.
        assert!(killed_at.elapsed() < Duration::from_secs(65), "the sender took {:?}", killed_at.elapsed());
        assert!(!out.path().join("big.bin").exists(), "partial data presented as complete");
    })
    .await
    .unwrap();
    server.shutdown().await;
}
