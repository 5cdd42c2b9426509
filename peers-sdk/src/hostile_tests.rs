//! The catalogue of hostile inputs for `peers-sdk`: each case sends something a
//! broken or malicious peer could send and asserts a typed error, and that nothing
//! leaked (pending calls, buffered bytes) or was lost (what was accepted before the
//! attack is still delivered; the connection either survives or closes cleanly).
//!
//! It lives inside the crate so an attacker can be built from the real internals:
//! the sans-IO handshake, the sealer and the frame encoder.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand_core::OsRng;

use crate::codec::{CodecConfig, FrameDecoder, FrameEncoder};
use crate::connection::seal::{Opener, Sealer};
use crate::error::{CodecError, Error, HandshakeError};
use crate::handshake::{HandshakeConfig, Initiator, ReplayGuard, Responder};
use crate::rpc::{Envelope, RemoteError, RemoteErrorCode};
use crate::socket::{ChannelBinding, CloseCode, ClosedBy, MemorySocket, Socket, SocketState, TransportSecurity};
use crate::{Connection, ConnectionConfig, ConnectionState, DeviceInfo, DeviceKeys, TrustLevel, TrustStore};

const NOW: u64 = 1_800_000_000_000;
const MAX_FRAME: usize = 64 * 1024;

fn keys(user: &str) -> Arc<DeviceKeys> {
    Arc::new(DeviceKeys::generate(user).unwrap())
}

fn trusting(keys: &Arc<DeviceKeys>) -> ConnectionConfig {
    ConnectionConfig::new(keys.clone(), |_: &DeviceInfo| TrustLevel::Trusted)
}

fn now() -> u64 {
    crate::connection::unix_millis()
}

/// An attacker that completes a genuine handshake with a victim that accepts, then
/// sends whatever it likes, sealed with the real session keys.
struct RawPeer {
    socket: MemorySocket,
    sealer: Sealer,
    opener: Opener,
    encoder: FrameEncoder,
    decoder: FrameDecoder,
}

impl RawPeer {
    async fn attack(victim: &Arc<DeviceKeys>) -> (RawPeer, Connection) {
        let (a, b) = MemorySocket::pair(64, MAX_FRAME);
        let accept = tokio::spawn(Connection::accept(Box::new(b), trusting(victim)));
        let mallory = keys("mallory");
        let (state, m1) =
            Initiator::start(HandshakeConfig::new(mallory), &TransportSecurity::default(), None, now(), &mut OsRng)
                .unwrap();
        a.send(m1.into()).await.unwrap();
        let verify = state.read(&a.recv().await.unwrap(), now()).unwrap();
        let (m3, session) = verify.finish(TrustLevel::Trusted, TrustLevel::Known, now()).unwrap();
        a.send(m3.into()).await.unwrap();
        let victim_conn = accept.await.unwrap().unwrap();
        let (sealer, opener) = crate::connection::seal::for_session(&session);
        let mut peer = RawPeer {
            socket: a,
            sealer,
            opener,
            encoder: FrameEncoder::new(CodecConfig::default()),
            decoder: FrameDecoder::new(CodecConfig::default()),
        };
        let (ready, _) = peer.recv().await.unwrap();
        assert_eq!(ready, Envelope::Ready);
        (peer, victim_conn)
    }

    fn sealed(&mut self, envelope: &Envelope, body: &[u8]) -> Vec<Bytes> {
        let message = envelope.encode(body).unwrap();
        let frames = self.encoder.encode(message.as_slice(), MAX_FRAME - 24, 8, 16).unwrap();
        frames.into_iter().map(|f| self.sealer.seal(f).unwrap()).collect()
    }

    async fn send(&mut self, envelope: &Envelope, body: &[u8]) {
        for frame in self.sealed(envelope, body) {
            self.socket.send(frame).await.unwrap();
        }
    }

    /// Seals an arbitrary plaintext PeerTx frame.
    fn seal_raw(&mut self, plaintext: &[u8]) -> Bytes {
        let mut buf = BytesMut::from(&[0u8; 8][..]);
        buf.extend_from_slice(plaintext);
        self.sealer.seal(buf).unwrap()
    }

    async fn recv(&mut self) -> Result<(Envelope, Bytes), Error> {
        loop {
            let frame = self.socket.recv().await?;
            if let Some(message) = self.decoder.decode(self.opener.open(frame)?)? {
                return Ok(Envelope::decode(message)?);
            }
        }
    }
}

