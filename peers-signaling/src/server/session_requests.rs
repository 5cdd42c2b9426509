//! The session requests: `"session-create"`, `"session-join"`,
//! `"session-close"`, `"session-reopen"`, and their expiry. The bookkeeping is [`SessionTable`];
//! this file checks the requests, stores each change and tells the other
//! party, through a [`SessionHost`]: the hub (one instance) or the one
//! session a request is about, loaded from Redis under its lock (several,
//! see `cluster_sessions.rs`, which also creates sessions with these replies).

use std::net::IpAddr;

use peers_sdk::DeviceId;
use rand_core::OsRng;
use serde_json::{Map, Value as Json};
use tracing::info;

use super::{RECEIVE_PAGE_PATH, Shared, metrics as m, now_ms};
use crate::protocol::{
    ErrorCode, Rejection, SessionCloseRequest, SessionCreateRequest, SessionJoinRequest, SessionKind,
    SessionReopenRequest, SessionRequest,
};
use crate::ratelimit::{Limited, Limiters};
use crate::sessions::{CodeSession, SessionState, SessionTable};

/// Where the session requests find the table, keep changes and reach parties.
pub(super) trait SessionHost {
    /// The sessions.
    fn sessions(&mut self) -> &mut SessionTable;
    /// Keeps a session's new state.
    fn save_session(&mut self, session: &CodeSession);
    /// Forgets sessions past their grace time.
    fn delete_sessions(&mut self, transfer_ids: &[String]);
    /// Tells `device` (if online) that one of its sessions changed.
    fn tell_session(&mut self, device: &DeviceId, session: &CodeSession, peer: Option<&DeviceId>);
}

type Reply = Result<Map<String, Json>, Rejection>;

