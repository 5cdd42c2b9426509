//! Optional TLS for [`SocketIoServer`](crate::SocketIoServer): rustls (with the
//! `ring` provider) through `tokio-rustls`, behind an axum [`Listener`] that
//! accepts TCP connections and yields them once their TLS handshake is done.
//!
//! Handshakes run in their own tasks, so a slow or silent client cannot hold up
//! the others; at most [`ServerOptions::max_pending_tls_handshakes`](crate::ServerOptions::max_pending_tls_handshakes)
//! run at once (further connections wait in the kernel's backlog), and each must
//! finish within [`ServerOptions::tls_handshake_timeout`](crate::ServerOptions::tls_handshake_timeout).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

use crate::tcp::{QuickAck, is_per_connection};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use crate::error::{Error, Result};

/// A rustls server configuration (TLS 1.2 and 1.3, the `ring` provider, no
/// client authentication, ALPN `http/1.1`) for a certificate chain (leaf first)
/// and its private key, both DER.
pub fn server_tls_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>> {
    let invalid = |detail: String| Error::InvalidConfig { field: "tls", detail };
    if cert_chain.is_empty() {
        return Err(invalid("empty certificate chain".into()));
    }
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)
        .map_err(|e| invalid(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Like [`server_tls_config`], from PEM: the certificate chain (one or more
/// `CERTIFICATE` blocks, leaf first) and the private key (PKCS#8, PKCS#1 or SEC1).
pub fn server_tls_config_from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>> {
    let invalid = |detail: String| Error::InvalidConfig { field: "tls", detail };
    let certs = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("certificate chain: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid(format!("private key: {e}")))?;
    server_tls_config(certs, key)
}

type Handshake = Option<(TlsStream<QuickAck>, SocketAddr)>;

/// Accepts TCP, sets `TCP_NODELAY` and quick ACKs if asked ([`QuickAck`]), and yields connections whose TLS
/// handshake succeeded. Failed or timed-out handshakes are logged (`debug`) and
/// dropped.
pub(crate) struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    /// `TCP_NODELAY`, `TCP_QUICKACK` after reads.
    tcp_options: (bool, bool),
    handshake_timeout: Duration,
    max_pending: usize,
    pending: JoinSet<Handshake>,
}

impl TlsListener {
    pub(crate) fn new(
        tcp: TcpListener,
        config: Arc<ServerConfig>,
        tcp_options: (bool, bool),
        handshake_timeout: Duration,
        max_pending: usize,
    ) -> Self {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
            tcp_options,
            handshake_timeout,
            max_pending: max_pending.max(1),
            pending: JoinSet::new(),
        }
    }

    fn start_handshake(&mut self, tcp: TcpStream, peer: SocketAddr) {
        let tcp = QuickAck::new(tcp, self.tcp_options.0, self.tcp_options.1);
        let acceptor = self.acceptor.clone();
        let timeout = self.handshake_timeout;
        self.pending.spawn(async move {
            match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Some((tls, peer)),
                Ok(Err(err)) => {
                    debug!(%peer, %err, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    debug!(%peer, ?timeout, "TLS handshake timed out");
                    None
                }
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<QuickAck>;
    type Addr = SocketAddr;

    /// Cancel-safe: both branches are (`TcpListener::accept`, `JoinSet::join_next`).
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let room = self.pending.len() < self.max_pending;
            tokio::select! {
                accepted = self.tcp.accept(), if room => match accepted {
                    Ok((tcp, peer)) => self.start_handshake(tcp, peer),
                    Err(err) if is_per_connection(&err) => {}
                    Err(err) => {
                        // Out of file descriptors and the like: back off like axum does.
                        debug!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                Some(done) = self.pending.join_next(), if !self.pending.is_empty() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