async fn closed_with(conn: &Connection, code: CloseCode) -> String {
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await.expect("connection stayed open");
    assert_eq!(reason.code, code, "{reason}");
    assert_eq!(conn.pending_calls(), 0, "calls left pending after close");
    reason.message
}

/// Starts a call from the victim that stays pending until the attack closes the
/// connection; it must then fail at once.
fn pending_call(victim: &Connection) -> tokio::task::JoinHandle<Result<u32, Error>> {
    let victim = victim.clone();
    tokio::spawn(async move { victim.emit_with_timeout::<_, u32>("slow", &(), Duration::from_secs(60)).await })
}

async fn fails_closed(call: tokio::task::JoinHandle<Result<u32, Error>>) {
    let result = tokio::time::timeout(Duration::from_secs(5), call).await.expect("pending call hung").unwrap();
    assert!(matches!(result, Err(Error::Closed { .. })), "{result:?}");
}

// ---- socket and codec -----------------------------------------------------------

#[tokio::test]
async fn oversized_socket_frame_is_refused_and_socket_survives() {
    let (a, b) = MemorySocket::pair(4, 1024);
    let err = a.send(Bytes::from(vec![0u8; 1025])).await.unwrap_err();
    assert!(matches!(err, Error::FrameTooLarge { size: 1025, max: 1024 }));
    a.send(Bytes::from_static(b"still fine")).await.unwrap();
    assert_eq!(b.recv().await.unwrap(), "still fine");
}

fn chunk(id: u32, index: u32, count: u32, total: u64, data: &[u8]) -> Bytes {
    let mut f = vec![0x01, 0x00];
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&index.to_be_bytes());
    f.extend_from_slice(&count.to_be_bytes());
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(data);
    Bytes::from(f)
}

#[test]
fn declared_oversized_message_is_refused_before_buffering() {
    let config = CodecConfig { max_message_size: 1 << 20, ..CodecConfig::default() };
    let mut decoder = FrameDecoder::new(config);
    let err = decoder.decode(chunk(1, 0, 4096, 1 << 40, b"x")).unwrap_err();
    assert!(matches!(err, CodecError::MessageTooLarge { .. }), "{err}");
    assert_eq!(decoder.buffered_bytes(), 0);
}

#[test]
fn truncated_chunk_header_is_refused() {
    let mut decoder = FrameDecoder::new(CodecConfig::default());
    let err = decoder.decode(chunk(1, 0, 2, 10, b"").slice(..9)).unwrap_err();
    assert!(matches!(err, CodecError::Truncated { .. }), "{err}");
}

#[test]
fn chunk_index_out_of_range_is_refused() {
    let mut decoder = FrameDecoder::new(CodecConfig::default());
    let err = decoder.decode(chunk(1, 5, 3, 30, b"0123456789")).unwrap_err();
    assert!(matches!(err, CodecError::ChunkOutOfRange { index: 5, count: 3, .. }), "{err}");
}

#[test]
fn duplicate_chunk_is_refused() {
    let mut decoder = FrameDecoder::new(CodecConfig::default());
    assert!(decoder.decode(chunk(1, 0, 3, 30, b"0123456789")).unwrap().is_none());
    let err = decoder.decode(chunk(1, 0, 3, 30, b"0123456789")).unwrap_err();
    assert!(matches!(err, CodecError::UnexpectedChunk { expected: 1, got: 0, .. }), "{err}");
}

#[test]
fn too_many_partial_messages_are_refused() {
    let config = CodecConfig { max_partial_messages: 4, ..CodecConfig::default() };
    let mut decoder = FrameDecoder::new(config);
    for id in 0..4 {
        decoder.decode(chunk(id, 0, 2, 20, b"0123456789")).unwrap();
    }
    let err = decoder.decode(chunk(99, 0, 2, 20, b"0123456789")).unwrap_err();
    assert!(matches!(err, CodecError::TooManyPartialMessages { max: 4 }), "{err}");
    assert!(decoder.buffered_bytes() <= 40);
}

