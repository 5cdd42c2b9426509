//! Helpers shared by the signaling integration tests: a server on loopback,
//! registered clients, and a raw socket.io client for hostile requests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use peers_sdk::socket::SocketInfo;
use peers_sdk::{BoxSocket, CloseReason, DeviceKeys, Socket, SocketState};
use peers_signaling::protocol::{self, NONCE_LEN};
use peers_signaling::{
    ClientEvent, DeliveredSignal, Outcome, RelaySocket, ServerConfig, SignalKind, SignalingClient,
    SignalingClientOptions, SignalingServer,
};
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub mod conformance;
pub mod quota;
#[cfg(feature = "redis")]
pub mod redis_server;
pub mod wire;

/// The `peers-signaling` binary of this package.
pub const BINARY: &str = env!("CARGO_BIN_EXE_peers-signaling");

/// Starts the binary with `args` and returns it (killed on drop) with the URL
/// it printed.
pub async fn start_binary(args: &[&str]) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(BINARY)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("binary printed nothing")
        .unwrap()
        .expect("binary exited");
    let url = line.strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected output {line:?}")).to_owned();
    (child, url)
}

/// Runs the binary with `args`, which must make it fail; returns its stderr.
pub async fn binary_fails(args: Vec<String>) -> String {
    let out =
        tokio::process::Command::new(BINARY).args(&args).stdin(std::process::Stdio::null()).output().await.unwrap();
    assert!(!out.status.success(), "{args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// How long a test waits for something that should happen promptly.
pub const PROMPT: Duration = Duration::from_secs(5);

pub async fn server(config: ServerConfig) -> SignalingServer {
    SignalingServer::bind(config).await.expect("server binds")
}

pub fn keys(name: &str) -> DeviceKeys {
    DeviceKeys::generate(name).unwrap()
}

pub async fn client(server: &SignalingServer, keys: &DeviceKeys) -> SignalingClient {
    SignalingClient::connect(&server.url().unwrap(), keys, SignalingClientOptions::default())
        .await
        .expect("client registers")
}

pub async fn recv<T>(rx: &mut mpsc::Receiver<T>) -> T {
    tokio::time::timeout(PROMPT, rx.recv()).await.expect("nothing arrived in time").expect("channel closed")
}

/// Asserts that nothing arrives for `wait`.
pub async fn nothing<T: std::fmt::Debug>(rx: &mut mpsc::Receiver<T>, wait: Duration) {
    if let Ok(Some(item)) = tokio::time::timeout(wait, rx.recv()).await {
        panic!("unexpected {item:?}");
    }
}

/// The next event matching `pick`, skipping others.
pub async fn event<T>(rx: &mut mpsc::Receiver<ClientEvent>, pick: impl Fn(&ClientEvent) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + PROMPT;
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv()).await.expect("event did not come").expect("closed");
        if let Some(found) = pick(&event) {
            return found;
        }
    }
}

pub async fn incoming(rx: &mut mpsc::Receiver<DeliveredSignal>) -> DeliveredSignal {
    recv(rx).await
}

/// Sends the candidates `c0` to `c4` from `from` to the offline device `to`,
/// asserting each is queued; returns their ids.
pub async fn queue_five_candidates(from: &SignalingClient, to: &peers_sdk::DeviceId) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..5 {
        let sent = from.send(to, SignalKind::IceCandidate, json!({"candidate": format!("c{n}")})).await.unwrap();
        assert!(matches!(sent.outcome, Outcome::Queued { .. }), "{sent:?}");
        ids.push(sent.id);
    }
    ids
}

/// Asserts that `rx` gets the candidates of [`queue_five_candidates`] (`ids`,
/// from `from`), in order and marked as queued.
pub async fn expect_five_candidates(rx: &mut mpsc::Receiver<DeliveredSignal>, ids: &[String], from: &DeviceKeys) {
    for (n, id) in ids.iter().enumerate() {
        let got = incoming(rx).await;
        assert_eq!((&got.id, got.from, got.body), (id, from.device_id(), json!({"candidate": format!("c{n}")})));
        assert!(got.queued);
    }
}

/// A socket.io client that speaks the protocol by hand, to send what a real
/// client would not.
pub struct RawClient {
    pub client: Client,
    pub nonce: [u8; NONCE_LEN],
    /// The origin of the URL it dialed (what a registration signs).
    pub origin: String,
    replies: mpsc::UnboundedReceiver<(String, Value)>,
    next_req: u64,
}

type Done = Pin<Box<dyn Future<Output = ()> + Send>>;

