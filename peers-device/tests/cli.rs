//! The `peers` binary end to end: two daemons on loopback, set up with init,
//! info and trust, sync a value written with `put`, read with `get`, and
//! `status` shows the connection and its class; `peers send --to` puts files in the
//! other daemon's inbox, and Ctrl-C on it leaves nothing there.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::daemons::*;

#[test]
fn two_daemons_sync_a_value_and_report_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (port_a, port_b) = (free_port(), free_port());
    ok(&a, &["init", "--user", "alice"]);
    ok(&b, &["init", "--user", "alice"]);
    assert!(!peers(&a, &["init"]).status.success(), "init twice must fail");
    // Without --user: the OS user name, not a made-up one.
    let c = dir.path().join("c");
    let out = Command::new(common::cli::peers_bin())
        .arg("--data-dir")
        .arg(&c)
        .arg("init")
        .env("USER", "carol")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("user carol"), "{out:?}");
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

fn value_is(data: &Path, key: &str, expected: &[u8]) -> bool {
    let out = peers(data, &["get", "notes", key]);
    out.status.success() && out.stdout == expected
}

#[test]
fn a_20_mib_binary_value_goes_through_the_daemon_and_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, port_a, b, port_b) = trusting_pair(dir.path());
    let _da = run(&a, port_a);
    let _db = run(&b, port_b);
    eventually("the daemons to answer", || peers(&a, &["status"]).status.success());

    // Not UTF-8, not compressible: every byte value, in a scrambled order.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let value: Vec<u8> = (0..20 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    assert!(std::str::from_utf8(&value).is_err());
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &value).unwrap();
    ok(&a, &["put", "notes", "big", "--file", file.to_str().unwrap()]);
    assert!(value_is(&a, "big", &value), "the writer reads back the exact bytes");
    eventually("b to get the 20 MiB value", || value_is(&b, "big", &value));

    // Over the limit: refused with the limit named, and the daemon carries on.
    let over = dir.path().join("over.bin");
    std::fs::write(&over, vec![7u8; (32 << 20) + 1]).unwrap();
    let out = peers(&a, &["put", "notes", "over", "--file", over.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("32 MiB"), "{}", stderr(&out));
    ok(&a, &["put", "notes", "after", "still fine"]);
    eventually("b to get the next value", || value_is(&b, "after", b"still fine"));

    let help = String::from_utf8(peers(&a, &["put", "--help"]).stdout).unwrap();
    assert!(help.contains("--file") && help.contains("32 MiB"), "{help}");
}

/// Holds `data`'s lock as a daemon that is starting would.
fn hold_lock(data: &Path) -> std::fs::File {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(data.join("lock")).unwrap();
    file.try_lock().unwrap();
    file
}

