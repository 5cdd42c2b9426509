//! The running daemon's control socket: one JSON request per line, one JSON
//! response per line, over a Unix socket in the data directory (mode 0600).
//!
//! ```text
//! {"op":"status"}                                   -> {"result":"status","table":"..."}
//! {"op":"put","group":"g","key":"k","value":"v"}    -> {"result":"done"}
//! {"op":"get","group":"g","key":"k"}                -> {"result":"value","value":"v"|null}
//! any failure                                       -> {"result":"error","message":"..."}
//! ```

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::error::{Error, Result};
use crate::group::GroupId;

/// The longest request or response line, in bytes.
const MAX_LINE: usize = 1 << 20;
/// How long a client waits for the daemon.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A request to the running daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Connections and groups, as a table.
    Status,
    /// Write a key in a group.
    Put {
        /// The group.
        group: GroupId,
        /// The key.
        key: String,
        /// The value (UTF-8 text).
        value: String,
    },
    /// Read a key in a group.
    Get {
        /// The group.
        group: GroupId,
        /// The key.
        key: String,
    },
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ControlResponse {
    /// The status table.
    Status {
        /// Rendered text.
        table: String,
    },
    /// The write was made.
    Done,
    /// The value read (`None`: not set).
    Value {
        /// The value as text (lossy for non-UTF-8 bytes).
        value: Option<String>,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Handles one request.
pub(crate) type Handler =
    Arc<dyn Fn(ControlRequest) -> Pin<Box<dyn Future<Output = ControlResponse> + Send>> + Send + Sync>;

/// Sends `request` to the daemon listening at `socket`. Fails with
/// [`Error::Io`] when no daemon listens there.
pub async fn request(socket: &Path, request: &ControlRequest) -> Result<ControlResponse> {
    let exchange = async {
        let stream =
            UnixStream::connect(socket).await.map_err(|source| Error::Io { what: "reach the daemon", source })?;
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(request).map_err(|e| Error::Daemon(e.to_string()))?;
        line.push(b'\n');
        write.write_all(&line).await.map_err(|source| Error::Io { what: "talk to the daemon", source })?;
        let mut reply = String::new();
        let mut reader = BufReader::new(read.take(MAX_LINE as u64));
        reader.read_line(&mut reply).await.map_err(|source| Error::Io { what: "read the daemon's answer", source })?;
        serde_json::from_str(&reply).map_err(|e| Error::Daemon(format!("bad answer: {e}")))
    };
    tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| Error::Daemon("no answer within 10 s".into()))?
}

/// Listens at `socket` (replacing a stale socket file) and answers with `handler`.
pub(crate) fn serve(socket: PathBuf, handler: Handler) -> Result<JoinHandle<()>> {
    if socket.exists() {
        std::fs::remove_file(&socket).map_err(|source| Error::Io { what: "remove a stale control socket", source })?;
    }
    let listener =
        UnixListener::bind(&socket).map_err(|source| Error::Io { what: "open the control socket", source })?;
    set_owner_only(&socket)?;
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                if let Err(err) = answer(stream, handler).await {
                    debug!(%err, "control request failed");
                }
            });
        }
    }))
}

async fn answer(stream: UnixStream, handler: Handler) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_LINE as u64));
    tokio::time::timeout(TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request too slow"))??;
    let response = match serde_json::from_str::<ControlRequest>(&line) {
        Ok(request) => handler(request).await,
        Err(e) => ControlResponse::Error { message: format!("bad request: {e}") },
    };
    let mut reply = serde_json::to_vec(&response).unwrap_or_default();
    reply.push(b'\n');
    write.write_all(&reply).await
}

#[cfg(unix)]
fn set_owner_only(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| Error::Io { what: "restrict the control socket", source })
}
