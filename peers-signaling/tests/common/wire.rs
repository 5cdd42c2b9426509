//! A lean socket.io client straight over a WebSocket, dialled from a chosen
//! loopback address: hostile clients that stop reading, flood, or come from
//! one address while a legitimate client uses another.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use peers_sdk::DeviceKeys;
use peers_signaling::protocol::{self, Challenge};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

pub type Ws = WebSocketStream<TcpStream>;

const NAMESPACE: &str = "/signaling";

/// One raw connection.
pub struct WireClient {
    pub ws: Ws,
    next_req: u64,
}

/// What came in.
#[derive(Debug)]
pub enum Incoming {
    Event(String, Value),
    /// The namespace refused the connection (its text).
    Refused(String),
    /// The connection ended.
    Closed,
}

impl WireClient {
    /// Dials `server` from `source` and joins the namespace; returns the
    /// client and the challenge (or the refusal text).
    pub async fn dial(server: SocketAddr, source: IpAddr) -> Result<(WireClient, Challenge), String> {
        WireClient::dial_with_buffer(server, source, None).await
    }

    /// Like [`dial`](Self::dial), with a TCP receive buffer of `recv_buffer`
    /// bytes (a client that means to stop reading fills it fast).
    pub async fn dial_with_buffer(
        server: SocketAddr,
        source: IpAddr,
        recv_buffer: Option<u32>,
    ) -> Result<(WireClient, Challenge), String> {
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).map_err(|e| e.to_string())?;
        }
        socket.bind(SocketAddr::new(source, 0)).map_err(|e| e.to_string())?;
        let stream = socket.connect(server).await.map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let url = format!("ws://{server}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::client_async(url, stream).await.map_err(|e| e.to_string())?;
        let mut client = WireClient { ws, next_req: 1 };
        client.send_text(format!("40{NAMESPACE},")).await;
        loop {
            match client.next().await {
                Incoming::Event(name, value) if name == "challenge" => {
                    let challenge: Challenge = serde_json::from_value(value).map_err(|e| e.to_string())?;
                    return Ok((client, challenge));
                }
                Incoming::Event(..) => {}
                Incoming::Refused(text) => return Err(text),
                Incoming::Closed => return Err("closed".into()),
            }
        }
    }

    /// Dials and registers `keys`.
    pub async fn registered(server: SocketAddr, source: IpAddr, keys: &DeviceKeys) -> WireClient {
        WireClient::registered_with_buffer(server, source, keys, None).await
    }

    /// Dials with a TCP receive buffer of `recv_buffer` bytes and registers.
    pub async fn registered_with_buffer(
        server: SocketAddr,
        source: IpAddr,
        keys: &DeviceKeys,
        recv_buffer: Option<u32>,
    ) -> WireClient {
        let (mut client, challenge) = WireClient::dial_with_buffer(server, source, recv_buffer).await.expect("dial");
        let register = protocol::answer_challenge(keys, &challenge, &format!("http://{server}")).unwrap();
        let reply = client.request("register", serde_json::to_value(register).unwrap()).await;
        assert_eq!(reply["ok"], json!(true), "{reply}");
        client
    }

    pub async fn send_text(&mut self, text: String) {
        let _ = self.ws.send(Message::Text(text.into())).await;
    }

    /// Emits `event` with one argument, without waiting.
    pub async fn emit(&mut self, event: &str, value: &Value) {
        let text = format!("42{NAMESPACE},{}", serde_json::to_string(&(event, value)).unwrap());
        self.send_text(text).await;
    }

    /// Sends a request and waits for its reply (other events are skipped).
    pub async fn request(&mut self, event: &str, mut payload: Value) -> Value {
        let req = self.next_req;
        self.next_req += 1;
        payload["req"] = json!(req);
        self.emit(event, &payload).await;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.next()).await.expect("no reply in time") {
                Incoming::Event(name, value) if name == "reply" && value["req"] == json!(req) => return value,
                Incoming::Event(..) => {}
                other => panic!("no reply to {event}: {other:?}"),
            }
        }
    }

    /// The next event (answering pings on the way).
    pub async fn next(&mut self) -> Incoming {
        loop {
            let Some(Ok(message)) = self.ws.next().await else { return Incoming::Closed };
            let Message::Text(text) = message else {
                if matches!(message, Message::Close(_)) {
                    return Incoming::Closed;
                }
                continue;
            };
            let text = text.as_str();
            if text == "2" {
                self.send_text("3".into()).await;
                continue;
            }
            if let Some(body) = text.strip_prefix(&format!("44{NAMESPACE},")) {
                return Incoming::Refused(body.to_owned());
            }
            if text.starts_with(&format!("41{NAMESPACE}")) || text == "1" {
                return Incoming::Closed;
            }
            if let Some(body) = text.strip_prefix(&format!("42{NAMESPACE},"))
                && let Ok((name, value)) = serde_json::from_str::<(String, Value)>(body)
            {
                return Incoming::Event(name, value);
            }
        }
    }

    /// Skips events until `name`; `None` if the connection ends first.
    pub async fn expect(&mut self, name: &str) -> Option<Value> {
        loop {
            match self.next().await {
                Incoming::Event(got, value) if got == name => return Some(value),
                Incoming::Event(..) => {}
                _ => return None,
            }
        }
    }
}

/// Resident memory of process `pid`, in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The value of `metric` (summed over its labels) in the server's `/metrics`.
pub async fn metric(addr: SocketAddr, metric: &str) -> f64 {
    let (_, text) = super::http(addr, "GET", "/metrics", "").await;
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The p99 of `samples` (sorted in place).
pub fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}
