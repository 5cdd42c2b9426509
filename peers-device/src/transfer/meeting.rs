//! Meeting through the signaling server: a transfer's or a pairing's fresh identity,
//! its registration, the code's session, the wait for the other device to join, and the
//! relay on which the PAKE ([`super::rendezvous`]) runs. [`super::live`] (send and
//! receive) and [`super::pairing`] (pair and join) both meet this way.

use std::sync::Arc;
use std::time::Duration;

use peers_sdk::{CloseReason, DeviceId, DeviceInfo, DeviceKeys};
use peers_signaling::protocol::{SessionKind, SessionState};
use peers_signaling::{ClientEvent, CreatedSession, ErrorCode, JoinedSession, RelaySocket, SignalingClient};
use tracing::{debug, info};

use super::live::LinkOptions;
use super::pake::CodeRole;
use super::rendezvous::authenticate;
use super::{TransferCode, TransferError};
use crate::{Error, Result};

/// The user id the ephemeral device keys of a transfer claim.
const EPHEMERAL_USER: &str = "peers-transfer";

/// A fresh device identity for one transfer, reachable at `addresses`.
pub(super) fn ephemeral(addresses: Vec<String>) -> Result<(Arc<DeviceKeys>, DeviceInfo)> {
    let keys = Arc::new(DeviceKeys::generate(EPHEMERAL_USER)?);
    let info = keys.info(addresses)?;
    Ok((keys, info))
}

/// Registers `keys` with the first server of `link` that answers.
pub(super) async fn register(link: &LinkOptions, keys: &DeviceKeys) -> Result<SignalingClient> {
    register_at(link, keys).await.map(|(client, _)| client)
}

/// [`register`], also returning the URL of the server that answered.
async fn register_at<'a>(link: &'a LinkOptions, keys: &DeviceKeys) -> Result<(SignalingClient, &'a str)> {
    let mut last = None;
    for url in &link.signaling {
        match SignalingClient::connect(url, keys, link.client.clone()).await {
            Ok(client) => return Ok((client, url)),
            Err(err) => {
                debug!(%url, %err, "signaling server did not answer");
                last = Some(err);
            }
        }
    }
    Err(last.map_or_else(|| Error::Config { field: "signaling", reason: "no server URL given".into() }, Error::from))
}

/// The pauses between the joins of a receiver whose join is refused `session_taken`:
/// the sender still holds the session for its previous receiver (a process of the same
/// receiver killed a moment ago: the sender reopens the session within about 10 s,
/// protocol.md §9.5.1). Six joins over 15 s, well within the server's join rate (10 a
/// minute per device and per address, signaling.md §6).
pub(super) const TAKEN_RETRIES: [Duration; 5] = [
    Duration::from_secs(2),
    Duration::from_secs(3),
    Duration::from_secs(3),
    Duration::from_secs(3),
    Duration::from_secs(4),
];

/// Joins the session numbered `session`; a join refused `session_taken` is tried again
/// after each pause of `retries`, and the last refusal is the error.
pub(super) async fn join_code(
    client: &SignalingClient,
    session: &str,
    retries: &[Duration],
) -> std::result::Result<JoinedSession, peers_signaling::Error> {
    let mut pauses = retries.iter();
    loop {
        let joined = client.join_session(session).await;
        let taken = matches!(&joined, Err(peers_signaling::Error::Refused { rejection, .. })
            if rejection.code == ErrorCode::SessionTaken);
        match pauses.next() {
            Some(pause) if taken => {
                info!(%session, ?pause, "the code's session still has a receiver (the sender may not have noticed the last one is gone yet): joining again");
                tokio::time::sleep(*pause).await;
            }
            _ => return joined,
        }
    }
}

/// A code's session, created: the client registered for it, its events, the session
/// and the code to show.
pub(super) struct CodeSession {
    pub(super) client: SignalingClient,
    pub(super) events: tokio::sync::mpsc::Receiver<ClientEvent>,
    pub(super) created: CreatedSession,
    pub(super) code: TransferCode,
    /// The server's receive page with the code in its fragment, when it serves one.
    pub(super) receive_link: Option<String>,
}

