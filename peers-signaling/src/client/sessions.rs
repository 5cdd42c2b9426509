//! [`SignalingClient`]'s session requests: create a transfer session, join one
//! by its code, close one, reopen one for a new receiver.

use std::time::Duration;

use peers_sdk::DeviceId;
use serde_json::{Map, Value, json};

use super::SignalingClient;
use crate::error::{Error, Result};
use crate::protocol::SessionKind;
use crate::protocol::events;

/// A session this device created.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreatedSession {
    /// Names the session.
    pub transfer_id: String,
    /// The code to give the receiver (`NNNN-SSSSSS`, or `NNNN` for a
    /// [`SessionKind::Pake`] session).
    pub code: String,
    /// Closes the session; keep it secret.
    pub sender_token: String,
    /// When the session ends (unix milliseconds).
    pub expires_at: u64,
    /// Where the server serves its receive page (`"/receive/"`), when it does:
    /// a `pake` session's code can be received there in a browser.
    pub receive_page: Option<String>,
}

/// A session this device joined.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JoinedSession {
    /// Names the session.
    pub transfer_id: String,
    /// Closes the session; keep it secret.
    pub receiver_token: String,
    /// The device that created it (signal it by this id).
    pub sender: DeviceId,
    /// When the session ends (unix milliseconds).
    pub expires_at: u64,
}

fn text(reply: &Map<String, Value>, field: &'static str) -> Result<String> {
    reply
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(Error::Protocol { what: "session reply", detail: format!("no {field}") })
}

fn number(reply: &Map<String, Value>, field: &'static str) -> Result<u64> {
    reply
        .get(field)
        .and_then(Value::as_u64)
        .ok_or(Error::Protocol { what: "session reply", detail: format!("no {field}") })
}

impl SignalingClient {
    /// Creates a transfer session lasting `ttl` (the server's default when
    /// `None`, capped at its maximum). The other device joins with the code;
    /// [`ClientEvent::Session`](crate::ClientEvent::Session) reports when it
    /// does, closes or expires.
    pub async fn create_session(&self, ttl: Option<Duration>) -> Result<CreatedSession> {
        self.create_session_of(SessionKind::Secret, ttl).await
    }

    /// Creates a session of `kind`: [`SessionKind::Pake`] gives a code that is
    /// the slot number alone, for two devices that then authenticate each
    /// other with a PAKE (and whose creator closes the session when it fails).
    pub async fn create_session_of(&self, kind: SessionKind, ttl: Option<Duration>) -> Result<CreatedSession> {
        let mut request = json!({});
        if kind != SessionKind::Secret {
            request["kind"] = serde_json::to_value(kind).unwrap_or(Value::Null);
        }
        if let Some(ttl) = ttl {
            request["ttl_ms"] = Value::from(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        }
        let reply = self.request_as(events::SESSION_CREATE, "session creation", request).await?;
        Ok(CreatedSession {
            transfer_id: text(&reply, "transfer_id")?,
            code: text(&reply, "code")?,
            sender_token: text(&reply, "sender_token")?,
            expires_at: number(&reply, "expires_at")?,
            receive_page: reply.get("receive_page").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// Joins the session with `code` (`NNNN-SSSSSS`, or the number alone for a
    /// [`SessionKind::Pake`] session). Exactly one device can.
    pub async fn join_session(&self, code: &str) -> Result<JoinedSession> {
        let reply = self.request_as(events::SESSION_JOIN, "session join", json!({ "code": code })).await?;
        Ok(JoinedSession {
            transfer_id: text(&reply, "transfer_id")?,
            receiver_token: text(&reply, "receiver_token")?,
            sender: text(&reply, "sender")?
                .parse()
                .map_err(|_| Error::Protocol { what: "session reply", detail: "bad sender id".into() })?,
            expires_at: number(&reply, "expires_at")?,
        })
    }

    /// Closes a session with the sender's or the receiver's token.
    pub async fn close_session(&self, transfer_id: &str, token: &str) -> Result<()> {
        let request = json!({ "transfer_id": transfer_id, "token": token });
        self.request_as(events::SESSION_CLOSE, "session close", request).await.map(|_| ())
    }

    /// Reopens a joined [`SessionKind::Pake`] session this device created (with its
    /// `sender_token`) for one new join: for a receiver that vanished and runs the
    /// same code again. The next device naming its number joins, and
    /// [`ClientEvent::Session`](crate::ClientEvent::Session) reports it as for the
    /// first. The server refuses after 16 reopens (`quota_exceeded`), and a closed
    /// or expired session (`session_closed`, `session_expired`).
    pub async fn reopen_session(&self, transfer_id: &str, sender_token: &str) -> Result<()> {
        let request = json!({ "transfer_id": transfer_id, "token": sender_token });
        self.request_as(events::SESSION_REOPEN, "session reopen", request).await.map(|_| ())
    }
}