#[test]
fn brotli_bomb_fails_without_expanding() {
    let zeros = vec![0u8; 64 << 20];
    let mut bomb = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut bomb, 4096, 9, 22);
        std::io::Write::write_all(&mut w, &zeros).unwrap();
    }
    assert!(bomb.len() < 64 * 1024, "bomb should be small: {}", bomb.len());
    let mut frame = vec![0x00, 0x01];
    frame.extend_from_slice(&bomb);
    let config = CodecConfig { max_message_size: 1 << 20, ..CodecConfig::default() };
    let err = FrameDecoder::new(config).decode(Bytes::from(frame)).unwrap_err();
    assert!(matches!(err, CodecError::DecompressedTooLarge { max } if max == 1 << 20), "{err}");
}

#[test]
fn unknown_frame_type_is_refused() {
    let err = FrameDecoder::new(CodecConfig::default()).decode(Bytes::from_static(&[0x7f, 0, 1, 2])).unwrap_err();
    assert_eq!(err, CodecError::UnknownFrameType(0x7f));
}

// ---- handshake ------------------------------------------------------------------

#[test]
fn bad_signature_is_refused() {
    // Mallory answers with Bob's identity (signing key and id) but cannot sign as
    // Bob: she signs with her own key.
    let (alice, bob, mallory) = (keys("alice"), keys("bob"), keys("mallory"));
    let sec = TransportSecurity::default();
    let (state, m1) = Initiator::start(HandshakeConfig::new(alice), &sec, None, NOW, &mut OsRng).unwrap();
    let mut responder = Responder::new(HandshakeConfig::new(mallory.clone()), &sec, NOW).unwrap();
    let mut claimed = bob.info(vec![]).unwrap();
    claimed.static_key = mallory.static_public().to_bytes();
    responder.forge_info_for_tests(claimed);
    let (_, m2) = responder.read_hello(&m1, NOW, &mut ReplayGuard::new(1000, 8), &mut OsRng).unwrap();
    let err = state.read(&m2, NOW).unwrap_err();
    assert_eq!(err, HandshakeError::BadSignature { device: bob.device_id() });
}

#[test]
fn replayed_first_message_is_refused() {
    let (alice, bob) = (keys("alice"), keys("bob"));
    let sec = TransportSecurity::default();
    let mut guard = ReplayGuard::new(300_000, 64);
    let (_, m1) = Initiator::start(HandshakeConfig::new(alice), &sec, None, NOW, &mut OsRng).unwrap();
    let first = Responder::new(HandshakeConfig::new(bob.clone()), &sec, NOW).unwrap();
    first.read_hello(&m1, NOW, &mut guard, &mut OsRng).unwrap();
    let again = Responder::new(HandshakeConfig::new(bob), &sec, NOW).unwrap();
    let err = again.read_hello(&m1, NOW + 1_000, &mut guard, &mut OsRng).unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::Replayed)), "{err}");
}

#[test]
fn stale_timestamp_is_refused() {
    let (alice, bob) = (keys("alice"), keys("bob"));
    let sec = TransportSecurity::default();
    let (_, m1) = Initiator::start(HandshakeConfig::new(alice), &sec, None, NOW, &mut OsRng).unwrap();
    let late = NOW + 3_600_000;
    let responder = Responder::new(HandshakeConfig::new(bob), &sec, late).unwrap();
    let err = responder.read_hello(&m1, late, &mut ReplayGuard::new(300_000, 8), &mut OsRng).unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::StaleTimestamp { skew_ms: 3_600_000, .. })), "{err}");
}

#[test]
fn reflected_first_message_is_refused() {
    let alice = keys("alice");
    let sec = TransportSecurity::default();
    let (state, m1) = Initiator::start(HandshakeConfig::new(alice), &sec, None, NOW, &mut OsRng).unwrap();
    assert_eq!(state.read(&m1, NOW).unwrap_err(), HandshakeError::Reflected);
}

