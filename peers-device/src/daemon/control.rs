//! The running daemon's control socket: a Unix socket in the data directory
//! (mode 0600). One request per connection, one response, each a
//! length-prefixed MessagePack message:
//!
//! ```text
//! +----------------------+-------------------------------------------+
//! | length: u32 (BE)     | body: MessagePack, `length` bytes         |
//! +----------------------+-------------------------------------------+
//!   length <= MAX_MESSAGE (the value limit + 1 MiB); a longer request is
//!   answered with an error without reading its body.
//!
//! request body (externally tagged, named fields)  response body
//! "status"                                      -> {"status": {"table": str}}
//! {"put": {"group", "key", "value": bin}}       -> "done"
//! {"get": {"group", "key"}}                     -> {"value": {"value": bin | nil}}
//! {"trust": {"share_code", "groups": [str]}}    -> {"trusted": {"device", "user", "groups"}}
//! {"untrust": {"device"}}                       -> {"untrusted": {"device"}}
//! {"send": {"device", "paths": [str]}}          -> {"sending": {"id": u64, "device", "bytes": u64}}
//! {"send_status": {"id": u64}}                  -> {"send_status": {"state": {"bytes_done", "bytes_total",
//!                                                    "bytes_resumed", "path": str | nil,
//!                                                    "outcome": nil | {"Ok": nil} | {"Err": str}}}}
//! any failure                                   -> {"error": {"message": str}}
//! ```

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::error::{Error, Result};
use crate::group::GroupId;
use crate::sync::MAX_VALUE_LEN;

/// The largest request or response body, in bytes: a value at the sync limit
/// plus room for the key, the group and the framing.
pub const MAX_MESSAGE: usize = MAX_VALUE_LEN + (1 << 20);
/// How long the daemon waits for a client's whole request.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client waits for the daemon by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests served at once; more clients wait to be read (each may hold a
/// message of up to [`MAX_MESSAGE`] bytes).
const MAX_CONCURRENT: usize = 4;

/// A request to the running daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlRequest {
    /// Connections and groups, as a table.
    Status,
    /// This device's share code, with the URLs the daemon advertises.
    Info,
    /// Write a key in a group.
    Put {
        /// The group.
        group: GroupId,
        /// The key.
        key: String,
        /// The value (any bytes, up to the sync value limit).
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Read a key in a group.
    Get {
        /// The group.
        group: GroupId,
        /// The key.
        key: String,
    },
    /// Trust a device as a member of groups (at least one), and connect to it.
    Trust {
        /// Its share code.
        share_code: String,
        /// Groups it is a member of.
        groups: Vec<GroupId>,
    },
    /// Stop trusting a device: drop it from every group and disconnect it.
    Untrust {
        /// Its device id, a unique prefix of it, or its share code.
        device: String,
    },
    /// Send files and directories to a trusted device over the connection to it
    /// (`peers send --to`); its daemon stores them in its inbox.
    Send {
        /// Its device id, a unique prefix of it, or its share code.
        device: String,
        /// Absolute paths of files and directories.
        paths: Vec<PathBuf>,
    },
    /// Where a transfer started by `Send` stands (a finished one answers once more).
    SendStatus {
        /// The id `Send` answered with.
        id: u64,
    },
    /// Cancel a transfer started by `Send`: its data stream is reset and the receiving
    /// daemon discards what it staged. Answered `Done`; `SendStatus` then shows it end.
    SendCancel {
        /// The id `Send` answered with.
        id: u64,
    },
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
        /// The value's bytes.
        #[serde(with = "serde_bytes")]
        value: Option<Vec<u8>>,
    },
    /// The device is trusted (and being connected to).
    Trusted {
        /// Its id.
        device: String,
        /// Its user.
        user: String,
        /// The groups it is now a member of, as far as this device is concerned.
        groups: Vec<GroupId>,
    },
    /// This device's share code (the answer to `Info`).
    Info {
        /// The share code, with the advertised URLs.
        share_code: String,
    },
    /// The device is no longer trusted, and disconnected.
    Untrusted {
        /// Its id.
        device: String,
    },
    /// The transfer started (or waits its turn).
    Sending {
        /// Ask `SendStatus` with it.
        id: u64,
        /// The device's id.
        device: String,
        /// Bytes to send.
        bytes: u64,
    },
    /// Where a transfer stands.
    SendStatus {
        /// Bytes, path and outcome.
        state: super::SendState,
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

/// Sends `request` to the daemon listening at `socket` and waits up to
/// `timeout` for its answer. Fails with [`Error::DaemonNotListening`] when no
/// process listens there (no socket file, or nobody accepting on it), and with
/// [`Error::Daemon`] for every failure after the daemon was reached.
pub async fn request(socket: &Path, request: &ControlRequest, timeout: Duration) -> Result<ControlResponse> {
    let body = rmp_serde::to_vec_named(request).map_err(|e| Error::Daemon(format!("encode the request: {e}")))?;
    if body.len() > MAX_MESSAGE {
        return Err(Error::Daemon(format!("request of {} bytes (limit {MAX_MESSAGE})", body.len())));
    }
    let mut stream = match UnixStream::connect(socket).await {
        Ok(stream) => stream,
        Err(source)
            if matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) =>
        {
            return Err(Error::DaemonNotListening { socket: socket.display().to_string(), source });
        }
        Err(e) => return Err(Error::Daemon(format!("cannot reach the control socket: {e}"))),
    };
    let exchange = async {
        write_message(&mut stream, &body).await.map_err(|e| Error::Daemon(format!("send the request: {e}")))?;
        read_message(&mut stream).await.map_err(|e| Error::Daemon(format!("read the answer: {e}")))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| Error::Daemon(format!("no answer within {} s (is the daemon stuck?)", timeout.as_secs_f64())))?
}

