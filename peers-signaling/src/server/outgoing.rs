//! Bounded memory per connection: each connection's outgoing buffer is
//! bounded in bytes, and a connection that stops reading is closed.
//!
//! socketioxide queues every packet for a connection in a channel counted in
//! packets, and its WebSocket writer waits as long as the client's TCP window
//! stays shut. So the server counts the bytes itself:
//!
//! ```text
//!  emit ──▶ OutgoingBudget::admit(len) ──▶ socketioxide's queue ──▶ the wire
//!             queued += len                                         drained += bytes written
//!             queued - drained > max_outgoing_bytes: refused, the connection is closed
//! ```
//!
//! - *Queued* bytes are counted where the server emits (`Peer::emit`, replies),
//!   as the engine.io text the packet becomes.
//! - *Drained* bytes are counted where they leave: a WebSocket connection's
//!   TCP writes ([`MeteredStream`]), or the body of a long-polling `GET`
//!   ([`meter_requests`]). [`meter_requests`] ties each engine.io session
//!   (`sid`) to its budget, so a session that starts on polling and upgrades
//!   to WebSocket keeps one budget.
//! - A write the client's TCP window has held back for
//!   [`ServerConfig::write_stall_timeout`](super::ServerConfig::write_stall_timeout)
//!   fails: the stream is dead (reads fail too), engine.io closes the session,
//!   the disconnect handler ends the device's relays, and the stuck writer
//!   drops its queue.

use std::collections::HashMap;
use std::future::Future as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use peers_transport_socketio::QuickAck;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tracing::debug;

/// One connection's outgoing bytes: queued by the server, drained to the
/// client. Shared by the engine.io session's requests and the socket.
#[derive(Debug)]
pub(crate) struct OutgoingBudget {
    limit: u64,
    queued: AtomicU64,
    drained: AtomicU64,
    closing: AtomicBool,
}

impl OutgoingBudget {
    pub(crate) fn new(limit: usize) -> Self {
        OutgoingBudget {
            limit: limit as u64,
            queued: AtomicU64::new(0),
            drained: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        }
    }

    /// Bytes queued and not yet written.
    pub(crate) fn outstanding(&self) -> u64 {
        self.queued.load(Ordering::Acquire).saturating_sub(self.drained.load(Ordering::Acquire))
    }

    /// Counts `len` more bytes, unless they would take the connection over
    /// its limit.
    pub(crate) fn admit(&self, len: u64) -> bool {
        if self.outstanding().saturating_add(len) > self.limit {
            return false;
        }
        self.queued.fetch_add(len, Ordering::AcqRel);
        true
    }

    /// Counts `len` bytes whatever the limit.
    pub(crate) fn admit_always(&self, len: u64) {
        self.queued.fetch_add(len, Ordering::AcqRel);
    }

    /// Whether this call is the first to close the connection for being over
    /// its limit.
    pub(crate) fn close_once(&self) -> bool {
        !self.closing.swap(true, Ordering::AcqRel)
    }

    /// Counts `len` bytes written. Never beyond what was queued: bytes the
    /// budget did not count (engine.io pings, Redis-mode room emits) must not
    /// turn into credit for later emits.
    fn drained(&self, len: u64) {
        let queued = self.queued.load(Ordering::Acquire);
        let _ = self.drained.fetch_update(Ordering::AcqRel, Ordering::Acquire, |drained| {
            Some(drained.saturating_add(len).min(queued.max(drained)))
        });
    }
}

