//! Hostile socket.io clients against a real server on loopback. Each one is told
//! why (`"peers:close"` with a close code) and disconnected, while a well-behaved
//! client on the same server keeps making RPCs over its `Connection`, and a new
//! well-behaved client can still connect afterwards.
//!
//! The hostile clients are raw `rust_socketio` clients, which can send any event
//! name, any JSON arguments, binary attachments, acks and even broken JSON.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use peers_sdk::conformance::connect_trusting;
use peers_sdk::rpc::RemoteError;
use peers_sdk::socket::ClosedBy;
use peers_sdk::{CloseCode, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, Error, Socket, TrustLevel};
use peers_transport_socketio::{ClientOptions, FrameLimits, ServerOptions, SocketIoServer, SocketIoSocket, connect};
use rust_socketio::asynchronous::{Client, ClientBuilder, ReconnectSettings};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const STEP: Duration = Duration::from_secs(5);
/// The server's receive window in frames: small, so overrunning it is quick.
const WINDOW_FRAMES: u64 = 8;

/// `hello_timeout`: how long the server waits for a client's hello. Short where a
/// test waits for it to pass; the default elsewhere, so a loaded machine (CI
/// compiling other crates) does not turn a slow hello into a false failure.
fn server_options(hello_timeout: Duration) -> ServerOptions {
    let mut options = ServerOptions::default();
    options.handshake_timeout = hello_timeout;
    let mut limits = FrameLimits::default();
    limits.recv_window_frames = WINDOW_FRAMES;
    options.limits = limits;
    options
}

/// Shows the server's logs (the reason each hostile client was dropped) with the
/// output of a failing test, or with `--nocapture`; `RUST_LOG` overrides the
/// default of warnings from this crate.
fn show_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("peers_transport_socketio=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

fn trust_everyone(_: &DeviceInfo) -> TrustLevel {
    TrustLevel::Trusted
}

/// A well-behaved client: a `Connection` to the server with an `add1` RPC.
async fn good_client(server: &SocketIoServer) -> (Connection, Connection) {
    let url = server.url();
    let (dialed, accepted) = tokio::join!(connect(&url, ClientOptions::default()), server.accept());
    let (dialer, listener) = connect_trusting(Box::new(dialed.unwrap()), Box::new(accepted.unwrap())).await;
    listener.expose_rpc("add1", |x: u64| async move { Ok::<_, RemoteError>(x + 1) });
    assert_eq!(dialer.emit::<_, u64>("add1", &41).await.unwrap(), 42);
    (dialer, listener)
}

/// Calls `add1` in a loop until stopped; returns how many calls succeeded.
/// Any failure fails the test.
struct Chatter {
    stop: Arc<AtomicBool>,
    task: JoinHandle<u64>,
}

impl Chatter {
    fn start(connection: Connection) -> Chatter {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut calls = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let reply = connection.emit_with_timeout::<_, u64>("add1", &calls, STEP).await;
                    assert_eq!(reply.expect("the good client's call failed during the attacks"), calls + 1);
                    calls += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                calls
            }
        });
        Chatter { stop, task }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(STEP, self.task).await.expect("the good client's calls hung").unwrap()
    }
}