#[tokio::test]
async fn wrong_channel_binding_is_refused_over_a_connection() {
    let (alice, bob) = (keys("alice"), keys("bob"));
    let binding = |local: &[u8], remote: &[u8]| TransportSecurity {
        confidential: true,
        channel_binding: Some(ChannelBinding { kind: "test".into(), local: local.into(), remote: remote.into() }),
    };
    // A man in the middle terminates the transport on each side, so each side
    // sees his fingerprint instead of its peer's.
    let (a, b) = MemorySocket::pair(8, MAX_FRAME);
    let a2 = MemorySocketWithSecurity::new(a, binding(b"alice", b"mitm-1"));
    let b2 = MemorySocketWithSecurity::new(b, binding(b"bob", b"mitm-2"));
    let (dial, accept) = tokio::join!(
        Connection::connect(Box::new(a2), trusting(&alice), None),
        Connection::accept(Box::new(b2), trusting(&bob)),
    );
    let err = accept.unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::ChannelBindingMismatch)), "{err}");
    let err = dial.unwrap_err();
    assert!(matches!(&err, Error::Closed { reason } if reason.code == CloseCode::ProtocolError), "{err}");
}

/// A memory socket that reports a chosen security description.
#[derive(Debug)]
struct MemorySocketWithSecurity(MemorySocket, crate::SocketInfo);

impl MemorySocketWithSecurity {
    fn new(socket: MemorySocket, security: TransportSecurity) -> Self {
        let info = crate::SocketInfo { security, ..socket.info().clone() };
        MemorySocketWithSecurity(socket, info)
    }
}

#[async_trait::async_trait]
impl Socket for MemorySocketWithSecurity {
    fn info(&self) -> &crate::SocketInfo {
        &self.1
    }
    async fn send(&self, frame: Bytes) -> crate::Result<()> {
        self.0.send(frame).await
    }
    async fn recv(&self) -> crate::Result<Bytes> {
        self.0.recv().await
    }
    async fn close(&self, reason: crate::CloseReason) {
        self.0.close(reason).await
    }
    fn state(&self) -> SocketState {
        self.0.state()
    }
    async fn closed(&self) -> crate::CloseReason {
        self.0.closed().await
    }
}

#[tokio::test]
async fn untrusted_key_is_refused_and_both_sides_learn_why() {
    let (alice, bob) = (keys("alice"), keys("bob"));
    let store = TrustStore::new(TrustLevel::Unknown);
    let (a, b) = MemorySocket::pair(8, MAX_FRAME);
    let (dial, accept) = tokio::join!(
        Connection::connect(Box::new(a), trusting(&alice), None),
        Connection::accept(Box::new(b), ConnectionConfig::new(bob, store)),
    );
    let err = accept.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Handshake(HandshakeError::Untrusted { level: TrustLevel::Unknown, floor: TrustLevel::Known, .. })
        ),
        "{err}"
    );
    let err = dial.unwrap_err();
    assert!(
        matches!(&err, Error::Closed { reason } if reason.code == CloseCode::Refused && reason.by == ClosedBy::Remote),
        "{err}"
    );
}

#[tokio::test]
async fn unexpected_peer_is_refused() {
    let (alice, bob, carol) = (keys("alice"), keys("bob"), keys("carol"));
    let (a, b) = MemorySocket::pair(8, MAX_FRAME);
    let (dial, _accept) = tokio::join!(
        Connection::connect(Box::new(a), trusting(&alice), Some(carol.device_id())),
        Connection::accept(Box::new(b), trusting(&bob)),
    );
    let err = dial.unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::UnexpectedPeer { .. })), "{err}");
}

#[tokio::test]
async fn garbage_instead_of_a_handshake_is_refused() {
    let bob = keys("bob");
    let (a, b) = MemorySocket::pair(8, MAX_FRAME);
    a.send(Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n")).await.unwrap();
    let err = Connection::accept(Box::new(b), trusting(&bob)).await.unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::Malformed { message: 1, .. })), "{err}");
    let reason = a.closed().await;
    assert_eq!(reason.code, CloseCode::ProtocolError);
}

#[tokio::test]
async fn handshake_that_never_finishes_times_out() {
    let bob = keys("bob");
    let (a, b) = MemorySocket::pair(8, MAX_FRAME);
    let mut config = trusting(&bob);
    config.handshake_timeout = Duration::from_millis(200);
    let err = Connection::accept(Box::new(b), config).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert_eq!(a.closed().await.code, CloseCode::Timeout);
}

// ---- sealed frames and RPC --------------------------------------------------------

