//! What the peers-js interop tests share: where the Node drivers are, the RPC and
//! the stream the Rust side exposes to them, and the byte pattern they stream
//! (`peers-js/examples/exercise.ts`, `patternMiB`).

use std::time::Duration;

use peers_sdk::rpc::RemoteError;
use peers_sdk::{Connection, StreamReader};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The built peers-js drivers, relative to `tests/js/` (where [`crate::JsClient`] looks);
/// `npx tsc -p peers-js` builds them.
pub fn driver(name: &str) -> String {
    format!("../../peers-js/dist/examples/{name}")
}

/// The argument and answer of "rust.echo" (the answer: text upper-cased, `n + 1`).
#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub struct Echo {
    /// Upper-cased in the answer.
    pub text: String,
    /// One more in the answer.
    pub n: u32,
}

/// The metadata of the drivers' "upload" stream.
#[derive(Debug, Deserialize)]
pub struct UploadMeta {
    /// The size the driver declares.
    pub size: u64,
}

/// An "upload" the Rust side took to the end.
#[derive(Debug, PartialEq, Eq)]
pub struct Upload {
    /// The size the driver declared.
    pub declared: u64,
    /// The bytes that arrived.
    pub received: u64,
    /// Their BLAKE3, hex.
    pub blake3: String,
}

/// MiB `i` of the drivers' pattern: byte `j` is `(i·131 + j·7 + j>>8) mod 256`.
pub fn pattern_mib(i: usize) -> Vec<u8> {
    (0..1usize << 20).map(|j| (i.wrapping_mul(131).wrapping_add(j * 7).wrapping_add(j >> 8) & 0xff) as u8).collect()
}

/// The BLAKE3 (hex) of the pattern's first `mib` MiB.
pub fn pattern_blake3(mib: usize) -> String {
    let mut hasher = blake3::Hasher::new();
    for i in 0..mib {
        hasher.update(&pattern_mib(i));
    }
    hasher.finalize().to_hex().to_string()
}

/// Waits for the driver's "streamed" event and the Rust side's [`Upload`] of the same
/// stream, and checks that `mib` MiB of the pattern arrived whole with the BLAKE3 both
/// sides computed; returns the "streamed" event (it carries the driver's rate).
pub async fn expect_pattern_upload(
    js: &mut crate::JsClient,
    uploads: &mut mpsc::UnboundedReceiver<Upload>,
    mib: usize,
) -> serde_json::Value {
    let streamed = js.expect_event("streamed", Duration::from_secs(120)).await;
    let upload = tokio::time::timeout(Duration::from_secs(40), uploads.recv())
        .await
        .expect("upload in time")
        .expect("upload finished");
    let size = (mib as u64) << 20;
    let expected = pattern_blake3(mib);
    assert_eq!((upload.declared, upload.received), (size, size), "every byte arrived");
    assert_eq!(upload.blake3, expected, "the Rust side received the driver's pattern");
    assert_eq!(streamed["blake3"], expected, "the driver hashed what it sent");
    streamed
}

/// Streams `mib` MiB of the pattern to the driver's "download" handler with `meta`,
/// under the driver's credit, and checks the size and BLAKE3 it reports.
pub async fn stream_pattern_to(js: &mut crate::JsClient, connection: &Connection, mib: usize, meta: &str) {
    let mut writer = connection.open_stream("download", meta).await.expect("the driver accepts the stream");
    for i in 0..mib {
        writer.write(&pattern_mib(i)).await.expect("write within the driver's credit");
    }
    writer.finish().await.expect("the driver's handler reports success");
    let downloaded = js.expect_event("downloaded", Duration::from_secs(40)).await;
    assert_eq!(downloaded["meta"], meta, "{downloaded}");
    assert_eq!(downloaded["bytes"], (mib as u64) << 20, "{downloaded}");
    assert_eq!(downloaded["blake3"], pattern_blake3(mib), "the driver received the Rust side's pattern");
}

