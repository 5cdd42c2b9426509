//! What the peers-js interop tests share: where the Node drivers are, the RPC and
//! the stream the Rust side exposes to them, and the byte pattern they stream
//! (`peers-js/examples/exercise.ts`, `patternMiB`).

use peers_sdk::rpc::RemoteError;
use peers_sdk::{Connection, StreamReader};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The built peers-js drivers, relative to `tests/js/` (where [`crate::JsClient`] looks);
/// `npx tsc -p peers-js` builds them.
pub fn driver(name: &str) -> String {
    format!("../../peers-js/dist/examples/{name}")
}

/// The argument and answer of "rust.echo" (the answer: text upper-cased, `n + 1`).
#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub struct Echo {
    /// Upper-cased in the answer.
    pub text: String,
    /// One more in the answer.
    pub n: u32,
}

/// The metadata of the drivers' "upload" stream.
#[derive(Debug, Deserialize)]
pub struct UploadMeta {
    /// The size the driver declares.
    pub size: u64,
}

/// An "upload" the Rust side took to the end.
#[derive(Debug, PartialEq, Eq)]
pub struct Upload {
    /// The size the driver declared.
    pub declared: u64,
    /// The bytes that arrived.
    pub received: u64,
    /// Their BLAKE3, hex.
    pub blake3: String,
}

/// MiB `i` of the drivers' pattern: byte `j` is `(i·131 + j·7 + j>>8) mod 256`.
pub fn pattern_mib(i: usize) -> Vec<u8> {
    (0..1usize << 20).map(|j| (i.wrapping_mul(131).wrapping_add(j * 7).wrapping_add(j >> 8) & 0xff) as u8).collect()
}

/// The BLAKE3 (hex) of the pattern's first `mib` MiB.
pub fn pattern_blake3(mib: usize) -> String {
    let mut hasher = blake3::Hasher::new();
    for i in 0..mib {
        hasher.update(&pattern_mib(i));
    }
    hasher.finalize().to_hex().to_string()
}

/// A compressible text of `len` characters: the Rust side sends it Brotli-compressed
/// (and chunked when large) as the answer to "rust.text".
pub fn compressible_text(len: usize) -> String {
    "peers-js speaks the peers protocol. ".chars().cycle().take(len).collect()
}

/// Exposes "rust.text" (`len` → [`compressible_text`]) on `connection`.
pub fn expose_text(connection: &Connection) {
    connection.expose_rpc("rust.text", |len: usize| async move { Ok::<_, RemoteError>(compressible_text(len)) });
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Exposes "rust.echo" and the "upload" stream on `connection` (a `with_setup`
/// hook); each finished upload is sent to `uploads`.
pub fn expose_echo_and_upload(connection: &Connection, uploads: &mpsc::UnboundedSender<Upload>) {
    connection.expose_rpc("rust.echo", |echo: Echo| async move {
        Ok::<_, RemoteError>(Echo { text: echo.text.to_uppercase(), n: echo.n + 1 })
    });
    let uploads = uploads.clone();
    connection.expose_stream("upload", move |meta: UploadMeta, mut reader: StreamReader| {
        let uploads = uploads.clone();
        async move {
            let mut hasher = blake3::Hasher::new();
            let mut received = 0u64;
            while let Some(piece) = reader.next().await.map_err(RemoteError::handler)? {
                received += piece.len() as u64;
                hasher.update(&piece);
            }
            let _ =
                uploads.send(Upload { declared: meta.size, received, blake3: hasher.finalize().to_hex().to_string() });
            Ok(())
        }
    });
}