#[tokio::test]
async fn replayed_sealed_frame_closes_with_integrity_error_after_delivering_the_original() {
    let victim = keys("victim");
    let (mut peer, conn) = RawPeer::attack(&victim).await;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    conn.expose_rpc("note", move |n: u32| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move { Ok::<_, RemoteError>(n + 1) }
    });
    let call = pending_call(&conn);
    let frames = peer.sealed(&Envelope::Call { id: 1, method: "note".into() }, &rmp_serde::to_vec(&7u32).unwrap());
    peer.socket.send(frames[0].clone()).await.unwrap();
    // The original is delivered: the victim runs the call and replies (after its
    // own pending "slow" call reaches us).
    let (reply, body) = loop {
        match peer.recv().await.unwrap() {
            (Envelope::Call { .. }, _) => continue,
            other => break other,
        }
    };
    assert_eq!(reply, Envelope::Reply { id: 1 });
    assert_eq!(rmp_serde::from_slice::<u32>(&body).unwrap(), 8);
    peer.socket.send(frames[0].clone()).await.unwrap();
    let message = closed_with(&conn, CloseCode::ProtocolError).await;
    assert!(message.contains("integrity"), "{message}");
    fails_closed(call).await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "the replay must not run the call again");
}

#[tokio::test]
async fn reordered_sealed_frame_closes_with_integrity_error() {
    let victim = keys("victim");
    let (mut peer, conn) = RawPeer::attack(&victim).await;
    let first = peer.sealed(&Envelope::Reply { id: 1 }, &[0xc0]);
    let second = peer.sealed(&Envelope::Reply { id: 2 }, &[0xc0]);
    peer.socket.send(second[0].clone()).await.unwrap();
    peer.socket.send(first[0].clone()).await.unwrap();
    let message = closed_with(&conn, CloseCode::ProtocolError).await;
    assert!(message.contains("skipped ahead"), "{message}");
}

#[tokio::test]
async fn flipped_bit_in_a_sealed_frame_is_never_delivered() {
    let victim = keys("victim");
    let (mut peer, conn) = RawPeer::attack(&victim).await;
    let called = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = called.clone();
    conn.expose_rpc("note", move |_: u32| {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, RemoteError>(()) }
    });
    let frames = peer.sealed(&Envelope::Call { id: 1, method: "note".into() }, &rmp_serde::to_vec(&7u32).unwrap());
    let mut bad = BytesMut::from(frames[0].clone());
    let at = bad.len() - 20;
    bad[at] ^= 0x40;
    peer.socket.send(bad.freeze()).await.unwrap();
    let message = closed_with(&conn, CloseCode::ProtocolError).await;
    assert!(message.contains("authentication tag"), "{message}");
    assert!(!called.load(std::sync::atomic::Ordering::SeqCst), "corrupted call was executed");
}

#[tokio::test]
async fn truncated_messagepack_envelope_closes_the_connection_and_fails_pending_calls() {
    let victim = keys("victim");
    let (mut peer, conn) = RawPeer::attack(&victim).await;
    let call = pending_call(&conn);
    let message = Envelope::Call { id: 1, method: "note".into() }.encode(&[]).unwrap();
    let whole = &message.as_slice()[..message.as_slice().len() - 2];
    let mut plaintext = vec![0x00, 0x00];
    plaintext.extend_from_slice(whole);
    let sealed = peer.seal_raw(&plaintext);
    peer.socket.send(sealed).await.unwrap();
    let message = closed_with(&conn, CloseCode::ProtocolError).await;
    assert!(message.contains("envelope"), "{message}");
    fails_closed(call).await;
    assert!(matches!(conn.state(), ConnectionState::Closed(_)));
}

#[tokio::test]
async fn reply_for_an_unknown_call_is_discarded_and_the_connection_survives() {
    let victim = keys("victim");
    let (mut peer, conn) = RawPeer::attack(&victim).await;
    peer.send(&Envelope::Reply { id: 999 }, &rmp_serde::to_vec(&1u32).unwrap()).await;
    peer.send(&Envelope::Fail { id: 998, error: RemoteError::handler("nope") }, &[]).await;
    // The victim still answers calls afterwards.
    conn.expose_rpc("ping", |(): ()| async { Ok::<_, RemoteError>("pong".to_string()) });
    peer.send(&Envelope::Call { id: 5, method: "ping".into() }, &rmp_serde::to_vec(&()).unwrap()).await;
    let (reply, body) = peer.recv().await.unwrap();
    assert_eq!(reply, Envelope::Reply { id: 5 });
    assert_eq!(rmp_serde::from_slice::<String>(&body).unwrap(), "pong");
    assert_eq!(conn.state(), ConnectionState::Verified);
    assert_eq!(conn.pending_calls(), 0);
}

