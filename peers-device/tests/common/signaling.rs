//! The real `peers-signaling` binary as a process (killed with SIGKILL and started again
//! on the same port and store), and a TCP proxy whose connections can be cut: what a
//! server restart and a network blink under a signaling connection look like.
//! `peers-signaling` must be built into the same target directory
//! (`cargo build -p peers-signaling --features bin --bin peers-signaling`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The `peers-signaling` binary next to this test's directory.
pub fn signaling_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(Path::parent).expect("target directory");
    let path = dir.join("peers-signaling");
    assert!(path.exists(), "{} is missing: cargo build -p peers-signaling --features bin", path.display());
    path
}

/// A `peers-signaling` process on `port` with its store in `data`, killed when dropped.
pub struct SignalingProcess {
    pub child: Child,
    // Kept open: the server's later lines on stdout must not meet a closed pipe.
    _stdout: BufReader<ChildStdout>,
    pub port: u16,
    data: PathBuf,
}

impl SignalingProcess {
    /// Starts the server and waits until it listens.
    pub fn start(port: u16, data: &Path) -> SignalingProcess {
        let mut child = Command::new(signaling_bin())
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("listening on"), "peers-signaling said {line:?}");
        SignalingProcess { child, _stdout: stdout, port, data: data.to_path_buf() }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, then after `down` a new process on the same port and store.
    pub async fn kill_and_restart(mut self, down: Duration) -> (SignalingProcess, Instant) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        tokio::time::sleep(down).await;
        let (port, data) = (self.port, self.data.clone());
        let started = tokio::task::spawn_blocking(move || SignalingProcess::start(port, &data)).await.unwrap();
        (started, Instant::now())
    }
}

impl Drop for SignalingProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on loopback to `upstream`, whose connections [`cut`](Proxy::cut) ends
/// (a network blink under one side's signaling connection, the server untouched).
pub struct Proxy {
    pub port: u16,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, cuts) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy { port, cut, task }
    }

    /// Ends every connection through the proxy now (new ones go through).
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