/// Registers `keys` with the signaling server of `link`, creates a `"pake"` session
/// that lives `ttl` and makes the code of `words` words for its number.
pub(super) async fn open_code(
    link: &LinkOptions,
    keys: &DeviceKeys,
    words: usize,
    ttl: Duration,
) -> Result<CodeSession> {
    let (client, url) = register_at(link, keys).await?;
    let events = client.events().ok_or_else(|| Error::Worker("signaling events already taken".into()))?;
    let created = client.create_session_of(SessionKind::Pake, Some(ttl)).await?;
    let slot = created.code.parse::<u32>().map_err(|_| {
        TransferError::Protocol(format!("the server answered a pake session with code {:?}", created.code))
    })?;
    let code = TransferCode::generate(slot, words)?;
    let receive_link = code.receive_link(url, created.receive_page.as_deref());
    Ok(CodeSession { client, events, created, code, receive_link })
}

/// Opens a relay to `device` and runs the PAKE of `code` on it: the relay and the
/// device the PAKE confirmed.
pub(super) async fn meet(
    client: &SignalingClient,
    device: &DeviceId,
    code: &TransferCode,
    role: CodeRole,
    own: &DeviceInfo,
    link: &LinkOptions,
) -> Result<(RelaySocket, DeviceInfo)> {
    let relay = client.open_relay(device, link.relay_wait).await?;
    let peer = authenticate_on(&relay, code, role, own, link.pake_timeout).await?;
    Ok((relay, peer))
}

/// Waits for the `joined` event of the session `created`; returns the device that
/// joined. Fails when no one joined within `ttl` or the session ended. A `joined` for a
/// device of `met` (a receiver already met: the server tells a creator that registers
/// again of its joined sessions, signaling.md §6, and such a notice may wait in
/// `events` from before a reopen) is not a new join.
pub(super) async fn wait_for_join(
    events: &mut tokio::sync::mpsc::Receiver<ClientEvent>,
    created: &CreatedSession,
    ttl: Duration,
    met: &[DeviceId],
) -> Result<peers_sdk::DeviceId> {
    let waiting = async {
        while let Some(event) = events.recv().await {
            match event {
                ClientEvent::Session { transfer_id, state, peer, reason } if transfer_id == created.transfer_id => {
                    match (state, peer) {
                        (SessionState::Joined, Some(peer)) if met.contains(&peer) => {
                            debug!(%peer, "a joined session told again for a receiver already met");
                        }
                        (SessionState::Joined, Some(peer)) => return Ok(peer),
                        (SessionState::Expired, _) => {
                            return Err(TransferError::TimedOut { what: "the other device to join", after: ttl }.into());
                        }
                        (SessionState::Closed, _) => {
                            let why = reason.unwrap_or_else(|| "closed".into());
                            return Err(TransferError::Protocol(format!("the code's session ended: {why}")).into());
                        }
                        _ => {}
                    }
                }
                ClientEvent::Closed { reason } => {
                    return Err(peers_signaling::Error::Closed { reason }.into());
                }
                _ => {}
            }
        }
        Err(peers_signaling::Error::Closed { reason: "event channel ended".into() }.into())
    };
    match tokio::time::timeout(ttl, waiting).await {
        Ok(result) => result,
        Err(_) => Err(TransferError::TimedOut { what: "the other device to join", after: ttl }.into()),
    }
}

/// Runs the PAKE; on any failure closes the relay so the peer is not left waiting.
pub(super) async fn authenticate_on(
    relay: &dyn peers_sdk::Socket,
    code: &TransferCode,
    role: CodeRole,
    own: &DeviceInfo,
    timeout: Duration,
) -> Result<DeviceInfo> {
    let result = authenticate(relay, code, role, own, timeout).await;
    if let Err(err) = &result {
        relay.close(CloseReason::new(peers_sdk::CloseCode::Refused, format!("PAKE failed: {err}"))).await;
    }
    result
}
