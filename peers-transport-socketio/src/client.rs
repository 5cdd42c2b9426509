//! [`connect`]: dial a socket.io server with `rust_socketio` and get a
//! [`SocketIoSocket`].
//!
//! `rust_socketio` 0.6 shapes a few choices here:
//!
//! - It runs every callback in its one polling task and awaits it, so our
//!   callbacks (which return a ready future) see events in arrival order.
//! - It reconnects on its own unless told not to. This layer never reconnects
//!   (the connection manager above decides), but a stream that simply ends (the
//!   server closed the WebSocket without a socket.io disconnect, as
//!   `SocketIo::close` does) is reported nowhere except to the reconnect logic.
//!   So reconnection is left on with one attempt, and the `on_reconnect` callback
//!   records "connection to the server ended" and hands back an empty address, so
//!   the attempt fails on URL parsing before any I/O.
//! - It connects over plain `ws://` through `tokio-tungstenite`'s
//!   `connect_async`, with no way to set `TCP_NODELAY`. A binary event is two
//!   WebSocket messages, so Nagle's algorithm would hold the second back for
//!   the peer's delayed ACK; small frames therefore go as one text event
//!   ([`ClientOptions::small_frame_limit`], see `docs/transport-socketio.md`).
//! - Its engine.io layer splits every incoming WebSocket message at 0x1e, the
//!   record separator of engine.io's HTTP long-polling payloads, binary messages
//!   included, so a binary attachment holding that byte arrives in pieces (an
//!   "EngineIO Error", or worse, a piece that parses as another packet). Our
//!   hello therefore asks the server for binary frames without 0x1e, patched or
//!   escaped (`separators`). Text is safe: JSON escapes 0x1e.
//! - It exposes neither the TCP addresses nor the TLS session (it dials
//!   `https`/`wss` with native-tls; we can only hand it a connector, to trust
//!   [`ClientOptions::tls_root_certificates`]), so `local_addr` is unknown and
//!   `https`/`wss` sockets offer no channel binding (a binding offered by one
//!   side only would fail the handshake).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use peers_sdk::socket::{Locality, SocketInfo, TransportKind, TransportSecurity};
use peers_sdk::{CloseCode, CloseReason};
use rust_socketio::asynchronous::{Client, ClientBuilder, ReconnectSettings};
use rust_socketio::{Event, Payload, TransportType};
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use tracing::debug;
use url::Url;

use crate::error::{Error, Result};
use crate::flow::Credit;
use crate::locality::classify;
use crate::separators;
use crate::socket::{Core, Link, SocketIoSocket, spawn_writer};
use crate::wire::{
    self, CloseNotice, DEFAULT_SMALL_FRAME_LIMIT, EVENT_BINARY, EVENT_CLOSE, EVENT_CREDIT, EVENT_HELLO, EVENT_TEXT,
    WireError,
};
use crate::{FrameLimits, LanRange};

/// Settings of [`connect`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The socket.io namespace to join. Default: `/`.
    pub namespace: String,
    /// The request path, used when the URL has none. Default: `/socket.io/`.
    pub path: String,
    /// Frame size and receive window.
    pub limits: FrameLimits,
    /// Dialing, joining the namespace and the server's hello must finish within
    /// this time. Default: 10 s.
    pub connect_timeout: Duration,
    /// Extra address ranges that count as LAN for [`SocketInfo::locality`].
    pub lan_ranges: Vec<LanRange>,
    /// Frames smaller than this go as one text event (base64), larger ones as a
    /// binary event. Default: [`DEFAULT_SMALL_FRAME_LIMIT`] (64 KiB). 0 sends
    /// every frame as binary (slow for small frames: see the module docs).
    pub small_frame_limit: usize,
    /// For `https`/`wss` URLs: root certificates to trust in addition to the
    /// system's (for instance a server's self-signed certificate). Default: none.
    pub tls_root_certificates: Vec<CertificateDer<'static>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            namespace: "/".into(),
            path: "/socket.io/".into(),
            limits: FrameLimits::default(),
            connect_timeout: Duration::from_secs(10),
            lan_ranges: Vec::new(),
            small_frame_limit: DEFAULT_SMALL_FRAME_LIMIT,
            tls_root_certificates: Vec::new(),
        }
    }
}

/// Prefix of the error `rust_socketio` reports for a socket.io `connect_error`.
const CONNECT_ERROR_PREFIX: &str = "Received an ConnectError frame: ";