/// What a raw client saw from the server.
#[derive(Debug)]
enum Seen {
    Hello(Value),
    /// `"peers:close"`: code and message.
    Close(String, String),
    /// The socket.io connection ended (a disconnect packet, an error, or the
    /// stream simply ending), and how.
    Gone(#[allow(dead_code, reason = "shown by Debug in failure messages")] String),
    /// Anything else.
    Other,
}

type Done = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A `rust_socketio` client that does only what the test tells it to.
struct RawClient {
    client: Client,
    seen: mpsc::UnboundedReceiver<Seen>,
    server_hello: Value,
}

impl RawClient {
    /// Joins the namespace and waits for the server's hello (sends none).
    async fn connect(server: &SocketIoServer) -> RawClient {
        let (tx, mut seen) = mpsc::unbounded_channel();
        let report = |make: fn(Payload) -> Seen| {
            let tx = tx.clone();
            move |payload: Payload, _: Client| -> Done {
                let _ = tx.send(make(payload));
                Box::pin(std::future::ready(()))
            }
        };
        let gone = tx.clone();
        let builder = ClientBuilder::new(server.url())
            .transport_type(TransportType::Websocket)
            .on("peers:hello", report(|p| Seen::Hello(first_arg(p))))
            .on(
                "peers:close",
                report(|p| {
                    let notice = first_arg(p);
                    Seen::Close(
                        notice["code"].as_str().unwrap_or("").into(),
                        notice["message"].as_str().unwrap_or("").into(),
                    )
                }),
            )
            .on("peers:credit", report(|_| Seen::Other))
            .on("b", report(|_| Seen::Other))
            .on(Event::Close, report(|_| Seen::Gone("server disconnected".into())))
            .on(Event::Error, report(|p| Seen::Gone(format!("error: {p:?}"))))
            // As in the library: a stream that just ends is reported only to the
            // reconnect logic; one attempt, to an address that cannot be parsed.
            .reconnect(true)
            .reconnect_on_disconnect(false)
            .max_reconnect_attempts(1)
            .reconnect_delay(0, 0)
            .on_reconnect(move || -> Pin<Box<dyn Future<Output = ReconnectSettings> + Send>> {
                let _ = gone.send(Seen::Gone("connection ended".into()));
                let mut settings = ReconnectSettings::new();
                settings.address("");
                Box::pin(std::future::ready(settings))
            });
        let client = tokio::time::timeout(STEP, builder.connect()).await.expect("connect hung").unwrap();
        let server_hello = match tokio::time::timeout(STEP, seen.recv()).await {
            Ok(Some(Seen::Hello(hello))) => hello,
            other => panic!("expected the server's hello, got {other:?}"),
        };
        RawClient { client, seen, server_hello }
    }

    /// Sends a valid hello.
    async fn hello(&self) {
        let limits = FrameLimits::default();
        let hello = json!({
            "v": 1,
            "maxFrame": limits.max_frame_size,
            "window": {"frames": limits.recv_window_frames, "bytes": limits.recv_window_bytes},
            "escapeRecordSeparators": true,
        });
        self.emit("peers:hello", Payload::Text(vec![hello])).await;
    }

    async fn emit(&self, event: &str, payload: Payload) {
        // A send can fail once the server has hung up; that is fine here.
        let _ = self.client.emit(event, payload).await;
    }

    /// The server's close notice: (code, message). Skips credit and frames.
    async fn close_notice(&mut self, what: impl std::fmt::Debug) -> (String, String) {
        loop {
            match tokio::time::timeout(STEP, self.seen.recv()).await {
                Ok(Some(Seen::Close(code, message))) => return (code, message),
                Ok(Some(Seen::Other)) => {}
                other => panic!("{what:?}: expected a close notice, got {other:?}"),
            }
        }
    }

    /// Waits until the server has ended the socket.io connection (without this
    /// client disconnecting on its own).
    async fn disconnected(mut self, what: impl std::fmt::Debug) {
        loop {
            match tokio::time::timeout(STEP, self.seen.recv()).await {
                Ok(Some(Seen::Gone(_))) => return,
                Ok(Some(_)) => {}
                Ok(None) => panic!("{what:?}: the client's callbacks are gone"),
                Err(_) => panic!("{what:?}: the server did not disconnect the client within {STEP:?}"),
            }
        }
    }
}

fn first_arg(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut values) if !values.is_empty() => values.swap_remove(0),
        other => panic!("expected a JSON argument, got {other:?}"),
    }
}

/// Ways to break the transport's protocol.
#[derive(Clone, Copy, Debug)]
enum Attack {
    // Before the client's hello: no socket reaches `accept`.
    UnknownEvent,
    HelloWithMissingFields,
    HelloOfAnotherVersion,
    CreditThatIsNotAnObject,
    AckRequested,
    BrokenJson,
    // After the client's hello: the accepted socket reports the violation.
    TextWhereBinaryBelongs,
    BinaryWhereTextBelongs,
    BadBase64,
    ExtraArguments,
    FrameAboveMaxAsText,
    FrameAboveMaxAsBinary,
    MessageAboveEnginePayload,
    SecondHello,
    FramesBeyondCredit,
    UnknownEventLater,
}

impl Attack {
    const ALL: [Attack; 16] = [
        Attack::UnknownEvent,
        Attack::HelloWithMissingFields,
        Attack::HelloOfAnotherVersion,
        Attack::CreditThatIsNotAnObject,
        Attack::AckRequested,
        Attack::BrokenJson,
        Attack::TextWhereBinaryBelongs,
        Attack::BinaryWhereTextBelongs,
        Attack::BadBase64,
        Attack::ExtraArguments,
        Attack::FrameAboveMaxAsText,
        Attack::FrameAboveMaxAsBinary,
        Attack::MessageAboveEnginePayload,
        Attack::SecondHello,
        Attack::FramesBeyondCredit,
        Attack::UnknownEventLater,
    ];