fn signal(daemon: &Daemon, name: &str) {
    let status = Command::new("kill").args([name, &daemon.0.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill {name}");
}

#[test]
fn a_daemon_that_holds_the_data_directory_but_does_not_answer_is_an_error_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (a, port_a, _b, _) = trusting_pair(dir.path());

    // Starting: the lock is held, nothing answers on the control socket yet.
    let lock = hold_lock(&a);
    let out = peers(&a, &["put", "notes", "k", "v"]);
    assert!(!out.status.success(), "a put while the directory is held must fail");
    assert!(stderr(&out).contains("starting, stuck"), "{}", stderr(&out));
    assert!(!a.join("groups").join("notes.sqlite3").exists(), "the CLI opened no database");
    let out = peers(&a, &["run", "--group", "notes"]);
    assert!(!out.status.success() && stderr(&out).contains("in use"), "{}", stderr(&out));
    drop(lock);
    assert!(!peers(&a, &["get", "notes", "k"]).status.success(), "nothing was written");

    // Stuck: the daemon runs but is stopped (SIGSTOP).
    let daemon = run(&a, port_a);
    eventually("the daemon to answer", || peers(&a, &["status"]).status.success());
    ok(&a, &["put", "notes", "before", "1"]);
    let second = peers(&a, &["run", "--group", "notes"]);
    assert!(!second.status.success() && stderr(&second).contains("in use"), "one daemon per data directory");
    signal(&daemon, "-STOP");
    let out = peers(&a, &["--control-timeout", "2", "put", "notes", "stuck", "v"]);
    signal(&daemon, "-CONT");
    assert!(!out.status.success(), "a put to a stuck daemon must fail");
    assert!(stderr(&out).contains("no answer"), "{}", stderr(&out));

    // The daemon's database was not written behind its back: it carries on.
    for i in 0..5 {
        ok(&a, &["put", "notes", &format!("after{i}"), "2"]);
    }
    assert_eq!(ok(&a, &["get", "notes", "after4"]), "2");
    assert_eq!(ok(&a, &["get", "notes", "before"]), "1");
}

#[test]
fn trust_and_untrust_take_effect_in_running_daemons() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (port_a, port_b) = (free_port(), free_port());
    ok(&a, &["init", "--user", "alice"]);
    ok(&b, &["init", "--user", "alice"]);
    let info_a = ok(&a, &["info", "--advertise", &format!("http://127.0.0.1:{port_a}")]);
    let info_b = ok(&b, &["info", "--advertise", &format!("http://127.0.0.1:{port_b}")]);
    let (code_a, code_b) = (share_code(&info_a), share_code(&info_b));
    let _da = run(&a, port_a);
    let _db = run(&b, port_b);
    eventually("the daemons to answer", || peers(&a, &["status"]).status.success());

    let out = peers(&a, &["trust", &code_b]);
    assert!(!out.status.success() && stderr(&out).contains("--group"), "{}", stderr(&out));
    ok(&a, &["put", "notes", "one", "1"]);

    // Trusted while both run: they connect and sync, no restart.
    ok(&a, &["trust", &code_b, "--group", "notes"]);
    ok(&b, &["trust", &code_a, "--group", "notes"]);
    eventually("b to get a's value", || value_is(&b, "one", b"1"));
    ok(&b, &["put", "notes", "two", "2"]);
    eventually("a to get b's value", || value_is(&a, "two", b"2"));

    // Untrusted by a: disconnected, and nothing more syncs either way.
    let id_b = device_id(&info_b);
    assert!(ok(&a, &["untrust", &id_b[..12]]).contains(&id_b));
    eventually("a to drop its connection to b", || ok(&a, &["status"]).contains("(no connections)"));
    ok(&a, &["put", "notes", "three", "3"]);
    ok(&b, &["put", "notes", "four", "4"]);
    // b keeps dialing a (it still trusts a) and a keeps refusing: give that a
    // few rounds, then check nothing crossed.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!peers(&b, &["get", "notes", "three"]).status.success(), "b got a write made after untrust");
    assert!(!peers(&a, &["get", "notes", "four"]).status.success(), "a got a write made after untrust");
    assert!(ok(&a, &["status"]).contains("(no connections)"));
    assert!(!peers(&a, &["untrust", &id_b]).status.success(), "b is no longer trusted");
}