#[tokio::test]
async fn call_to_an_unknown_method_gets_a_typed_remote_error() {
    let victim = keys("victim");
    let (mut peer, conn) = RawPeer::attack(&victim).await;
    peer.send(&Envelope::Call { id: 3, method: "nope".into() }, &[0xc0]).await;
    let (reply, _) = peer.recv().await.unwrap();
    assert!(
        matches!(&reply, Envelope::Fail { id: 3, error } if error.code == RemoteErrorCode::UnknownMethod),
        "{reply:?}"
    );
    assert_eq!(conn.state(), ConnectionState::Verified);
}

#[tokio::test]
async fn arguments_of_the_wrong_type_get_bad_arguments() {
    let victim = keys("victim");
    let (mut peer, conn) = RawPeer::attack(&victim).await;
    conn.expose_rpc("add", |(x, y): (u32, u32)| async move { Ok::<_, RemoteError>(x + y) });
    peer.send(&Envelope::Call { id: 4, method: "add".into() }, &rmp_serde::to_vec("not numbers").unwrap()).await;
    let (reply, _) = peer.recv().await.unwrap();
    assert!(
        matches!(&reply, Envelope::Fail { id: 4, error } if error.code == RemoteErrorCode::BadArguments),
        "{reply:?}"
    );
}

#[tokio::test]
async fn stream_data_beyond_the_granted_window_closes_the_connection() {
    let victim = keys("victim");
    let (mut peer, conn) = RawPeer::attack(&victim).await;
    conn.expose_stream("sink", |(): (), _reader| std::future::pending::<Result<(), RemoteError>>());
    peer.send(&Envelope::StreamOpen { id: 1, name: "sink".into() }, &rmp_serde::to_vec(&()).unwrap()).await;
    let (accept, _) = peer.recv().await.unwrap();
    let Envelope::StreamAccept { id: 1, window } = accept else { panic!("expected accept, got {accept:?}") };
    let piece = vec![0u8; 60 * 1024];
    // Ignore the window: send a quarter more than granted.
    for _ in 0..(window * 5 / 4) / piece.len() as u64 + 1 {
        if peer.socket.state() != SocketState::Open {
            break;
        }
        for frame in peer.sealed(&Envelope::StreamData { id: 1 }, &piece) {
            let _ = peer.socket.send(frame).await;
        }
    }
    let message = closed_with(&conn, CloseCode::ProtocolError).await;
    assert!(message.contains("window"), "{message}");
}

#[tokio::test]
async fn reopening_an_open_stream_id_closes_the_connection() {
    let victim = keys("victim");
    let (mut peer, conn) = RawPeer::attack(&victim).await;
    conn.expose_stream("sink", |(): (), _reader| std::future::pending::<Result<(), RemoteError>>());
    let open = Envelope::StreamOpen { id: 9, name: "sink".into() };
    peer.send(&open, &rmp_serde::to_vec(&()).unwrap()).await;
    peer.send(&open, &rmp_serde::to_vec(&()).unwrap()).await;
    let message = closed_with(&conn, CloseCode::ProtocolError).await;
    assert!(message.contains("already open"), "{message}");
}

#[tokio::test]
async fn opening_streams_without_reading_the_refusals_closes_the_connection() {
    let victim = keys("victim");
    let (mut peer, conn) = RawPeer::attack(&victim).await;
    conn.expose_stream("held", |(): (), _reader| std::future::pending::<Result<(), RemoteError>>());
    let limit = trusting(&victim).max_incoming_streams;
    // Far more opens than the victim may run or refuse at once, and never a read:
    // the answers pile up in the socket until the victim stops answering.
    let meta = rmp_serde::to_vec(&()).unwrap();
    for id in 1..=(limit as u64 * 20) {
        if conn.state() != crate::ConnectionState::Verified {
            break;
        }
        let frames = peer.sealed(&Envelope::StreamOpen { id, name: "held".into() }, &meta);
        for frame in frames {
            let _ = peer.socket.send(frame).await;
        }
    }
    let message = closed_with(&conn, CloseCode::ProtocolError).await;
    assert!(message.contains("refusals"), "{message}");
}