fn fields(pairs: impl IntoIterator<Item = (&'static str, Json)>) -> Map<String, Json> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Whether the reply to `request` names the receive page: a `pake` session's
/// creation, when the server serves the page.
pub(super) fn offers_page(shared: &Shared, request: &SessionRequest) -> bool {
    shared.config.receive_page.is_some()
        && matches!(request, SessionRequest::Create(create) if create.kind == Some(SessionKind::Pake))
}

/// Adds `"receive_page"` to a successful reply when `page`.
pub(super) fn with_page(page: bool, reply: Reply) -> Reply {
    reply.map(|mut fields| {
        if page {
            fields.insert("receive_page".to_owned(), Json::String(RECEIVE_PAGE_PATH.to_owned()));
        }
        fields
    })
}

/// One session request.
pub(super) fn handle(
    host: &mut impl SessionHost,
    limiters: &Limiters,
    ip: Option<IpAddr>,
    device: DeviceId,
    request: SessionRequest,
) -> Reply {
    match request {
        SessionRequest::Create(request) => create(host, limiters, ip, device, request),
        SessionRequest::Join(request) => join(host, limiters, ip, device, request),
        SessionRequest::Close(request) => close(host, device, request),
        SessionRequest::Reopen(request) => reopen(host, device, request),
    }
}

/// Expires sessions due at `now` (telling their parties) and forgets those
/// past their grace time.
pub(super) fn expire(host: &mut impl SessionHost, now: u64) {
    let (sessions, purged) = host.sessions().expire(now);
    for session in &sessions {
        host.save_session(session);
        host.tell_session(&session.sender, session, session.receiver.as_ref());
        if let Some(receiver) = &session.receiver {
            host.tell_session(receiver, session, Some(&session.sender));
        }
    }
    if !purged.is_empty() {
        host.delete_sessions(&purged);
    }
}

fn create(
    host: &mut impl SessionHost,
    limiters: &Limiters,
    ip: Option<IpAddr>,
    device: DeviceId,
    request: SessionCreateRequest,
) -> Reply {
    if let Err(limited) = limiters.check_create(ip, &device) {
        return Err(too_many_creates(limited));
    }
    let kind = request.kind.unwrap_or_default();
    let created = host.sessions().create(now_ms(), &mut OsRng, device, ip, kind, request.ttl_ms)?;
    if let Some(evicted) = &created.evicted {
        host.delete_sessions(std::slice::from_ref(evicted));
    }
    host.save_session(&created.session);
    Ok(created_reply(device, &created.session, created.sender_token))
}

/// The reply to a `"session-create"` that created `session`.
pub(super) fn created_reply(device: DeviceId, session: &CodeSession, sender_token: String) -> Map<String, Json> {
    m::session_event("created");
    info!(%device, transfer = %session.transfer_id, "session created");
    fields([
        ("transfer_id", Json::String(session.transfer_id.clone())),
        ("code", Json::String(session.code())),
        ("sender_token", Json::String(sender_token)),
        ("expires_at", Json::from(session.expires_at)),
    ])
}

/// A creation refused for the creation rate of `limited`.
pub(super) fn too_many_creates(limited: Limited) -> Rejection {
    let whose = if limited == Limited::Ip { "this address" } else { "this device" };
    Rejection::new(ErrorCode::RateLimited, format!("too many sessions created by {whose} in a minute"))
}

/// A join refused for the join rate of `limited`.
pub(super) fn too_many_joins(limited: Limited) -> Rejection {
    let whose = if limited == Limited::Ip { "this address" } else { "this device" };
    Rejection::new(ErrorCode::RateLimited, format!("too many session joins from {whose}"))
}

fn join(
    host: &mut impl SessionHost,
    limiters: &Limiters,
    ip: Option<IpAddr>,
    device: DeviceId,
    request: SessionJoinRequest,
) -> Reply {
    if let Err(limited) = limiters.check_join(ip, &device) {
        return Err(too_many_joins(limited));
    }
    match host.sessions().join(now_ms(), &mut OsRng, device, &request.code) {
        Ok((session, token)) => {
            host.save_session(&session);
            host.tell_session(&session.sender, &session, Some(&device));
            m::session_event("joined");
            info!(%device, transfer = %session.transfer_id, "session joined");
            Ok(fields([
                ("transfer_id", Json::String(session.transfer_id.clone())),
                ("receiver_token", Json::String(token)),
                ("sender", Json::String(session.sender.to_string())),
                ("expires_at", Json::from(session.expires_at)),
            ]))
        }
        Err(failure) => {
            m::session_event("join_failed");
            if let Some(session) = failure.changed {
                host.save_session(&session);
                if session.state == SessionState::Closed {
                    info!(transfer = %session.transfer_id, "session locked after wrong codes");
                    m::session_event("locked");
                    host.tell_session(&session.sender, &session, None);
                }
            }
            Err(failure.rejection)
        }
    }
}

fn close(host: &mut impl SessionHost, device: DeviceId, request: SessionCloseRequest) -> Reply {
    let session = host.sessions().close(&request.transfer_id, &request.token)?;
    host.save_session(&session);
    m::session_event("closed");
    for party in [Some(session.sender), session.receiver].into_iter().flatten() {
        if party != device {
            let other = if party == session.sender { session.receiver } else { Some(session.sender) };
            host.tell_session(&party, &session, other.as_ref());
        }
    }
    Ok(fields([
        ("transfer_id", Json::String(session.transfer_id.clone())),
        ("state", serde_json::to_value(session.state).unwrap_or(Json::Null)),
    ]))
}

/// The creator reopens its `pake` session for a new join; the former receiver (gone,
/// as far as the creator knows) is not told.
fn reopen(host: &mut impl SessionHost, device: DeviceId, request: SessionReopenRequest) -> Reply {
    let (session, gone) = host.sessions().reopen(now_ms(), &request.transfer_id, &request.token)?;
    if let Some(gone) = gone {
        host.save_session(&session);
        m::session_event("reopened");
        info!(%device, former = %gone, transfer = %session.transfer_id, reopens = session.reopens, "session reopened");
    }
    Ok(fields([
        ("transfer_id", Json::String(session.transfer_id.clone())),
        ("state", serde_json::to_value(session.state).unwrap_or(Json::Null)),
        ("expires_at", Json::from(session.expires_at)),
    ]))
}