/// A callback's return value: `rust_socketio` awaits it; ours is always ready.
type Done = Pin<Box<dyn Future<Output = ()> + Send>>;

fn done() -> Done {
    Box::pin(std::future::ready(()))
}

/// Dials `url` (`http://host:port/`, `ws://…`; `https`/`wss` use the system's
/// TLS, trusting the system's roots and [`ClientOptions::tls_root_certificates`]) over WebSocket, joins the namespace and exchanges hellos. The socket
/// never reconnects; when the connection ends, [`closed`](peers_sdk::Socket::closed)
/// says why.
pub async fn connect(url: &str, options: ClientOptions) -> Result<SocketIoSocket> {
    options.limits.validate()?;
    if !options.namespace.starts_with('/') {
        return Err(Error::InvalidConfig { field: "namespace", detail: "must start with '/'".into() });
    }
    let started = Instant::now();
    let target = Target::parse(url, &options.path)?;
    let (peer_addr, locality) = target.classify(&options.lan_ranges).await;
    // `rust_socketio` corrupts binary messages holding 0x1e: ask for escaping.
    let core =
        Core::new(format!("client {}", target.url), options.limits.max_frame_size, options.limits.window(), true);

    let ended = core.clone();
    let builder = client_builder(target.url.as_str(), &options.namespace, move |why| ended.transport_closed(why));
    let mut builder = callbacks(builder, &core);
    if !options.tls_root_certificates.is_empty() {
        builder = builder.tls_config(tls_connector(&options.tls_root_certificates)?);
    }
    let connect_error = |detail: String| Error::Connect { url: target.url.to_string(), detail };
    let client = match tokio::time::timeout(options.connect_timeout, builder.connect()).await {
        Ok(Ok(client)) => client,
        Ok(Err(err)) => return Err(connect_error(err.to_string())),
        Err(_) => return Err(Error::Timeout { what: "socket.io connect", after: options.connect_timeout }),
    };
    let left = options.connect_timeout.saturating_sub(started.elapsed());
    let hello = match tokio::time::timeout(left, core.peer_hello()).await {
        Ok(Some(hello)) => hello,
        Ok(None) => {
            let _ = client.disconnect().await;
            let reason = match core.state() {
                peers_sdk::SocketState::Closed(reason) => reason,
                peers_sdk::SocketState::Open => CloseReason::new(CloseCode::TransportFailure, "closed"),
            };
            return Err(match reason.code {
                CloseCode::Refused | CloseCode::LimitExceeded | CloseCode::GoingAway => {
                    Error::Refused { url: target.url.to_string(), reason: reason.message }
                }
                _ => connect_error(reason.message),
            });
        }
        Err(_) => {
            let _ = client.disconnect().await;
            return Err(Error::Timeout { what: "socket.io server hello", after: options.connect_timeout });
        }
    };
    let ours = serde_json::to_value(core.hello()).map_err(|e| connect_error(e.to_string()))?;
    if let Err(err) = client.emit(EVENT_HELLO, Payload::Text(vec![ours])).await {
        let _ = client.disconnect().await;
        return Err(connect_error(format!("sending hello: {err}")));
    }
    let max_frame_size = usize::try_from(hello.max_frame).unwrap_or(usize::MAX).min(options.limits.max_frame_size);
    let info = SocketInfo::new(TransportKind::SocketIo, max_frame_size)
        .with_locality(locality)
        .with_peer_addr(peer_addr)
        // Encrypted for https/wss, but without an exporter to bind to.
        .with_security(TransportSecurity {
            confidential: matches!(target.url.scheme(), "https" | "wss"),
            channel_binding: None,
        });
    let link = ClientLink { client, small_frame_limit: options.small_frame_limit, disconnected: false };
    let (outbox, writer) = spawn_writer(core.clone(), link);
    debug!(socket = %core.label, "socket.io client socket open");
    Ok(SocketIoSocket::new(info, core, outbox, writer))
}

