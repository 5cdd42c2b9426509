//! `peers send` and `peers receive` as real processes against a real signaling server
//! on loopback, with `--json`: a directory arrives with every file intact; a wrong code
//! fails both and burns the code; a receiver killed mid-way resumes by running the
//! same code again, and does not leave the sender hanging when it does not; a transfer
//! on the relay goes on when the signaling server (a `peers-signaling` process) is
//! killed and started again, and both sides say (`"event": "signaling"`) that they
//! register again and when they are back.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Output, Stdio};
use std::time::{Duration, Instant};

use common::cli::{Peers, command, receive_args, with_server, wrong_code};
use common::daemons::free_port;
use common::files::{hashes, noise, write_noise};
use common::signaling::SignalingProcess;
use serde_json::Value;

fn spawn(args: &[&str]) -> Peers {
    Peers::spawn(command(None, args), Stdio::piped())
}

/// Starts `peers send --json` with `extra` arguments and reads its code from the
/// first line.
fn start_send(url: &str, extra: &[&str], paths: &[&Path]) -> (Peers, BufReader<ChildStdout>, String) {
    let mut args = vec!["send", "--json", "--paths", "loopback", "--signaling", url];
    args.extend_from_slice(extra);
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let mut sender = spawn(&args);
    let (stdout, code) = sender.read_code();
    (sender, stdout, code)
}

fn last_event(events: &[Value]) -> &Value {
    events.last().expect("no JSON line")
}

/// SIGKILLs the signaling server and starts it again on its port at once, from a test's
/// blocking thread; returns it and the instant it was started again.
fn restart(server: SignalingProcess) -> (SignalingProcess, Instant) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(server.kill_and_restart(Duration::ZERO))
}

/// The most any status line of `events` says was resumed (`bytes_resumed`).
fn resumed(events: &[Value]) -> u64 {
    events.iter().filter_map(|e| e["bytes_resumed"].as_u64()).max().unwrap_or(0)
}

/// What a person sees once a receiver run again and its waiting sender have both ended:
/// both succeeded, the whole `file` is in `out`, intact, and neither side moved again
/// the `verified` bytes the killed receiver had checked (both started after them).
fn assert_resumed_whole(
    received: (&Output, &[Value]),
    sent: (&Output, &[Value]),
    verified: u64,
    out: &Path,
    file: &Path,
) {
    assert!(received.0.status.success(), "receive again: {}", String::from_utf8_lossy(&received.0.stderr));
    assert!(sent.0.status.success(), "send: {}", String::from_utf8_lossy(&sent.0.stderr));
    assert_eq!(last_event(sent.1)["bytes"].as_u64(), Some(fs::metadata(file).unwrap().len()));
    for (side, events) in [("receiver", received.1), ("sender", sent.1)] {
        let resumed = resumed(events);
        assert!(resumed >= verified, "{side}: resumed from {resumed}, {verified} verified before the kill");
    }
    assert_eq!(common::files::hash_file(&out.join(file.file_name().unwrap())), common::files::hash_file(file));
}

const LIMIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_receive_move_a_directory_between_two_processes() {
    with_server(|url| {
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

        let (sender, sender_out, code) = start_send(&url, &[], &[&docs, &single]);
        let target = out.path().join("inbox");
        let receiver = spawn(&receive_args(&code, target.to_str().unwrap(), "loopback", &url));
        let (received, events) = receiver.finish(None, LIMIT);
        assert!(received.status.success(), "receive: {}", String::from_utf8_lossy(&received.stderr));
        let offer = events.iter().find(|e| e["event"] == "offer").expect("an offer line");
        assert_eq!(offer["names"], serde_json::json!(["docs/", "notes.txt"]));
        assert_eq!(offer["files"], 9);
        let done = last_event(&events);
        assert_eq!(done["event"], "done", "{done}");
        assert!(events.iter().any(|e| e["event"] == "status" && e["path"] == "server-relay"), "{events:?}");

        let (sent, events) = sender.finish(Some(sender_out), LIMIT);
        assert!(sent.status.success(), "send: {}", String::from_utf8_lossy(&sent.stderr));
        assert_eq!(last_event(&events)["bytes"], done["bytes"]);

        assert_eq!(hashes(&target.join("docs")), hashes(&docs));
        assert_eq!(fs::read(target.join("notes.txt")).unwrap(), fs::read(&single).unwrap());
        assert_eq!(fs::read_dir(&target).unwrap().count(), 2, "nothing else (no staging) left behind");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_fails_both_processes_and_the_right_one_no_longer_works() {
    with_server(|url| {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = src.path().join("secret.txt");
        fs::write(&file, b"not for guessers").unwrap();
        let (sender, sender_out, code) = start_send(&url, &[], &[&file]);
        let wrong = wrong_code(&code);
        let out_dir = out.path().to_str().unwrap();

        let guesser = spawn(&receive_args(&wrong, out_dir, "loopback", &url));
        let (guessed, events) = guesser.finish(None, LIMIT);
        assert!(!guessed.status.success());
        let stderr = String::from_utf8_lossy(&guessed.stderr);
        assert!(stderr.contains("did not match"), "{stderr}");
        assert_eq!(last_event(&events)["event"], "error");

        let (sent, events) = sender.finish(Some(sender_out), LIMIT);
        assert!(!sent.status.success());
        assert!(last_event(&events)["message"].as_str().unwrap().contains("did not match"), "{events:?}");

        let late = spawn(&receive_args(&code, out_dir, "loopback", &url));
        let (late, _) = late.finish(None, LIMIT);
        assert!(!late.status.success());
        let stderr = String::from_utf8_lossy(&late.stderr);
        assert!(stderr.contains("session_closed"), "{stderr}");
        assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
    })
    .await;
}

/// Starts `peers send` of `file` with `extra` arguments and a receiver into `out`
/// over `paths`, and kills the receiver (SIGKILL) once it verified a few MiB; returns
/// the sender, its output, the code and the bytes the receiver had verified.
fn kill_receiver_mid_way(
    url: &str,
    out: &Path,
    file: &Path,
    paths: &str,
    extra: &[&str],
) -> (Peers, BufReader<ChildStdout>, String, u64) {
    let (sender, sender_out, code) = start_send(url, extra, &[file]);
    let mut receiver = spawn(&receive_args(&code, out.to_str().unwrap(), paths, url));
    let mut verified = 0;
    for line in BufReader::new(receiver.0.stdout.take().unwrap()).lines().map_while(Result::ok) {
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_ne!(event["event"], "done", "the receiver finished before it was killed");
        verified = verified.max(event["bytes_done"].as_u64().unwrap_or(0));
        if verified >= 4 << 20 {
            break;
        }
    }
    assert!(verified >= 4 << 20, "the receiver never verified 4 MiB");
    receiver.0.kill().unwrap();
    let _ = receiver.0.wait();
    (sender, sender_out, code, verified)
}

/// Reads the sender's JSON lines until it waits for its receiver to come back.
fn wait_for_return(sender_out: &mut BufReader<ChildStdout>) {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(sender_out.read_line(&mut line).unwrap() > 0, "the sender ended instead of waiting");
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_ne!(event["event"], "error", "{event}");
        if event["stage"] == "waiting-return" {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_mid_way_resumes_by_running_the_same_code_again() {
    with_server(|url| {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = src.path().join("big.bin");
        fs::write(&file, noise(64 << 20, 9)).unwrap();
        let (sender, mut sender_out, code, verified) = kill_receiver_mid_way(&url, out.path(), &file, "relay", &[]);
        wait_for_return(&mut sender_out);
        assert!(!out.path().join("big.bin").exists(), "partial data presented as complete");

        // The same command again: a new PAKE, the staged data found, not asked again.
        let out_dir = out.path().to_str().unwrap();
        let again = spawn(&receive_args(&code, out_dir, "relay", &url));
        let (received, events) = again.finish(None, LIMIT);
        let offer = events.iter().find(|e| e["event"] == "offer").expect("an offer line");
        assert!(offer["staged"].as_u64().unwrap() >= verified, "{offer} (verified {verified} before the kill)");
        let (sent, sender_events) = sender.finish(Some(sender_out), LIMIT);
        assert_resumed_whole((&received, &events), (&sent, &sender_events), verified, out.path(), &file);
        assert!(staging(out.path()).is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_mid_way_and_run_again_at_once_retries_until_the_sender_reopens() {
    with_server(|url| {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = src.path().join("big.bin");
        fs::write(&file, noise(64 << 20, 10)).unwrap();
        let (sender, sender_out, code, verified) = kill_receiver_mid_way(&url, out.path(), &file, "relay", &[]);

        // At once, before the sender noticed (it waits up to 10 s for a receiver that
        // only blinked): the first joins get session_taken and are tried again.
        let started = Instant::now();
        let out_dir = out.path().to_str().unwrap();
        let mut again = command(None, &receive_args(&code, out_dir, "relay", &url));
        again.env("RUST_LOG", "error,peers_device::transfer::meeting=info");
        let (received, events) = Peers::spawn(again, Stdio::piped()).finish(None, LIMIT);
        let stderr = String::from_utf8_lossy(&received.stderr);
        assert!(received.status.success(), "receive again: {stderr}");
        assert!(stderr.contains("joining again"), "the rerun was never refused session_taken: {stderr}");
        eprintln!("the rerun finished {:?} after it started", started.elapsed());
        let offer = events.iter().find(|e| e["event"] == "offer").expect("an offer line");
        assert!(offer["staged"].as_u64().unwrap() >= verified, "{offer} (verified {verified} before the kill)");
        let (sent, sender_events) = sender.finish(Some(sender_out), LIMIT);
        assert_resumed_whole((&received, &events), (&sent, &sender_events), verified, out.path(), &file);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_on_webrtc_is_noticed_within_seconds_and_its_rerun_moves_to_webrtc_again() {
    with_server(|url| {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let out_dir = out.path().to_str().unwrap();
        let file = src.path().join("big.bin");
        fs::write(&file, noise(64 << 20, 13)).unwrap();
        let (sender, mut sender_out, code) = start_send(&url, &[], &[&file]);
        let mut receiver = spawn(&receive_args(&code, out_dir, "loopback", &url));
        // Killed once it verified 2 MiB over WebRTC.
        let (mut moved_at, mut verified) = (None, 0);
        for line in BufReader::new(receiver.0.stdout.take().unwrap()).lines().map_while(Result::ok) {
            let event: Value = serde_json::from_str(&line).unwrap();
            assert_ne!(event["event"], "done", "the receiver finished before it was killed");
            if event["event"] == "path" {
                assert_eq!(event["to"], "webrtc-direct", "{event}");
                moved_at = event["bytes_done"].as_u64();
            }
            verified = verified.max(event["bytes_done"].as_u64().unwrap_or(0));
            if moved_at.is_some_and(|at| verified >= at + (2 << 20)) {
                break;
            }
        }
        assert!(moved_at.is_some(), "the receiver never moved to WebRTC");
        receiver.0.kill().unwrap();
        let _ = receiver.0.wait();
        let killed_at = Instant::now();
        wait_for_return(&mut sender_out);
        // Seconds, not the 60 s stall timeout: the quiet WebRTC path is closed as dead
        // after the transfer's liveness timeout (10 s), and the receiver is offline.
        let noticed = killed_at.elapsed();
        assert!(noticed < Duration::from_secs(20), "the sender noticed the kill after {noticed:?}");

        // The same command again: on the relay first, then WebRTC again, from the staged data.
        let again = spawn(&receive_args(&code, out_dir, "loopback", &url));
        let (received, events) = again.finish(None, LIMIT * 2);
        let moves: Vec<&Value> = events.iter().filter(|e| e["event"] == "path").collect();
        assert_eq!(moves.len(), 1, "{moves:?}");
        assert_eq!((moves[0]["from"].as_str(), moves[0]["to"].as_str()), (Some("server-relay"), Some("webrtc-direct")));
        let (sent, sender_events) = sender.finish(Some(sender_out), LIMIT);
        assert_resumed_whole((&received, &events), (&sent, &sender_events), verified, out.path(), &file);
        assert!(staging(out.path()).is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_on_the_reopened_session_burns_it() {
    with_server(|url| {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = src.path().join("big.bin");
        fs::write(&file, noise(64 << 20, 10)).unwrap();
        let (sender, mut sender_out, code, _) = kill_receiver_mid_way(&url, out.path(), &file, "relay", &[]);
        wait_for_return(&mut sender_out);
        let out_dir = out.path().to_str().unwrap();
        let (guessed, events) = spawn(&receive_args(&wrong_code(&code), out_dir, "relay", &url)).finish(None, LIMIT);
        assert!(!guessed.status.success());
        assert!(last_event(&events)["message"].as_str().unwrap().contains("did not match"), "{events:?}");
        let (sent, events) = sender.finish(Some(sender_out), LIMIT);
        assert!(!sent.status.success());
        assert!(last_event(&events)["message"].as_str().unwrap().contains("did not match"), "{events:?}");
        // Burnt: the right code no longer works.
        let (late, _) = spawn(&receive_args(&code, out_dir, "relay", &url)).finish(None, LIMIT);
        assert!(!late.status.success());
        let stderr = String::from_utf8_lossy(&late.stderr);
        assert!(stderr.contains("session_closed"), "{stderr}");
        assert!(!out.path().join("big.bin").exists());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_mid_way_that_never_comes_back_ends_the_sender_after_the_rejoin_wait() {
    with_server(|url| {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = src.path().join("big.bin");
        fs::write(&file, noise(64 << 20, 11)).unwrap();
        let wait = ["--rejoin-wait", "3"];
        let (sender, mut sender_out, _, _) = kill_receiver_mid_way(&url, out.path(), &file, "loopback", &wait);
        let killed_at = Instant::now();
        wait_for_return(&mut sender_out);
        let (sent, events) = sender.finish(Some(sender_out), LIMIT);
        assert!(!sent.status.success());
        let message = last_event(&events)["message"].as_str().unwrap().to_owned();
        assert!(message.contains("the receiver to run the same code again did not happen within 3s"), "{message}");
        // Stated bound: the relay closes when the receiver's signaling connection drops,
        // and the stall timeout (60 s) backs that up (a WebRTC path that goes quiet);
        // then the rejoin wait.
        let bound = Duration::from_secs(60 + 3 + 5);
        assert!(killed_at.elapsed() < bound, "the sender took {:?}", killed_at.elapsed());
        assert!(!out.path().join("big.bin").exists(), "partial data presented as complete");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_moving_to_webrtc_mid_way_says_so_on_both_sides() {
    with_server(|url| {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = src.path().join("film.mkv");
        // Long enough on the relay for WebRTC on loopback to come up mid-way.
        fs::write(&file, noise(16 << 20, 3)).unwrap();
        let (sender, sender_out, code) = start_send(&url, &[], &[&file]);
        let out_dir = out.path().to_str().unwrap();
        let receiver = spawn(&receive_args(&code, out_dir, "loopback", &url));
        // WebRTC's SCTP is slow in a debug build: a bound, not a figure.
        let (received, receiver_events) = receiver.finish(None, LIMIT * 2);
        assert!(received.status.success(), "receive: {}", String::from_utf8_lossy(&received.stderr));
        let (sent, sender_events) = sender.finish(Some(sender_out), LIMIT);
        assert!(sent.status.success(), "send: {}", String::from_utf8_lossy(&sent.stderr));
        assert_eq!(hashes(out.path()), vec![("film.mkv".to_owned(), Some(common::files::hash_file(&file)))]);
        for (side, events) in [("sender", &sender_events), ("receiver", &receiver_events)] {
            let moves: Vec<&Value> = events.iter().filter(|e| e["event"] == "path").collect();
            assert_eq!(moves.len(), 1, "{side}: {moves:?}");
            assert_eq!(
                (moves[0]["from"].as_str(), moves[0]["to"].as_str()),
                (Some("server-relay"), Some("webrtc-direct"))
            );
            // Bytes moved on both: some before the move (the path event carries how
            // many; a progress line on the relay may not have been printed before it,
            // as progress is printed per MiB), the rest after it.
            let at = moves[0]["bytes_done"].as_u64().unwrap();
            assert!(at > 0 && at < 16 << 20, "{side}: moved after {at} bytes");
            assert_eq!(last_event(events)["event"], "done", "{side}");
        }
    })
    .await;
}

/// Sends SIGINT (what Ctrl-C sends) to `child`.
fn interrupt(child: &Peers) {
    let status = std::process::Command::new("kill").arg("-INT").arg(child.0.id().to_string()).status().unwrap();
    assert!(status.success());
}

/// Reads JSON lines from `stdout` until one has bytes verified or sent.
fn wait_moving(stdout: &mut BufReader<ChildStdout>) {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the output ended before bytes moved");
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "status" && event["bytes_done"].as_u64().unwrap_or(0) > 0 {
            return;
        }
    }
}

/// Hidden staging directories in `dir`.
fn staging(dir: &Path) -> Vec<String> {
    let names = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
    names.filter(|n| n.starts_with(".peers-transfer-")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_either_side_ends_both_with_a_clear_message_and_the_partial_data_resumes() {
    with_server(|url| {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = src.path().join("big.bin");
        fs::write(&file, noise(64 << 20, 12)).unwrap();
        let out_dir = out.path().to_str().unwrap();
        let receive = |code: &str| spawn(&receive_args(code, out_dir, "relay", &url));

        // Ctrl-C on the receiver: both end at once, each with a clear message.
        let (sender, sender_out, code) = start_send(&url, &[], &[&file]);
        let mut receiver = receive(&code);
        let mut receiver_out = BufReader::new(receiver.0.stdout.take().unwrap());
        wait_moving(&mut receiver_out);
        interrupt(&receiver);
        let (received, events) = receiver.finish(Some(receiver_out), Duration::from_secs(10));
        assert!(!received.status.success());
        assert_eq!(last_event(&events)["message"], "cancelled", "{events:?}");
        let stderr = String::from_utf8_lossy(&received.stderr);
        assert!(stderr.contains("kept") && stderr.contains("resume"), "{stderr}");
        let (sent, events) = sender.finish(Some(sender_out), Duration::from_secs(10));
        assert!(!sent.status.success());
        let message = last_event(&events)["message"].as_str().unwrap().to_owned();
        assert!(message.contains("cancelled by the receiver"), "{message}");
        // The partial data is kept hidden, never presented as the file.
        assert!(!out.path().join("big.bin").exists());
        assert_eq!(staging(out.path()).len(), 1);

        // Ctrl-C on the sender of the same file: the receiver is told.
        let (sender, mut sender_out, code) = start_send(&url, &[], &[&file]);
        let receiver = receive(&code);
        wait_moving(&mut sender_out);
        interrupt(&sender);
        let (sent, events) = sender.finish(Some(sender_out), Duration::from_secs(10));
        assert!(!sent.status.success());
        assert_eq!(last_event(&events)["message"], "cancelled", "{events:?}");
        let (received, events) = receiver.finish(None, Duration::from_secs(10));
        assert!(!received.status.success());
        let message = last_event(&events)["message"].as_str().unwrap().to_owned();
        assert!(message.contains("cancelled by the sender"), "{message}");
        // That second attempt resumed where the first stopped.
        let first = resumed(&events);
        assert!(first > 0, "{events:?}");
        assert!(!out.path().join("big.bin").exists());

        // A third sending of the same file completes from there.
        let (sender, sender_out, code) = start_send(&url, &[], &[&file]);
        let (received, events) = receive(&code).finish(None, LIMIT);
        assert!(received.status.success(), "{}", String::from_utf8_lossy(&received.stderr));
        let (sent, _) = sender.finish(Some(sender_out), LIMIT);
        assert!(sent.status.success());
        let resumed_again = resumed(&events);
        assert!(resumed_again >= first, "{resumed_again} < {first}");
        assert_eq!(common::files::hash_file(&out.path().join("big.bin")), common::files::hash_file(&file));
        assert!(staging(out.path()).is_empty());
    })
    .await;
}

/// A fresh temporary directory.
fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `big.bin` in `dir`: 64 MiB of noise from `seed`.
fn noise_file(dir: &Path, seed: u64) -> PathBuf {
    let file = dir.join("big.bin");
    write_noise(&file, 64 << 20, seed);
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_on_the_relay_goes_on_when_the_signaling_server_restarts() {
    tokio::task::spawn_blocking(|| {
        let (store, src, out) = (tempdir(), tempdir(), tempdir());
        let server = SignalingProcess::start(free_port(), store.path());
        let url = server.url();
        let file = noise_file(src.path(), 17);
        let (sender, sender_out, code) = start_send(&url, &[], &[&file]);
        let mut receiver = spawn(&receive_args(&code, out.path().to_str().unwrap(), "relay", &url));
        let mut receiver_out = BufReader::new(receiver.0.stdout.take().unwrap());
        let mut verified = 0;
        let mut line = String::new();
        while verified < 4 << 20 {
            line.clear();
            assert!(receiver_out.read_line(&mut line).unwrap() > 0, "the receiver ended early");
            let event: Value = serde_json::from_str(&line).unwrap();
            assert_ne!(event["event"], "done", "the receiver finished before the server was killed");
            verified = verified.max(event["bytes_done"].as_u64().unwrap_or(0));
        }
        // SIGKILL and a new process on the same port and store.
        let (server, restarted) = restart(server);

        let (received, events) = receiver.finish(Some(receiver_out), LIMIT);
        assert!(received.status.success(), "receive: {}", String::from_utf8_lossy(&received.stderr));
        let (sent, sender_events) = sender.finish(Some(sender_out), LIMIT);
        assert!(sent.status.success(), "send: {}", String::from_utf8_lossy(&sent.stderr));
        eprintln!("both done {:?} after the restart", restarted.elapsed());
        assert_eq!(last_event(&sender_events)["bytes"], 64 << 20);
        assert_eq!(last_event(&events)["event"], "done", "{events:?}");
        assert_eq!(common::files::hash_file(&out.path().join("big.bin")), common::files::hash_file(&file));
        // The sender's last attempt resumed after what the receiver had verified.
        let from = resumed(&sender_events);
        assert!(from >= verified, "resumed from {from}, {verified} verified before the kill");
        // Both said their signaling connection was down, and then that it was back.
        for (side, events) in [("receiver", &events), ("sender", &sender_events)] {
            let links: Vec<&str> =
                events.iter().filter(|e| e["event"] == "signaling").filter_map(|e| e["state"].as_str()).collect();
            assert_eq!(links, ["reconnecting", "registered"], "{side}: {events:?}");
            let last = events.iter().rfind(|e| e["event"] == "status").expect("a status line");
            assert_eq!(last["signaling"], "registered", "{side}: {last}");
        }
        drop(server);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_waiting_for_its_receiver_survives_a_signaling_restart_and_the_rerun_moves_to_webrtc() {
    tokio::task::spawn_blocking(|| {
        let (store, src, out) = (tempdir(), tempdir(), tempdir());
        let server = SignalingProcess::start(free_port(), store.path());
        let url = server.url();
        let file = noise_file(src.path(), 19);
        // The receiver killed on the relay; the sender (WebRTC on) waits for it.
        let (sender, mut sender_out, code, verified) = kill_receiver_mid_way(&url, out.path(), &file, "relay", &[]);
        wait_for_return(&mut sender_out);
        // The server dies and comes back (the code's session is in its store).
        let (server, _) = restart(server);

        // The same command again at once, maybe before the sender registered again (the
        // server tells the sender of the join when it does): it meets the sender through
        // its new registration, and moves to WebRTC, signaled through it too.
        let again = spawn(&receive_args(&code, out.path().to_str().unwrap(), "loopback", &url));
        let (received, events) = again.finish(None, LIMIT * 2);
        let moves: Vec<&Value> = events.iter().filter(|e| e["event"] == "path").collect();
        assert_eq!(moves.len(), 1, "{moves:?}");
        assert_eq!(moves[0]["to"].as_str(), Some("webrtc-direct"), "{moves:?}");
        let (sent, sender_events) = sender.finish(Some(sender_out), LIMIT);
        assert_resumed_whole((&received, &events), (&sent, &sender_events), verified, out.path(), &file);
        drop(server);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_after_a_signaling_restart_resumes_by_running_the_code_again() {
    tokio::task::spawn_blocking(|| {
        let (store, src, out) = (tempdir(), tempdir(), tempdir());
        let server = SignalingProcess::start(free_port(), store.path());
        let url = server.url();
        let file = noise_file(src.path(), 23);
        let (sender, mut sender_out, code) = start_send(&url, &[], &[&file]);
        let mut receiver = spawn(&receive_args(&code, out.path().to_str().unwrap(), "relay", &url));
        let mut receiver_out = BufReader::new(receiver.0.stdout.take().unwrap());
        let mut verified = 0;
        let mut line = String::new();
        let mut read_until = |at_least: u64, verified: &mut u64| {
            while *verified < at_least {
                line.clear();
                assert!(receiver_out.read_line(&mut line).unwrap() > 0, "the receiver ended early");
                let event: Value = serde_json::from_str(&line).unwrap();
                assert_ne!(event["event"], "done", "the receiver finished too early");
                *verified = (*verified).max(event["bytes_done"].as_u64().unwrap_or(0));
            }
        };
        read_until(4 << 20, &mut verified);
        // The server restarts: the sender registers again and is told of the session its
        // receiver joined (a "joined" it already knows: it must do nothing with it).
        let (server, _) = restart(server);
        read_until(verified + (4 << 20), &mut verified);
        receiver.0.kill().unwrap();
        let _ = receiver.0.wait();
        wait_for_return(&mut sender_out);

        // The rerun is the one the sender meets, not the receiver it was told of again.
        let again = spawn(&receive_args(&code, out.path().to_str().unwrap(), "relay", &url));
        let (received, events) = again.finish(None, LIMIT);
        let (sent, sender_events) = sender.finish(Some(sender_out), LIMIT);
        assert_resumed_whole((&received, &events), (&sent, &sender_events), verified, out.path(), &file);
        drop(server);
    })
    .await
    .unwrap();
}