/// The engine.io text of an event packet with one JSON argument, in bytes:
/// `4` (engine.io message) `2<namespace>,` (socket.io event, or `3<ns>,<ack>`)
/// `["<event>",<json>]`, plus the WebSocket frame header or the polling
/// separator. The wire count includes exactly these.
pub(crate) fn packet_len(namespace: &str, event: Option<&str>, ack: Option<i64>, data: &Value) -> u64 {
    let json = json_len(data);
    let namespace = if namespace == "/" { 0 } else { namespace.len() as u64 + 1 };
    let head = 2 + namespace;
    let body = match (event, ack) {
        (Some(event), _) => json + event.len() as u64 + 5,
        (None, Some(ack)) => json + ack.to_string().len() as u64 + 2,
        (None, None) => json + 2,
    };
    let text = head + body;
    let frame_header = match text {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    text + frame_header
}

/// Bytes of `value` as compact JSON, without building the text.
fn json_len(value: &Value) -> u64 {
    struct Count(u64);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Which budget each engine.io session (`sid`) uses.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_sid: Mutex<HashMap<String, Weak<OutgoingBudget>>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<OutgoingBudget>>> {
        self.by_sid.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn insert(&self, sid: String, budget: &Arc<OutgoingBudget>) {
        self.lock().insert(sid, Arc::downgrade(budget));
    }

    pub(crate) fn remove(&self, sid: &str) {
        self.lock().remove(sid);
    }

    fn get(&self, sid: &str) -> Option<Arc<OutgoingBudget>> {
        self.lock().get(sid).and_then(Weak::upgrade)
    }
}

/// What the server's listener knows of one TCP connection: the client's
/// address and the budget its WebSocket writes drain (set once the
/// connection carries an engine.io WebSocket).
#[derive(Debug)]
pub(crate) struct Wire {
    budget: OnceLock<Arc<OutgoingBudget>>,
    dead: AtomicBool,
    reader: Mutex<Option<Waker>>,
}

impl Wire {
    fn kill(&self) {
        self.dead.store(true, Ordering::Release);
        if let Some(waker) = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take() {
            waker.wake();
        }
    }
}

/// The connect info of [`SignalingServer::bind`](super::SignalingServer::bind)'s
/// connections: the client's address and its [`Wire`].
#[derive(Clone, Debug)]
pub(crate) struct ClientConn {
    pub(crate) addr: SocketAddr,
    pub(crate) wire: Arc<Wire>,
}

impl Connected<IncomingStream<'_, MeteredListener>> for ClientConn {
    fn connect_info(stream: IncomingStream<'_, MeteredListener>) -> Self {
        ClientConn { addr: *stream.remote_addr(), wire: stream.io().wire.clone() }
    }
}

/// The client address of a request or socket, with either connect info.
pub(crate) fn client_addr(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<ClientConn>>()
        .map(|info| info.0.addr)
        .or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0))
}

/// TCP connections open per address group (IPv6 by /64), counted from
/// accept, before any byte of HTTP.
#[derive(Debug, Default)]
pub(crate) struct AddressConnections {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl AddressConnections {
    /// Counts a connection from `ip`, unless the group holds `max` already.
    fn try_open(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let group = crate::ratelimit::group(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(group).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(AddressSlot { table: self.clone(), group })
    }
}

/// One counted connection; uncounted when dropped.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    table: Arc<AddressConnections>,
    group: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.group) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.group);
            }
        }
    }
}

/// A TCP listener whose connections count their written bytes and fail a
/// write stalled longer than `stall_timeout`, at most
/// `max_per_address` at once from one address group.
#[derive(Debug)]
pub(crate) struct MeteredListener {
    pub(crate) inner: TcpListener,
    pub(crate) stall_timeout: Duration,
    pub(crate) max_per_address: usize,
    pub(crate) per_address: Arc<AddressConnections>,
}

impl axum::serve::Listener for MeteredListener {
    type Io = MeteredStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (MeteredStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((tcp, addr)) => {
                    let Some(slot) = self.per_address.try_open(addr.ip(), self.max_per_address) else {
                        debug!(%addr, "closing a connection over the per-address limit");
                        super::metrics::rejected(crate::protocol::ErrorCode::ServerFull);
                        drop(tcp);
                        continue;
                    };
                    // Replies are small writes: no Nagle on our side, and quick ACKs so a
                    // `rust_socketio` client's own Nagle does not wait 40 ms on our delayed ACK.
                    let tcp = QuickAck::new(tcp, true, true);
                    let wire = Arc::new(Wire {
                        budget: OnceLock::new(),
                        dead: AtomicBool::new(false),
                        reader: Mutex::new(None),
                    });
                    let stream =
                        MeteredStream { tcp, wire, stall_timeout: self.stall_timeout, stalled: None, _slot: slot };
                    return (stream, addr);
                }
                Err(err) => {
                    // Out of descriptors or a connection reset before accept:
                    // wait a little rather than spin.
                    debug!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One accepted connection (see [`MeteredListener`]).
#[derive(Debug)]
pub(crate) struct MeteredStream {
    tcp: QuickAck,
    wire: Arc<Wire>,
    stall_timeout: Duration,
    /// Set while a write waits for the client's TCP window.
    stalled: Option<Pin<Box<Sleep>>>,
    /// Its place in the per-address count.
    _slot: AddressSlot,
}

fn stalled_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")
}

impl AsyncRead for MeteredStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.wire.dead.load(Ordering::Acquire) {
            return Poll::Ready(Err(stalled_error()));
        }
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if polled.is_pending() {
            *self.wire.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            // A write may have given up between the check and here.
            if self.wire.dead.load(Ordering::Acquire) {
                return Poll::Ready(Err(stalled_error()));
            }
        }
        polled
    }
}