#[test]
fn send_to_a_trusted_device_puts_a_directory_and_a_file_in_its_inbox() {
    use common::files::{hash_file, hashes, noise};
    let dir = tempfile::tempdir().unwrap();
    let (a, port_a, b, port_b) = trusting_pair(dir.path());
    let inbox = dir.path().join("inbox of b");
    let _da = run(&a, port_a);
    let _db = run_with(&b, &["--listen", &format!("127.0.0.1:{port_b}"), "--inbox", inbox.to_str().unwrap()]);
    eventually("a to connect to b", || {
        peers(&a, &["status"]).status.success() && ok(&a, &["status"]).contains("local")
    });

    let src = dir.path().join("src");
    let docs = src.join("docs");
    std::fs::create_dir_all(docs.join("deep/empty")).unwrap();
    for (i, len) in [0usize, 10, 70_000, (3 << 20) + 5].into_iter().enumerate() {
        std::fs::write(docs.join(format!("f{i}.bin")), noise(len, i as u64)).unwrap();
        std::fs::write(docs.join(format!("deep/g{i}")), noise(len + 1, 40 + i as u64)).unwrap();
    }
    let single = src.join("notes.txt");
    std::fs::write(&single, b"one more file beside the directory\n").unwrap();

    let id_b = device_id(&ok(&b, &["info"]));
    let args = ["send", "--to", &id_b[..12], "--json", docs.to_str().unwrap(), single.to_str().unwrap()];
    let out = peers(&a, &args);
    assert!(out.status.success(), "send --to: {}", stderr(&out));
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = events.last().unwrap();
    assert_eq!((last["event"].as_str(), last["device"].as_str()), (Some("done"), Some(id_b.as_str())), "{last}");
    assert!(events.iter().any(|e| e["event"] == "status" && e["path"] == "local"), "{events:?}");
    // Every hash checked: the same tree, the same bytes.
    assert_eq!(hashes(&inbox.join("docs")), hashes(&docs));
    assert_eq!(hash_file(&inbox.join("notes.txt")), hash_file(&single));
    assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 2, "nothing else (no staging) left behind");

    // The same again: nothing is replaced, the copies get new names.
    let out = peers(&a, &args);
    assert!(out.status.success(), "send --to again: {}", stderr(&out));
    assert_eq!(hashes(&inbox.join("docs (1)")), hashes(&docs));
    // A device that is not trusted: refused, nothing sent.
    let out = peers(&a, &["send", "--to", "ffffffffffff", single.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a trusted device"), "{}", stderr(&out));
}

#[test]
fn ctrl_c_on_send_to_cancels_it_and_the_receiving_daemon_discards_the_partial_data() {
    use common::cli::{Peers, command};
    use common::files::write_noise;
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let (a, port_a, b, port_b) = trusting_pair(dir.path());
    let inbox = dir.path().join("inbox of b");
    let log = dir.path().join("b.log");
    let _da = run(&a, port_a);
    let _db = run_logged(&b, &["--listen", &format!("127.0.0.1:{port_b}"), "--inbox", inbox.to_str().unwrap()], &log);
    eventually("a to connect to b", || {
        peers(&a, &["status"]).status.success() && ok(&a, &["status"]).contains("local")
    });
    let big = dir.path().join("big.bin");
    write_noise(&big, 256 << 20, 5);

    let id_b = device_id(&ok(&b, &["info"]));
    let args = ["send", "--to", &id_b, "--json", big.to_str().unwrap()];
    let mut sender = Peers::spawn(command(Some(&a), &args), std::process::Stdio::piped());
    let mut stdout = BufReader::new(sender.0.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the output ended before bytes moved");
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_ne!(event["event"], "done", "the transfer finished before it was interrupted");
        if event["event"] == "status" && event["bytes_done"].as_u64().unwrap_or(0) > 0 {
            break;
        }
    }
    let status = Command::new("kill").arg("-INT").arg(sender.0.id().to_string()).status().unwrap();
    assert!(status.success());
    let (out, events) = sender.finish(Some(stdout), Duration::from_secs(60));
    assert!(!out.status.success(), "an interrupted send --to succeeded");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "error", "{last}");
    assert!(last["message"].as_str().unwrap().contains("cancelled"), "{last}");

    // The receiving daemon discarded the partial data, and says so in its log.
    eventually("b to discard the partial data", || {
        std::fs::read_dir(&inbox).map(|entries| entries.count() == 0).unwrap_or(true)
            && std::fs::read_to_string(&log)
                .unwrap()
                .contains("cancelled by the sender; the partial data was discarded")
    });
    assert!(!inbox.join("big.bin").exists(), "partial data presented as complete");
}
