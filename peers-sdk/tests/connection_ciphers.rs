//! Transport cipher negotiation as a `Connection` user sees it: which AEAD two
//! configurations end up with, that data flows under each, and how a mismatch fails.

use std::sync::Arc;

use peers_sdk::handshake::TransportCipher::{self, Aes256Gcm, ChaCha20Poly1305};
use peers_sdk::rpc::RemoteError;
use peers_sdk::{
    CloseCode, Connection, ConnectionConfig, DeviceInfo, DeviceKeys, Error, HandshakeError, MemorySocket, TrustLevel,
};
use serde_bytes::ByteBuf;

fn config(user: &str, ciphers: &[TransportCipher]) -> ConnectionConfig {
    let keys = Arc::new(DeviceKeys::generate(user).unwrap());
    ConnectionConfig::new(keys, |_: &DeviceInfo| TrustLevel::Trusted).with_ciphers(ciphers.iter().copied())
}

async fn connect(
    dialer: &[TransportCipher],
    listener: &[TransportCipher],
) -> (Result<Connection, Error>, Result<Connection, Error>) {
    let (x, y) = MemorySocket::pair(64, 64 * 1024);
    tokio::join!(
        Connection::connect(Box::new(x), config("alice", dialer), None),
        Connection::accept(Box::new(y), config("bob", listener)),
    )
}

#[tokio::test]
async fn both_ciphers_carry_large_messages_both_ways() {
    let both = [Aes256Gcm, ChaCha20Poly1305];
    let cases = [(&both[..], &both[..], Aes256Gcm), (&[ChaCha20Poly1305][..], &both[..], ChaCha20Poly1305)];
    for (dialer, listener, expected) in cases {
        let (a, b) = connect(dialer, listener).await;
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!((a.cipher(), b.cipher()), (Some(expected), Some(expected)));
        let echo = |data: ByteBuf| async move { Ok::<_, RemoteError>(data) };
        a.expose_rpc("echo", echo);
        b.expose_rpc("echo", echo);
        // Several chunks of 64 KiB frames under the negotiated cipher.
        let payload =
            ByteBuf::from((0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect::<Vec<_>>());
        let back: ByteBuf = a.emit("echo", &payload).await.unwrap();
        assert!(back == payload, "{expected}: echo from the listener differs");
        let back: ByteBuf = b.emit("echo", &payload).await.unwrap();
        assert!(back == payload, "{expected}: echo from the dialer differs");
    }
}

#[tokio::test]
async fn the_default_configuration_negotiates_the_cpus_preference() {
    let trusting = |_: &DeviceInfo| TrustLevel::Trusted;
    let config = |user| ConnectionConfig::new(Arc::new(DeviceKeys::generate(user).unwrap()), trusting);
    let (x, y) = MemorySocket::pair(64, 64 * 1024);
    let (a, b) = tokio::join!(
        Connection::connect(Box::new(x), config("alice"), None),
        Connection::accept(Box::new(y), config("bob")),
    );
    let preferred = TransportCipher::preferred().first().copied();
    assert_eq!(a.unwrap().cipher(), preferred);
    assert_eq!(b.unwrap().cipher(), preferred);
}

#[tokio::test]
async fn no_common_cipher_is_refused_and_the_dialer_learns_why() {
    let (dialer, listener) = connect(&[ChaCha20Poly1305], &[Aes256Gcm]).await;
    let err = listener.unwrap_err();
    assert!(matches!(&err, Error::Handshake(HandshakeError::NoCommonCipher { offered }) if offered == &[1]), "{err}");
    match dialer.unwrap_err() {
        Error::Closed { reason } => {
            assert_eq!(reason.code, CloseCode::ProtocolError);
            assert!(reason.message.contains("no common transport cipher"), "{}", reason.message);
        }
        other => panic!("dialer failed with {other}"),
    }
}

#[tokio::test]
async fn an_empty_cipher_list_is_a_local_error() {
    let (dialer, _) = connect(&[], &[ChaCha20Poly1305]).await;
    assert!(matches!(dialer, Err(Error::InvalidInput { .. })), "{:?}", dialer.err());
}