/// A native-tls connector (what `rust_socketio` dials `https`/`wss` with) that
/// trusts `roots` besides the system's roots.
fn tls_connector(roots: &[CertificateDer<'static>]) -> Result<native_tls::TlsConnector> {
    let invalid = |detail: String| Error::InvalidConfig { field: "tls_root_certificates", detail };
    let mut builder = native_tls::TlsConnector::builder();
    for root in roots {
        builder.add_root_certificate(native_tls::Certificate::from_der(root).map_err(|e| invalid(e.to_string()))?);
    }
    builder.build().map_err(|e| invalid(e.to_string()))
}

/// Registers our callbacks; each runs synchronously and returns a ready future.
fn callbacks(builder: ClientBuilder, core: &Arc<Core>) -> ClientBuilder {
    let max = core.max_recv_frame();
    let on = |handle: fn(&Core, Payload, usize) -> std::result::Result<(), WireError>| {
        let core = core.clone();
        move |payload: Payload, _: Client| -> Done {
            if let Err(error) = handle(&core, payload, max) {
                core.protocol_violation(&error);
            }
            done()
        }
    };
    let error_core = core.clone();
    let close_core = core.clone();
    let any_core = core.clone();
    builder
        .on(EVENT_BINARY, on(on_binary))
        .on(EVENT_TEXT, on(on_text))
        .on(EVENT_HELLO, on(on_hello))
        .on(EVENT_CREDIT, on(on_credit))
        .on(EVENT_CLOSE, on(on_close))
        .on(Event::Error, move |payload: Payload, _: Client| -> Done {
            on_error(&error_core, payload);
            done()
        })
        .on(Event::Close, move |_: Payload, _: Client| -> Done {
            close_core.transport_closed("server disconnected the socket.io connection without a reason");
            done()
        })
        .on_any(move |event: Event, _: Payload, _: Client| -> Done {
            // Called for every custom event, ours included.
            let name = String::from(event);
            if ![EVENT_BINARY, EVENT_TEXT, EVENT_HELLO, EVENT_CREDIT, EVENT_CLOSE].contains(&name.as_str()) {
                any_core.protocol_violation(&WireError::UnknownEvent(name));
            }
            done()
        })
}

/// A `rust_socketio` client builder for `url` set up the way every peers
/// client uses one: `namespace`, WebSocket only, and no reconnection of its
/// own (reconnecting is the layer above's job). The library reports a stream
/// that simply ends only to its reconnect logic (see the module docs), so
/// reconnection stays on with one attempt and no delay; `ended` runs then, with
/// the message `"connection to the server ended"`, and the attempt gets an
/// empty address, which fails before any I/O.
pub fn client_builder(url: &str, namespace: &str, ended: impl Fn(&str) + Send + Sync + 'static) -> ClientBuilder {
    ClientBuilder::new(url)
        .namespace(namespace)
        .transport_type(TransportType::Websocket)
        .reconnect(true)
        .reconnect_on_disconnect(false)
        .max_reconnect_attempts(1)
        .reconnect_delay(0, 0)
        .on_reconnect(move || -> Pin<Box<dyn Future<Output = ReconnectSettings> + Send>> {
            ended("connection to the server ended");
            let mut settings = ReconnectSettings::new();
            settings.address("");
            Box::pin(std::future::ready(settings))
        })
}

fn on_binary(core: &Core, payload: Payload, max: usize) -> std::result::Result<(), WireError> {
    match payload {
        Payload::Binary(encoded) => {
            core.on_frame(separators::decode(core.recv_format(), encoded, max)?);
            Ok(())
        }
        _ => Err(WireError::Malformed { event: EVENT_BINARY, detail: "text where a binary frame belongs".into() }),
    }
}

fn on_text(core: &Core, payload: Payload, max: usize) -> std::result::Result<(), WireError> {
    let (frame, grant) = wire::decode_text_frame(&text(payload)?, max)?;
    core.on_frame(frame);
    if let Some(grant) = grant {
        core.on_grant(grant);
    }
    Ok(())
}

fn on_hello(core: &Core, payload: Payload, _: usize) -> std::result::Result<(), WireError> {
    core.on_hello(wire::decode_control(EVENT_HELLO, &text(payload)?)?);
    Ok(())
}

fn on_credit(core: &Core, payload: Payload, _: usize) -> std::result::Result<(), WireError> {
    core.on_grant(wire::decode_control(EVENT_CREDIT, &text(payload)?)?);
    Ok(())
}

fn on_close(core: &Core, payload: Payload, _: usize) -> std::result::Result<(), WireError> {
    core.on_close_notice(wire::decode_control(EVENT_CLOSE, &text(payload)?)?);
    Ok(())
}

/// The JSON arguments of a text event.
fn text(payload: Payload) -> std::result::Result<Vec<Value>, WireError> {
    match payload {
        Payload::Text(values) => Ok(values),
        _ => Err(WireError::Malformed { event: "event", detail: "binary where JSON belongs".into() }),
    }
}

/// `rust_socketio` reports transport errors, a failed heartbeat and the server's
/// `connect_error` (refusal) through the `error` event.
fn on_error(core: &Core, payload: Payload) {
    let message = match payload {
        Payload::Text(values) => {
            values.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect::<Vec<_>>().join(" ")
        }
        Payload::Binary(_) => "binary error payload".into(),
        #[allow(deprecated)]
        Payload::String(message) => message,
    };
    match message.strip_prefix(CONNECT_ERROR_PREFIX) {
        Some(detail) => {
            // `{"message": "..."}` from socket.io servers.
            let reason = serde_json::from_str::<Value>(detail)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| detail.to_owned());
            core.close_refused(reason);
        }
        None => core.transport_closed(format!("socket.io error: {message}")),
    }
}