    fn after_hello(self) -> bool {
        !matches!(
            self,
            Attack::UnknownEvent
                | Attack::HelloWithMissingFields
                | Attack::HelloOfAnotherVersion
                | Attack::CreditThatIsNotAnObject
                | Attack::AckRequested
                | Attack::BrokenJson
        )
    }

    /// Whether socketioxide itself drops the connection, before any of our
    /// handlers sees the message, so the client gets no close notice: packets it
    /// cannot parse (broken JSON, an attachment over the limit) and WebSocket
    /// messages over the payload limit.
    fn dropped_by_socketioxide(self) -> bool {
        matches!(self, Attack::BrokenJson | Attack::FrameAboveMaxAsBinary | Attack::MessageAboveEnginePayload)
    }

    /// How the accepted socket reports the attack. A WebSocket message over the
    /// limit ends the connection in a way socketioxide does not tell apart from a
    /// network failure.
    fn server_close_code(self) -> CloseCode {
        match self {
            Attack::MessageAboveEnginePayload => CloseCode::TransportFailure,
            _ => CloseCode::ProtocolError,
        }
    }

    async fn run(self, client: &RawClient) {
        let max = FrameLimits::default().max_frame_size;
        let text = |values: Vec<Value>| Payload::Text(values);
        let base64 = |len: usize| Value::String(base64_of(&vec![7u8; len]));
        match self {
            Attack::UnknownEvent | Attack::UnknownEventLater => {
                client.emit("steal-secrets", text(vec![json!({"please": true})])).await;
            }
            Attack::HelloWithMissingFields => client.emit("peers:hello", text(vec![json!({"v": 1})])).await,
            Attack::HelloOfAnotherVersion => {
                let mut hello = client.server_hello.clone();
                hello["v"] = json!(2);
                client.emit("peers:hello", text(vec![hello])).await;
            }
            Attack::CreditThatIsNotAnObject => client.emit("peers:credit", text(vec![json!("lots")])).await,
            Attack::AckRequested => {
                let _ = client
                    .client
                    .emit_with_ack("peers:credit", text(vec![json!({"frames": 1, "bytes": 1})]), STEP, |_, _| {
                        Box::pin(async {})
                    })
                    .await;
            }
            Attack::BrokenJson => {
                // Not valid JSON: rust_socketio inserts a non-JSON string unquoted.
                #[allow(deprecated)]
                client.emit("t", Payload::String("AAAA\"}".into())).await;
            }
            Attack::TextWhereBinaryBelongs => client.emit("b", text(vec![json!("AAECAw==")])).await,
            Attack::BinaryWhereTextBelongs => client.emit("t", Payload::Binary(Bytes::from_static(b"frame"))).await,
            Attack::BadBase64 => client.emit("t", text(vec![json!("this is not base64!")])).await,
            Attack::ExtraArguments => {
                client.emit("t", text(vec![base64(4), json!({"frames": 1, "bytes": 1}), json!(3)])).await
            }
            Attack::FrameAboveMaxAsText => client.emit("t", text(vec![base64(max + 1)])).await,
            Attack::FrameAboveMaxAsBinary => client.emit("b", Payload::Binary(Bytes::from(vec![7u8; max + 1]))).await,
            Attack::MessageAboveEnginePayload => client.emit("t", text(vec![base64(4 * max)])).await,
            Attack::SecondHello => client.hello().await,
            Attack::FramesBeyondCredit => {
                for _ in 0..=WINDOW_FRAMES {
                    client.emit("t", text(vec![base64(16)])).await;
                }
            }
        }
    }
}

