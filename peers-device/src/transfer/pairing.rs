//! Pairing two devices by code: [`pair`] and [`join`].
//!
//! The same meeting as sending ([`super::live`]): a `"pake"` session whose number is
//! the code's, a frame relay, the PAKE ([`super::rendezvous`]). The difference is what
//! the PAKE confirms: each side's **long-term** device (its data directory's keys and
//! advertised URLs, what a share code carries), not a fresh one. Then, on the same
//! relay, a `Connection` between the two long-term keys, pinned to the devices the PAKE
//! confirmed, proves each side holds the private keys of the device it claimed; over
//! it the creator tells the joiner the groups:
//!
//! ```text
//!  creator (pair --group G)                        joiner (join CODE)
//!   PAKE + Confirm { long-term device } ◀═ relay ═▶ PAKE + Confirm { long-term device }
//!   Connection::connect (long-term keys) ◀═══════▶ Connection::accept (long-term keys)
//!   "pair.groups" [G] ──────────────────────────▶ (at most MAX_PAIR_GROUPS)
//!                     ◀────────────────────────── ()
//!   session-close                                   both return Paired { device, groups }
//! ```
//!
//! Neither function trusts anything: each returns the other device and the groups,
//! and the caller trusts it ([`crate::Device::add_peer`], or a data directory and a
//! running daemon, as `peers pair` / `peers join` do). A wrong code fails the PAKE on
//! both sides with [`TransferError::WrongCode`] and burns the session: nothing is
//! returned, so nothing is trusted.
//!
//! Signaling registration uses a fresh key, so a daemon of the same device that is
//! registered with the same server keeps its registration.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use peers_sdk::rpc::{RemoteError, RemoteErrorCode};
use peers_sdk::{CloseReason, Connection, DeviceInfo, DeviceKeys};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tracing::{debug, warn};

use super::code::DEFAULT_WORDS;
use super::live::{CLOSE_GRACE, LinkOptions};
use super::meeting::{CodeSession, ephemeral, meet, open_code, register, wait_for_join};
use super::pake::CodeRole;
use super::rendezvous::pinned_config;
use super::{TransferCode, TransferError};
use crate::{Error, GroupId, Result};

/// The call that carries the groups from the creator to the joiner.
pub const PAIR_METHOD: &str = "pair.groups";

/// Most groups one pairing names.
pub const MAX_PAIR_GROUPS: usize = 64;

/// The groups the creator pairs into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairOffer {
    /// Groups both devices become members of (1 to [`MAX_PAIR_GROUPS`]).
    pub groups: Vec<GroupId>,
}

impl PairOffer {
    fn check(&self) -> Result<(), TransferError> {
        match self.groups.len() {
            0 => Err(TransferError::Protocol("a pairing into no group".into())),
            n if n > MAX_PAIR_GROUPS => {
                Err(TransferError::Protocol(format!("a pairing into {n} groups (at most {MAX_PAIR_GROUPS})")))
            }
            _ => Ok(()),
        }
    }
}

/// How to pair.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PairOptions {
    /// How to reach the other device.
    pub link: LinkOptions,
    /// Words in the code (2 to 4). Default: 2.
    pub words: usize,
    /// How long the code stays valid. Default: 10 min.
    pub code_ttl: Duration,
}

impl PairOptions {
    /// Defaults, reaching the other device through `link`.
    pub fn new(link: LinkOptions) -> Self {
        PairOptions { link, words: DEFAULT_WORDS, code_ttl: Duration::from_secs(600) }
    }
}

/// The outcome of a pairing, on either side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paired {
    /// The other device, as the PAKE confirmed it and its keys proved it.
    pub device: DeviceInfo,
    /// The groups to trust it in.
    pub groups: Vec<GroupId>,
}

/// A pairing waiting for the other device. Dropping it does not stop it;
/// [`cancel`](Self::cancel) does.
#[derive(Debug)]
pub struct PairHandle {
    cancel: Arc<Notify>,
    task: tokio::task::JoinHandle<Result<Paired>>,
}

impl PairHandle {
    /// Stops waiting: the session is closed; [`finished`](Self::finished) returns
    /// [`TransferError::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.notify_one();
    }

    /// Waits until the other device joined and both are confirmed, or the pairing failed.
    pub async fn finished(self) -> Result<Paired> {
        self.task.await.map_err(|e| Error::Worker(e.to_string()))?
    }
}