impl RawClient {
    pub async fn connect(url: &str) -> RawClient {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, Value)>();
        let record = |name: &'static str| {
            let tx = tx.clone();
            move |payload: Payload, _: Client| -> Done {
                if let Payload::Text(mut values) = payload {
                    let _ = tx.send((name.to_owned(), values.pop().unwrap_or(Value::Null)));
                }
                Box::pin(async {})
            }
        };
        let client = ClientBuilder::new(url)
            .namespace(protocol::DEFAULT_NAMESPACE)
            .transport_type(TransportType::Websocket)
            .reconnect(false)
            .on("challenge", record("challenge"))
            .on("reply", record("reply"))
            .on("notice", record("notice"))
            .on("signal", record("signal"))
            .on("presence", record("presence"))
            .on("relay-close", record("relay-close"))
            .on(rust_socketio::Event::Close, record("close"))
            .connect()
            .await
            .expect("raw client connects");
        let (name, challenge) = tokio::time::timeout(PROMPT, rx.recv()).await.unwrap().unwrap();
        assert_eq!(name, "challenge");
        let nonce = protocol::decode_fixed::<NONCE_LEN>("nonce", challenge["nonce"].as_str().unwrap()).unwrap();
        let origin = protocol::server_origin(url).unwrap();
        RawClient { client, nonce, origin, replies: rx, next_req: 1 }
    }

    /// A registration request for `keys` signing `nonce` and `origin`.
    pub fn registration(keys: &DeviceKeys, nonce: &[u8; NONCE_LEN], origin: &str) -> Value {
        json!({
            "public_key": protocol::encode(keys.signing_public().as_bytes()),
            "origin": origin,
            "signature": protocol::encode(&keys.sign(&protocol::register_message(nonce, origin))),
        })
    }

    /// Sends `payload` (an object; `req` is added) as `event` and returns the reply.
    pub async fn request(&mut self, event: &str, mut payload: Value) -> Value {
        let req = self.next_req;
        self.next_req += 1;
        payload["req"] = json!(req);
        self.client.emit(event.to_owned(), Payload::Text(vec![payload])).await.unwrap();
        loop {
            let (name, value) = self.next().await;
            if name == "reply" && value["req"] == json!(req) {
                return value;
            }
        }
    }

    /// Sends raw socket.io arguments without waiting.
    pub async fn emit(&self, event: &str, args: Vec<Value>) {
        self.client.emit(event.to_owned(), Payload::Text(args)).await.unwrap();
    }

    /// The next event the server sent: (name, argument).
    pub async fn next(&mut self) -> (String, Value) {
        tokio::time::timeout(PROMPT, self.replies.recv()).await.expect("raw client heard nothing").expect("closed")
    }

    /// Skips events until one named `name`; returns its argument.
    pub async fn expect(&mut self, name: &str) -> Value {
        loop {
            let (got, value) = self.next().await;
            if got == name {
                return value;
            }
        }
    }

    pub async fn register(&mut self, keys: &DeviceKeys) -> Value {
        let request = Self::registration(keys, &self.nonce, &self.origin);
        self.request("register", request).await
    }
}

/// The error code of a failed reply.
pub fn code(reply: &Value) -> &str {
    assert_eq!(reply["ok"], json!(false), "expected a refusal, got {reply}");
    reply["error"]["code"].as_str().unwrap()
}

/// One HTTP/1.1 request on a fresh connection; returns the status and the raw
/// response (headers and body).
pub async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    http_with(addr, method, path, &[], body).await
}

/// Like [`http`], with more request headers (`name: value` lines).
pub async fn http_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(PROMPT, tcp.read_to_string(&mut response)).await.unwrap().unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response)
}

/// Opens an engine.io long-polling session by hand and joins `/signaling`;
/// returns its sid.
pub async fn polling_session(addr: std::net::SocketAddr) -> String {
    let (status, response) = http(addr, "GET", "/socket.io/?EIO=4&transport=polling", "").await;
    assert_eq!(status, 200, "{response}");
    let start = response.find("\"sid\":\"").expect("engine.io handshake") + 7;
    let sid = response[start..].split('"').next().unwrap().to_owned();
    let (status, response) =
        http(addr, "POST", &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"), "40/signaling,").await;
    assert_eq!(status, 200, "{response}");
    // The connect ack and the challenge may come in separate polls.
    let mut seen = String::new();
    for _ in 0..5 {
        let (_, response) = http(addr, "GET", &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"), "").await;
        seen.push_str(&response);
        if seen.contains("challenge") {
            return sid;
        }
    }
    panic!("joined /signaling but got no challenge: {seen}");
}

/// A `ClientEvent::Session` as (transfer id, state, reason).
pub fn session_event(event: &ClientEvent) -> Option<(String, peers_signaling::sessions::SessionState, Option<String>)> {
    match event {
        ClientEvent::Session { transfer_id, state, reason, .. } => Some((transfer_id.clone(), *state, reason.clone())),
        _ => None,
    }
}

/// The code of a refused request.
pub fn refusal(result: Result<impl std::fmt::Debug, peers_signaling::Error>) -> peers_signaling::ErrorCode {
    match result {
        Err(peers_signaling::Error::Refused { rejection, .. }) => rejection.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A session code for the same slot with a different secret.
pub fn wrong_code(code: &str) -> String {
    let (slot, secret) = code.split_once('-').unwrap();
    let other = if secret == "AAAAAA" { "BBBBBB" } else { "AAAAAA" };
    format!("{slot}-{other}")
}

/// The two ends of a relay as the conformance suite's boxed pair; each keeps
/// `keep` (the servers, clients and Redis behind the relay) alive while in use.
pub fn held_pair(a: Arc<RelaySocket>, b: Arc<RelaySocket>, keep: impl Any + Send + Sync) -> (BoxSocket, BoxSocket) {
    let keep: Arc<dyn Any + Send + Sync> = Arc::new(keep);
    (Box::new(HeldRelay { socket: a, _keep: keep.clone() }), Box::new(HeldRelay { socket: b, _keep: keep }))
}

/// A relay socket that keeps what it needs alive.
#[derive(Debug)]
struct HeldRelay {
    socket: Arc<RelaySocket>,
    _keep: Arc<dyn Any + Send + Sync>,
}

#[async_trait]
impl Socket for HeldRelay {
    fn info(&self) -> &SocketInfo {
        self.socket.info()
    }
    async fn send(&self, frame: Bytes) -> peers_sdk::Result<()> {
        self.socket.send(frame).await
    }
    async fn recv(&self) -> peers_sdk::Result<Bytes> {
        self.socket.recv().await
    }
    async fn close(&self, reason: CloseReason) {
        self.socket.close(reason).await
    }
    fn state(&self) -> SocketState {
        self.socket.state()
    }
    async fn closed(&self) -> CloseReason {
        self.socket.closed().await
    }
}