/// Listens at `socket` (replacing a stale socket file: the caller holds the
/// data directory's lock, so no other daemon uses it) and answers with
/// `handler`.
pub(crate) fn serve(socket: PathBuf, handler: Handler) -> Result<JoinHandle<()>> {
    if socket.exists() {
        std::fs::remove_file(&socket).map_err(|source| Error::Io { what: "remove a stale control socket", source })?;
    }
    let listener =
        UnixListener::bind(&socket).map_err(|source| Error::Io { what: "open the control socket", source })?;
    set_owner_only(&socket)?;
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
    Ok(tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let Ok((stream, _)) = listener.accept().await else { return };
            let handler = handler.clone();
            tokio::spawn(async move {
                if let Err(err) = answer(stream, handler).await {
                    debug!(%err, "control request failed");
                }
                drop(slot);
            });
        }
    }))
}

async fn answer(mut stream: UnixStream, handler: Handler) -> std::io::Result<()> {
    let read = tokio::time::timeout(READ_TIMEOUT, read_message::<_, ControlRequest>(&mut stream)).await;
    let response = match read {
        Ok(Ok(request)) => handler(request).await,
        Ok(Err(e)) => ControlResponse::Error { message: format!("bad request: {e}") },
        Err(_) => ControlResponse::Error { message: "request not received within 30 s".into() },
    };
    let body = rmp_serde::to_vec_named(&response).map_err(std::io::Error::other)?;
    write_message(&mut stream, &body).await?;
    stream.shutdown().await
}

async fn write_message(stream: &mut (impl AsyncWrite + Unpin), body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| std::io::Error::other("message over 4 GiB"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await
}

/// Reads one length-prefixed message of at most [`MAX_MESSAGE`] bytes. The
/// buffer grows with what actually arrives, not with the announced length.
async fn read_message<S, T>(stream: &mut S) -> std::io::Result<T>
where
    S: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_MESSAGE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("message of {len} bytes (limit {MAX_MESSAGE})"),
        ));
    }
    let mut body = Vec::new();
    stream.take(len as u64).read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "message cut short"));
    }
    rmp_serde::from_slice(&body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(unix)]
fn set_owner_only(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| Error::Io { what: "restrict the control socket", source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_round_trip_and_oversized_ones_are_refused_unread() {
        let request =
            ControlRequest::Put { group: GroupId::new("notes").unwrap(), key: "k".into(), value: vec![0, 255, 1, 254] };
        let body = rmp_serde::to_vec_named(&request).unwrap();
        let mut wire = Vec::new();
        write_message(&mut wire, &body).await.unwrap();
        let back: ControlRequest = read_message(&mut wire.as_slice()).await.unwrap();
        assert_eq!(back, request);

        let mut huge = ((MAX_MESSAGE + 1) as u32).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        let err = read_message::<_, ControlRequest>(&mut huge.as_slice()).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);

        let mut short = 10u32.to_be_bytes().to_vec();
        short.extend_from_slice(&[0x80; 3]);
        let err = read_message::<_, ControlRequest>(&mut short.as_slice()).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn no_socket_means_no_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let err = request(&dir.path().join("peers.sock"), &ControlRequest::Status, DEFAULT_TIMEOUT).await.unwrap_err();
        assert!(matches!(err, Error::DaemonNotListening { .. }), "{err}");
    }

    /// The bodies other clients write and read, as `docs/device.md` draws them.
    #[test]
    fn bodies_are_externally_tagged_messagepack_with_named_fields() {
        let encode = |r: &ControlRequest| rmp_serde::to_vec_named(r).unwrap();
        assert_eq!(encode(&ControlRequest::Status), b"\xa6status");
        let get = ControlRequest::Get { group: GroupId::new("g").unwrap(), key: "k".into() };
        assert_eq!(encode(&get), b"\x81\xa3get\x82\xa5group\xa1g\xa3key\xa1k");
        assert_eq!(rmp_serde::to_vec_named(&ControlResponse::Done).unwrap(), b"\xa4done");
        let value = ControlResponse::Value { value: Some(vec![0xff]) };
        let bytes = rmp_serde::to_vec_named(&value).unwrap();
        assert_eq!(bytes, b"\x81\xa5value\x81\xa5value\xc4\x01\xff", "values are MessagePack bin");
        assert_eq!(rmp_serde::from_slice::<ControlResponse>(&bytes).unwrap(), value);
    }
}
