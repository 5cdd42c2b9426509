//! quinn: QUIC over UDP on loopback, TLS 1.3 with a self-signed certificate that the
//! dialer trusts explicitly (no verification shortcuts), one bidirectional stream.

use std::sync::Arc;
use std::time::Instant;

use quinn::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use crate::common::{Figures, Params, drive_stream, ms, serve_stream, spawn_listener};

pub fn round(params: &Params) -> Figures {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let server_cert = cert_der.clone();
    let addr = spawn_listener(move |ready| async move {
        let config = quinn::ServerConfig::with_single_cert(vec![server_cert], key.into()).unwrap();
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let _ = ready.send(endpoint.local_addr().unwrap());
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else { return };
                while let Ok((tx, rx)) = connection.accept_bi().await {
                    tokio::spawn(serve_stream(rx, tx));
                }
            });
        }
    });
    let mut roots = quinn::rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let client = quinn::ClientConfig::with_root_certificates(Arc::new(roots)).unwrap();
    crate::common::runtime().block_on(async {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(client);
        let started = Instant::now();
        let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
        let connect_ms = ms(started.elapsed());
        let (tx, rx) = connection.open_bi().await.unwrap();
        let figures = drive_stream(rx, tx, started, connect_ms, params).await;
        connection.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
        figures
    })
}