impl AsyncWrite for MeteredStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.wire.dead.load(Ordering::Acquire) {
            return Poll::Ready(Err(stalled_error()));
        }
        match Pin::new(&mut self.tcp).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => {
                self.stalled = None;
                if let Some(budget) = self.wire.budget.get() {
                    budget.drained(written as u64);
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                let timeout = self.stall_timeout;
                let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if stalled.as_mut().poll(cx).is_ready() {
                    debug!("closing a connection whose client stopped reading");
                    super::metrics::stalled();
                    self.wire.kill();
                    return Poll::Ready(Err(stalled_error()));
                }
                Poll::Pending
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The engine.io query parameters of a request: its session and transport.
fn engine_query(request: &Request) -> (Option<String>, Option<String>) {
    let (mut sid, mut transport) = (None, None);
    for pair in request.uri().query().unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("sid", value)) => sid = Some(value.to_owned()),
            Some(("transport", value)) => transport = Some(value.to_owned()),
            _ => {}
        }
    }
    (sid, transport)
}

/// State of [`meter_requests`].
#[derive(Clone, Debug)]
pub(crate) struct Metering {
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) max_outgoing_bytes: usize,
    pub(crate) path: String,
}

/// Ties engine.io requests to their session's budget: the first request of a
/// session carries a new budget (engine.io keeps that request's extensions,
/// where the namespace finds it), a WebSocket connection's TCP writes drain
/// its session's budget, and a polling `GET`'s body drains it as it is sent.
pub(crate) async fn meter_requests(
    axum::extract::State(metering): axum::extract::State<Metering>,
    mut request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with(metering.path.as_str()) {
        return next.run(request).await;
    }
    let (sid, transport) = engine_query(&request);
    let budget = match &sid {
        Some(sid) => metering.sessions.get(sid),
        None => {
            let budget = Arc::new(OutgoingBudget::new(metering.max_outgoing_bytes));
            request.extensions_mut().insert(budget.clone());
            Some(budget)
        }
    };
    let Some(budget) = budget else { return next.run(request).await };
    let polling_get = transport.as_deref() == Some("polling") && request.method() == axum::http::Method::GET;
    if transport.as_deref() == Some("websocket")
        && let Some(info) = request.extensions().get::<ConnectInfo<ClientConn>>()
    {
        let _ = info.0.wire.budget.set(budget.clone());
    }
    let response = next.run(request).await;
    if polling_get && sid.is_some() {
        let (parts, body) = response.into_parts();
        return Response::from_parts(parts, Body::new(MeteredBody { inner: body, budget }));
    }
    response
}

/// A polling response body that drains its session's budget as it is sent.
struct MeteredBody {
    inner: Body,
    budget: Arc<OutgoingBudget>,
}

impl HttpBody for MeteredBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.budget.drained(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_budget_refuses_beyond_its_limit_until_drained() {
        let budget = OutgoingBudget::new(100);
        assert!(budget.admit(60));
        assert!(!budget.admit(41), "over the limit");
        assert!(budget.admit(40));
        budget.drained(50);
        assert_eq!(budget.outstanding(), 50);
        assert!(budget.admit(50));
        assert!(!budget.admit(1));
        budget.drained(10_000);
        assert_eq!(budget.outstanding(), 0);
        assert!(!budget.admit(101), "bytes it never counted give no credit");
    }

    #[test]
    fn packet_length_is_the_engine_io_text_and_frame_header() {
        let data = json!({"a": 1});
        // `42/signaling,["reply",{"a":1}]`, after the engine.io `4`.
        let text = format!("4{}", r#"2/signaling,["reply",{"a":1}]"#);
        assert_eq!(packet_len("/signaling", Some("reply"), None, &data), text.len() as u64 + 2);
        let ack = format!("4{}", r#"3/signaling,17[{"a":1}]"#);
        assert_eq!(packet_len("/signaling", None, Some(17), &data), ack.len() as u64 + 2);
    }
}