/// Creates a pairing code for the device `keys` (advertised as `own`) and `groups`;
/// the rest runs in the background until someone [`join`]s with the code.
pub async fn pair(
    keys: Arc<DeviceKeys>,
    own: DeviceInfo,
    groups: Vec<GroupId>,
    options: PairOptions,
) -> Result<(TransferCode, PairHandle)> {
    let offer = PairOffer { groups };
    offer.check()?;
    check_own(&keys, &own)?;
    let (signaling_keys, _) = ephemeral(vec![])?;
    let CodeSession { client, mut events, created, code, .. } =
        open_code(&options.link, &signaling_keys, options.words, options.code_ttl).await?;
    let cancel = Arc::new(Notify::new());
    let stop = cancel.clone();
    let task_code = code.clone();
    let task = tokio::spawn(async move {
        let link = &options.link;
        let run = async {
            let joiner = wait_for_join(&mut events, &created, options.code_ttl, &[]).await?;
            let (relay, peer) = meet(&client, &joiner, &task_code, CodeRole::Creator, &own, link).await?;
            let config = pinned_config(keys, peer.clone());
            let conn = Connection::connect(Box::new(relay), config, Some(peer.device_id)).await?;
            let told: Result<()> =
                conn.emit_with_timeout(PAIR_METHOD, &offer, link.pake_timeout).await.map_err(Into::into);
            conn.close(CloseReason::normal("paired")).await;
            told?;
            Ok(Paired { device: peer, groups: offer.groups.clone() })
        };
        let result = tokio::select! {
            result = run => result,
            () = stop.notified() => Err(TransferError::Cancelled.into()),
        };
        if let Err(err) = client.close_session(&created.transfer_id, &created.sender_token).await {
            warn!(%err, "could not close the pairing code's session");
        }
        client.close().await;
        result
    });
    Ok((code, PairHandle { cancel, task }))
}

/// Joins the pairing of `code` as the device `keys` (advertised as `own`); returns the
/// creator's device and the groups once both are confirmed.
pub async fn join(code: TransferCode, keys: Arc<DeviceKeys>, own: DeviceInfo, link: LinkOptions) -> Result<Paired> {
    check_own(&keys, &own)?;
    let (signaling_keys, _) = ephemeral(vec![])?;
    let client = register(&link, &signaling_keys).await?;
    let result = async {
        let joined = client.join_session(&code.session().to_string()).await?;
        let run = async {
            let (relay, peer) = meet(&client, &joined.sender, &code, CodeRole::Joiner, &own, &link).await?;
            let (offer_tx, mut offer_rx) = watch::channel(None::<PairOffer>);
            let offer_tx = Arc::new(Mutex::new(Some(offer_tx)));
            let config = pinned_config(keys, peer.clone()).with_setup(move |conn| {
                let offer_tx = offer_tx.clone();
                conn.expose_rpc(PAIR_METHOD, move |offer: PairOffer| {
                    let sent = offer.check().map(|()| {
                        if let Some(tx) = offer_tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
                            tx.send_replace(Some(offer));
                        }
                    });
                    std::future::ready(sent.map_err(|e| RemoteError::new(RemoteErrorCode::BadArguments, e.to_string())))
                });
            });
            let conn = Connection::accept(Box::new(relay), config).await?;
            let named = offer_rx.clone();
            let offer = tokio::select! {
                got = tokio::time::timeout(link.pake_timeout, offer_rx.wait_for(Option::is_some)) => match got {
                    Ok(Ok(offer)) => offer.clone(),
                    _ => None,
                },
                // The creator closes once it has the answer, which follows the groups: when
                // both are ready at once (select! picks either), the groups are already here.
                reason = conn.closed() => match named.borrow().clone() {
                    Some(offer) => Some(offer),
                    None => {
                        debug!(reason = %reason.message, "the creator closed before naming the groups");
                        None
                    }
                },
            };
            // The answer may still be on its way to the creator, which closes once it has it.
            let _ = tokio::time::timeout(CLOSE_GRACE, conn.closed()).await;
            conn.close(CloseReason::normal("paired")).await;
            let offer =
                offer.ok_or_else(|| TransferError::Protocol("the other device never named the groups".into()))?;
            Ok(Paired { device: peer, groups: offer.groups })
        };
        let result: Result<Paired> = run.await;
        if let Err(err) = client.close_session(&joined.transfer_id, &joined.receiver_token).await {
            debug!(%err, "could not close the pairing code's session (the creator may have closed it)");
        }
        result
    }
    .await;
    client.close().await;
    result
}

/// `own` must be the device of `keys`: the pinned connection proves it.
fn check_own(keys: &DeviceKeys, own: &DeviceInfo) -> Result<()> {
    let plain = keys.info(vec![])?;
    match plain.device_id == own.device_id && plain.signing_key == own.signing_key && plain.static_key == own.static_key
    {
        true => Ok(()),
        false => Err(Error::Config { field: "own", reason: "the device info is not that of these keys".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_names_one_to_max_groups() {
        let group = |i: usize| GroupId::new(format!("g{i}")).unwrap();
        assert!(PairOffer { groups: vec![] }.check().is_err());
        assert!(PairOffer { groups: vec![group(0)] }.check().is_ok());
        assert!(PairOffer { groups: (0..MAX_PAIR_GROUPS).map(group).collect() }.check().is_ok());
        assert!(PairOffer { groups: (0..=MAX_PAIR_GROUPS).map(group).collect() }.check().is_err());
    }

    #[test]
    fn the_device_given_must_be_that_of_the_keys() {
        let keys = DeviceKeys::generate("alice").unwrap();
        let other = DeviceKeys::generate("alice").unwrap();
        assert!(check_own(&keys, &keys.info(vec!["http://10.0.0.1:7700/".into()]).unwrap()).is_ok());
        assert!(check_own(&keys, &other.info(vec![]).unwrap()).is_err());
    }
}