/// The writer's way out: `rust_socketio`'s emit, which waits for the WebSocket.
/// Only the writer emits after the hello, so the two WebSocket messages of a
/// binary event never interleave with another event's.
struct ClientLink {
    client: Client,
    small_frame_limit: usize,
    disconnected: bool,
}

impl ClientLink {
    async fn emit(&self, event: &str, payload: Payload) -> std::result::Result<(), String> {
        self.client.emit(event, payload).await.map_err(|e| e.to_string())
    }

    async fn emit_json(&self, event: &str, value: impl serde::Serialize) -> std::result::Result<(), String> {
        let value = serde_json::to_value(value).map_err(|e| e.to_string())?;
        self.emit(event, Payload::Text(vec![value])).await
    }
}

impl Link for ClientLink {
    fn piggybacks(&self, len: usize) -> bool {
        len < self.small_frame_limit
    }

    async fn send_frame(&mut self, frame: Bytes, grant: Option<Credit>) -> std::result::Result<(), String> {
        if frame.len() < self.small_frame_limit {
            self.emit(EVENT_TEXT, Payload::Text(wire::encode_text_frame(&frame, grant))).await
        } else {
            self.emit(EVENT_BINARY, Payload::Binary(frame)).await
        }
    }

    async fn send_grant(&mut self, grant: Credit) -> std::result::Result<(), String> {
        self.emit_json(EVENT_CREDIT, grant).await
    }

    async fn send_close(&mut self, notice: &CloseNotice) -> std::result::Result<(), String> {
        self.emit_json(EVENT_CLOSE, notice).await
    }

    async fn disconnect(&mut self) {
        self.disconnected = true;
        let _ = self.client.disconnect().await;
    }
}

impl Drop for ClientLink {
    /// The writer was stopped before it disconnected: without this the polling
    /// task would keep the connection alive.
    fn drop(&mut self) {
        if !self.disconnected
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let client = self.client.clone();
            runtime.spawn(async move {
                let _ = client.disconnect().await;
            });
        }
    }
}

/// The URL to dial and the peer it names.
struct Target {
    url: Url,
    host: url::Host<String>,
    port: u16,
}

impl Target {
    fn parse(url: &str, default_path: &str) -> Result<Target> {
        let invalid = |detail: &str| Error::InvalidUrl { url: url.to_owned(), detail: detail.into() };
        let mut parsed =
            Url::parse(url).map_err(|e| Error::InvalidUrl { url: url.to_owned(), detail: e.to_string() })?;
        if !matches!(parsed.scheme(), "http" | "https" | "ws" | "wss") {
            return Err(invalid("scheme must be http, https, ws or wss"));
        }
        let host = parsed.host().ok_or_else(|| invalid("no host"))?.to_owned();
        let port = parsed.port_or_known_default().ok_or_else(|| invalid("no port"))?;
        if parsed.path().is_empty() || parsed.path() == "/" {
            parsed.set_path(default_path);
        }
        Ok(Target { url: parsed, host, port })
    }

    /// The peer's address as text and its locality. A host name is resolved
    /// here; `rust_socketio` resolves it again and may pick another address.
    async fn classify(&self, lan_ranges: &[LanRange]) -> (String, Locality) {
        let ip: Option<IpAddr> = match &self.host {
            url::Host::Ipv4(ip) => Some((*ip).into()),
            url::Host::Ipv6(ip) => Some((*ip).into()),
            url::Host::Domain(name) => tokio::net::lookup_host((name.as_str(), self.port))
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .map(|addr| addr.ip()),
        };
        match ip {
            Some(ip) => (SocketAddr::new(ip, self.port).to_string(), classify(ip, lan_ranges)),
            None => (format!("{}:{}", self.host, self.port), Locality::Internet),
        }
    }
}
