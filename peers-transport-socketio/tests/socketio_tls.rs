//! The server over TLS (rustls) with a self-signed certificate made at test time:
//! a client trusting it connects and runs a `Connection` on top; both sockets are
//! confidential but offer no channel binding, so the connection keeps its own
//! AEAD. A plain client dialing the TLS port fails promptly with a typed error.

use std::time::{Duration, Instant};

use peers_sdk::Socket;
use peers_sdk::conformance::connect_trusting;
use peers_sdk::rpc::RemoteError;
use peers_transport_socketio::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use peers_transport_socketio::{
    ClientOptions, Error, ServerOptions, SocketIoServer, connect, server_tls_config, server_tls_config_from_pem,
};

/// A TLS server on 127.0.0.1 with a fresh self-signed certificate, and that
/// certificate (for the client to trust).
async fn tls_server() -> (SocketIoServer, CertificateDer<'static>) {
    tls_server_with(ServerOptions::default()).await
}

async fn tls_server_with(mut options: ServerOptions) -> (SocketIoServer, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    options.tls = Some(server_tls_config(vec![cert.clone()], key).unwrap());
    let server = SocketIoServer::bind(options).await.unwrap();
    (server, cert)
}

fn trusting(cert: &CertificateDer<'static>) -> ClientOptions {
    let mut options = ClientOptions::default();
    options.tls_root_certificates = vec![cert.clone()];
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_over_tls_is_confidential_and_keeps_its_aead() {
    let (server, cert) = tls_server().await;
    let url = server.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert!(server.is_tls());

    let (dialed, accepted) = tokio::join!(connect(&url, trusting(&cert)), server.accept());
    let (dialed, accepted) = (dialed.unwrap(), accepted.unwrap());
    for socket in [&dialed, &accepted] {
        let security = &socket.info().security;
        assert!(security.confidential, "{:?}", socket.info());
        assert!(security.channel_binding.is_none(), "{:?}", socket.info());
    }
    assert!(accepted.info().peer_addr.as_deref().is_some_and(|addr| addr.starts_with("127.0.0.1:")));

    let (alice, bob) = connect_trusting(Box::new(dialed), Box::new(accepted)).await;
    for connection in [&alice, &bob] {
        assert!(connection.socket_info().security.confidential);
        assert!(connection.is_encrypted(), "no binding over TLS: the connection's own AEAD stays on");
    }
    bob.expose_rpc("add", |(x, y): (i64, i64)| async move { Ok::<_, RemoteError>(x + y) });
    alice.expose_rpc("greet", |name: String| async move { Ok::<_, RemoteError>(format!("hello, {name}")) });
    assert_eq!(alice.emit::<_, i64>("add", &(2, 40)).await.unwrap(), 42);
    assert_eq!(bob.emit::<_, String>("greet", "bob").await.unwrap(), "hello, bob");
    // A frame larger than the small-frame limit goes as a binary event.
    let big = serde_bytes::ByteBuf::from(vec![0x1e; 200_000]);
    bob.expose_rpc("len", |data: serde_bytes::ByteBuf| async move { Ok::<_, RemoteError>(data.len()) });
    assert_eq!(alice.emit::<_, usize>("len", &big).await.unwrap(), 200_000);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_client_on_the_tls_port_fails_promptly() {
    let (server, cert) = tls_server().await;
    let plain = format!("http://{}/socket.io/", server.local_addr());
    let started = Instant::now();
    let err = connect(&plain, ClientOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    // A TLS client that does not trust the certificate fails too.
    let err = connect(&server.url(), ClientOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");

    // The server still serves a client that does trust it.
    let url = server.url();
    let (dialed, accepted) = tokio::join!(connect(&url, trusting(&cert)), server.accept());
    assert!(dialed.unwrap().info().security.confidential);
    assert!(accepted.unwrap().info().security.confidential);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_neither_blocks_others_nor_stays_forever() {
    use tokio::io::AsyncReadExt;
    let mut options = ServerOptions::default();
    options.tls_handshake_timeout = Duration::from_millis(500);
    options.max_pending_tls_handshakes = 2;
    let (server, cert) = tls_server_with(options).await;
    // Two connections that never send a ClientHello fill the handshake slots.
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(tokio::net::TcpStream::connect(server.local_addr()).await.unwrap());
    }
    // A real client waits at most until they time out, then gets through.
    let url = server.url();
    let (dialed, accepted) = tokio::join!(connect(&url, trusting(&cert)), server.accept());
    assert!(dialed.unwrap().info().security.confidential);
    assert!(accepted.is_some());
    // The silent ones were closed by the handshake timeout.
    for mut tcp in silent {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await.expect("not closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    server.shutdown().await;
}

#[test]
fn pem_configs_are_parsed_and_checked() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_pem, key_pem) = (certified.cert.pem(), certified.key_pair.serialize_pem());
    server_tls_config_from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    for (cert, key) in [("", key_pem.as_str()), (cert_pem.as_str(), ""), (key_pem.as_str(), cert_pem.as_str())] {
        let err = server_tls_config_from_pem(cert.as_bytes(), key.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { field: "tls", .. }), "{err:?}");
    }
}