/// A compressible text of `len` characters: the Rust side sends it Brotli-compressed
/// (and chunked when large) as the answer to "rust.text".
pub fn compressible_text(len: usize) -> String {
    "peers-js speaks the peers protocol. ".chars().cycle().take(len).collect()
}

/// Exposes "rust.text" (`len` → [`compressible_text`]) on `connection`.
pub fn expose_text(connection: &Connection) {
    connection.expose_rpc("rust.text", |len: usize| async move { Ok::<_, RemoteError>(compressible_text(len)) });
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Exposes "rust.echo" and the "upload" stream on `connection` (a `with_setup`
/// hook); each finished upload is sent to `uploads`.
pub fn expose_echo_and_upload(connection: &Connection, uploads: &mpsc::UnboundedSender<Upload>) {
    connection.expose_rpc("rust.echo", |echo: Echo| async move {
        Ok::<_, RemoteError>(Echo { text: echo.text.to_uppercase(), n: echo.n + 1 })
    });
    let uploads = uploads.clone();
    connection.expose_stream("upload", move |meta: UploadMeta, mut reader: StreamReader| {
        let uploads = uploads.clone();
        async move {
            let mut hasher = blake3::Hasher::new();
            let mut received = 0u64;
            while let Some(piece) = reader.next().await.map_err(RemoteError::handler)? {
                received += piece.len() as u64;
                hasher.update(&piece);
            }
            let _ =
                uploads.send(Upload { declared: meta.size, received, blake3: hasher.finalize().to_hex().to_string() });
            Ok(())
        }
    });
}

/// Bytes that do not compress: `len` of a xorshift stream seeded with `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
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

/// A signaling server (in memory, on loopback) whose frame relays carry at most
/// `max_bytes` each: a transfer through it needs new relays.
pub async fn capped_relay_server(max_bytes: u64) -> peers_signaling::SignalingServer {
    let mut config = peers_signaling::ServerConfig::in_memory();
    config.relay.max_bytes = max_bytes;
    peers_signaling::SignalingServer::bind(config).await.expect("signaling server")
}

/// Checks a transfer's `done` event (its `paths`: bytes per transport) against a move
/// to `to` at `moved_at` of `len` bytes: it started on the relay, everything before the
/// move went over the relay, everything after it over `to`.
pub fn assert_moved_at(done: &serde_json::Value, moved_at: u64, len: u64, to: &str) {
    let paths = done["paths"].as_array().expect("paths");
    let bytes_over = |transport: &str| {
        paths.iter().find(|p| p["transport"] == transport).and_then(|p| p["bytes"].as_u64()).unwrap_or(0)
    };
    assert_eq!(paths.first().map(|p| &p["transport"]), Some(&"relay".into()), "it starts on the relay: {done}");
    assert_eq!(bytes_over("relay"), moved_at, "everything before the move went over the relay: {done}");
    assert_eq!(bytes_over(to), len - moved_at, "everything after it over {to}: {done}");
}

/// A running `peers ... --json` (the real binary, a child process) whose JSON lines a
/// thread reads as they come, so it never blocks on a full pipe; killed when dropped.
#[derive(Debug)]
struct JsonChild {
    child: std::process::Child,
    lines: Option<std::thread::JoinHandle<Vec<serde_json::Value>>>,
    /// The lines read so far, for waiting on one while it runs.
    seen: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl JsonChild {
    /// Spawns `peers ARGS...` without the environment's signaling URL and advertised
    /// address; with `first_line`, reads and returns its first JSON line before the
    /// reader thread takes the rest.
    fn spawn(args: &[&std::ffi::OsStr], first_line: bool) -> (JsonChild, Option<serde_json::Value>) {
        use std::io::BufRead;
        let mut child = std::process::Command::new(crate::nat::workspace_binary("peers"))
            .args(args)
            .env_remove("PEERS_SIGNALING_URL")
            .env_remove("PEERS_ADVERTISE")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("peers");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let first = first_line.then(|| {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("the first line");
            serde_json::from_str::<serde_json::Value>(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
        });
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = std::thread::spawn({
            let seen = seen.clone();
            move || {
                for line in stdout.lines().map_while(Result::ok) {
                    if let Ok(value) = serde_json::from_str(&line) {
                        seen.lock().unwrap_or_else(|e| e.into_inner()).push(value);
                    }
                }
                seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
            }
        });
        (JsonChild { child, lines: Some(lines), seen }, first)
    }

    /// Waits until it printed a line that `check` accepts (at most `timeout`).
    async fn wait_for(&self, check: impl Fn(&serde_json::Value) -> bool, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.seen.lock().unwrap_or_else(|e| e.into_inner()).iter().any(&check) {
            assert!(tokio::time::Instant::now() < deadline, "no such line within {timeout:?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Its remaining JSON lines once it exits, and whether it exited with success.
    async fn finish(mut self) -> (bool, Vec<serde_json::Value>) {
        tokio::task::spawn_blocking(move || {
            let events = self.lines.take().expect("lines").join().expect("reader thread");
            let status = self.child.wait().expect("peers exit");
            (status.success(), events)
        })
        .await
        .expect("join")
    }
}

impl Drop for JsonChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `peers send --json` (the real binary, a child process), killed when dropped.
#[derive(Debug)]
pub struct PeersSend {
    run: JsonChild,
    /// The first JSON line: `{"event": "code", "code", ...}`.
    pub code_event: serde_json::Value,
}

impl PeersSend {
    /// Starts `peers send --json --signaling URL ARGS... PATH` and reads its code line.
    pub fn start(url: &str, args: &[&str], path: &std::path::Path) -> PeersSend {
        let mut argv: Vec<&std::ffi::OsStr> = ["send", "--json", "--signaling", url].map(std::ffi::OsStr::new).to_vec();
        argv.extend(args.iter().map(std::ffi::OsStr::new));
        argv.push(path.as_os_str());
        let (run, first) = JsonChild::spawn(&argv, true);
        let code_event = first.expect("the code line");
        assert_eq!(code_event["event"], "code", "{code_event}");
        PeersSend { run, code_event }
    }

    /// The code it printed.
    pub fn code(&self) -> String {
        self.code_event["code"].as_str().expect("code").to_owned()
    }

    /// Waits until its status says it waits for the receiver to run the code again
    /// (`"stage": "waiting-return"`: it reopened the code's session), at most `timeout`.
    pub async fn waiting_for_return(&self, timeout: std::time::Duration) {
        self.run.wait_for(|line| line["stage"] == "waiting-return", timeout).await;
    }

    /// Its remaining JSON lines once it exits, and whether it exited with success.
    pub async fn finish(self) -> (bool, Vec<serde_json::Value>) {
        self.run.finish().await
    }
}

/// A running `peers receive --json --yes` (the real binary, a child process), killed
/// when dropped.
#[derive(Debug)]
pub struct PeersReceive(JsonChild);

impl PeersReceive {
    /// Starts `peers receive --json --yes --signaling URL --out OUT ARGS... CODE`.
    pub fn start(url: &str, code: &str, out: &std::path::Path, args: &[&str]) -> PeersReceive {
        let mut argv: Vec<&std::ffi::OsStr> =
            ["receive", "--json", "--yes", "--signaling", url, "--out"].map(std::ffi::OsStr::new).to_vec();
        argv.push(out.as_os_str());
        argv.extend(args.iter().map(std::ffi::OsStr::new));
        argv.push(std::ffi::OsStr::new(code));
        PeersReceive(JsonChild::spawn(&argv, false).0)
    }

    /// Its JSON lines once it exits, and whether it exited with success.
    pub async fn finish(self) -> (bool, Vec<serde_json::Value>) {
        self.0.finish().await
    }
}