fn base64_of(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Waits until the server holds exactly `expected` sockets.
async fn connections_settle(server: &SocketIoServer, expected: usize) {
    let deadline = tokio::time::Instant::now() + STEP;
    while server.acceptor().connections() != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "server holds {} sockets, expected {expected}",
            server.acceptor().connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_are_disconnected_while_a_good_client_keeps_working() {
    show_logs();
    let server = SocketIoServer::bind(server_options(ServerOptions::default().handshake_timeout)).await.unwrap();
    let (alice, _bob) = good_client(&server).await;
    let chatter = Chatter::start(alice.clone());

    let mut disconnects = Vec::new();
    for attack in Attack::ALL {
        let mut hostile = RawClient::connect(&server).await;
        let accepted: Option<SocketIoSocket> = if attack.after_hello() {
            hostile.hello().await;
            Some(tokio::time::timeout(STEP, server.accept()).await.expect("hostile socket not accepted").unwrap())
        } else {
            None
        };
        attack.run(&hostile).await;

        if !attack.dropped_by_socketioxide() {
            let (code, message) = hostile.close_notice(attack).await;
            assert_eq!(code, "ProtocolError", "{attack:?}: {message}");
            assert!(!message.is_empty(), "{attack:?}: the notice gives no reason");
        }
        if let Some(accepted) = accepted {
            let reason = tokio::time::timeout(STEP, accepted.closed()).await.expect("accepted socket stayed open");
            assert_eq!(reason.code, attack.server_close_code(), "{attack:?}: {reason}");
            assert_eq!(reason.by, ClosedBy::Local, "{attack:?}: {reason}");
            // Frames that passed the checks before the violation are still
            // delivered; then the reason.
            let mut delivered = 0;
            let err = loop {
                match tokio::time::timeout(STEP, accepted.recv()).await.expect("recv hung") {
                    Ok(_) => delivered += 1,
                    Err(err) => break err,
                }
            };
            assert!(matches!(&err, Error::Closed { reason: r } if r.code == reason.code), "{attack:?}: {err}");
            let expected = if matches!(attack, Attack::FramesBeyondCredit) { WINDOW_FRAMES } else { 0 };
            assert_eq!(delivered, expected, "{attack:?}: frames delivered before the close");
        }
        // Waiting for each disconnect in turn would add up; they finish together.
        disconnects.push(tokio::spawn(hostile.disconnected(attack)));
    }
    for disconnect in disconnects {
        // `disconnected` panics if the server keeps a hostile client connected.
        disconnect.await.expect("a hostile client was not disconnected");
    }
    // Only the good client is left, and no hostile socket waits to be accepted.
    connections_settle(&server, 1).await;
    assert!(tokio::time::timeout(Duration::from_millis(100), server.accept()).await.is_err());

    let calls = chatter.finish().await;
    assert!(calls > 0, "the good client made no calls during the attacks");
    assert_eq!(alice.emit::<_, u64>("add1", &1).await.unwrap(), 2);
    // And a newcomer gets in.
    let (newcomer, _bob2) = good_client(&server).await;
    assert_eq!(newcomer.emit::<_, u64>("add1", &7).await.unwrap(), 8);
    connections_settle(&server, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_finish_a_handshake_time_out() {
    show_logs();
    let server = SocketIoServer::bind(server_options(Duration::from_millis(500))).await.unwrap();
    let (alice, _bob) = good_client(&server).await;
    let chatter = Chatter::start(alice.clone());

    // Joins the namespace and never sends the transport hello: closed with
    // Timeout after ServerOptions::handshake_timeout (500 ms).
    let mut silent = RawClient::connect(&server).await;
    let (code, message) = silent.close_notice("silent").await;
    assert_eq!(code, "Timeout", "{message}");
    silent.disconnected("silent").await;

    // Completes the transport hello but never starts the peers handshake:
    // Connection::accept gives up with a typed timeout and closes the socket.
    let stalled = RawClient::connect(&server).await;
    stalled.hello().await;
    let accepted = tokio::time::timeout(STEP, server.accept()).await.unwrap().unwrap();
    let mut config = ConnectionConfig::new(Arc::new(DeviceKeys::generate("bob").unwrap()), trust_everyone);
    config.handshake_timeout = Duration::from_millis(300);
    let err = tokio::time::timeout(STEP, Connection::accept(Box::new(accepted), config))
        .await
        .expect("Connection::accept hung")
        .unwrap_err();
    assert!(matches!(&err, Error::Timeout { what, .. } if what == "handshake"), "{err}");
    let mut stalled = stalled;
    let (code, message) = stalled.close_notice("stalled").await;
    assert_eq!(code, "Timeout", "{message}");
    stalled.disconnected("stalled").await;

    connections_settle(&server, 1).await;
    assert!(chatter.finish().await > 0);
    let (newcomer, _bob2) = good_client(&server).await;
    assert_eq!(newcomer.emit::<_, u64>("add1", &0).await.unwrap(), 1);
}
