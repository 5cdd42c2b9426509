//! The session requests: `"session-create"`, `"session-join"`,
//! `"session-close"`. The bookkeeping is [`SessionTable`](crate::sessions::SessionTable);
//! this file checks the requests, stores each change and tells the other party.

use std::net::IpAddr;

use peers_sdk::DeviceId;
use rand_core::OsRng;
use serde_json::{Map, Value as Json};
use tracing::info;

use super::connection::parse;
use super::{Shared, metrics as m, now_ms};
use crate::protocol::{ErrorCode, Rejection, SessionCloseRequest, SessionCreateRequest, SessionJoinRequest};
use crate::ratelimit::Limited;
use crate::sessions::SessionState;

type Reply = Result<Map<String, Json>, Rejection>;

fn fields(pairs: impl IntoIterator<Item = (&'static str, Json)>) -> Map<String, Json> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

pub(super) fn create(shared: &Shared, device: DeviceId, payload: Json) -> Reply {
    let request: SessionCreateRequest = parse("session-create", payload)?;
    let mut hub = shared.hub();
    let created = hub.sessions().create(now_ms(), &mut OsRng, device, request.ttl_ms)?;
    hub.save_session(&created.session);
    drop(hub);
    shared.wake_expiry();
    m::session_event("created");
    info!(%device, transfer = %created.session.transfer_id, "session created");
    let session = created.session;
    Ok(fields([
        ("transfer_id", Json::String(session.transfer_id.clone())),
        ("code", Json::String(session.code())),
        ("sender_token", Json::String(created.sender_token)),
        ("expires_at", Json::from(session.expires_at)),
    ]))
}

pub(super) fn join(shared: &Shared, ip: Option<IpAddr>, device: DeviceId, payload: Json) -> Reply {
    let request: SessionJoinRequest = parse("session-join", payload)?;
    if let Err(limited) = shared.limiters.check_join(ip, &device) {
        let whose = if limited == Limited::Ip { "this address" } else { "this device" };
        return Err(Rejection::new(ErrorCode::RateLimited, format!("too many session joins from {whose}")));
    }
    let mut hub = shared.hub();
    match hub.sessions().join(now_ms(), &mut OsRng, device, &request.code) {
        Ok((session, token)) => {
            hub.save_session(&session);
            hub.tell_session(&session.sender, &session, Some(&device));
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
                hub.save_session(&session);
                if session.state == SessionState::Closed {
                    info!(transfer = %session.transfer_id, "session locked after wrong codes");
                    m::session_event("locked");
                    hub.tell_session(&session.sender, &session, None);
                }
            }
            Err(failure.rejection)
        }
    }
}

pub(super) fn close(shared: &Shared, device: DeviceId, payload: Json) -> Reply {
    let request: SessionCloseRequest = parse("session-close", payload)?;
    let mut hub = shared.hub();
    let session = hub.sessions().close(&request.transfer_id, &request.token)?;
    hub.save_session(&session);
    m::session_event("closed");
    for party in [Some(session.sender), session.receiver].into_iter().flatten() {
        if party != device {
            let other = if party == session.sender { session.receiver } else { Some(session.sender) };
            hub.tell_session(&party, &session, other.as_ref());
        }
    }
    Ok(fields([
        ("transfer_id", Json::String(session.transfer_id.clone())),
        ("state", serde_json::to_value(session.state).unwrap_or(Json::Null)),
    ]))
}
