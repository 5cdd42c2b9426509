//! The receiving side of a transfer by code: [`receive`] joins the code's session,
//! meets the sender (the PAKE on the relay), and follows the transfer over whichever
//! connection carries it, opening a new relay when one ends under it (the rules:
//! `recovery`), until everything is verified and stored. The sending side and what both
//! share are in `live`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peers_sdk::{Connection, DeviceInfo, DeviceKeys};
use tokio::sync::watch;
use tracing::{debug, info};

use super::exchange::{DEFAULT_ANSWER_TIMEOUT, ReceiveOptions, Received, ReceiverHandlers};
use super::live::{CLOSE_GRACE, Canceller, LinkOptions, close_reason, until_cancelled};
use super::manifest::Hash;
use super::meeting::{ephemeral, join_code, meet, register};
use super::pake::CodeRole;
use super::paths::{Change, Local, LocalListener, Paths, Side, class_of, webrtc_endpoint};
use super::reconnect::Signaling;
use super::recovery::receiver_reopens;
use super::status::{Stage, Status, follow, set_connected, set_stage};
use super::{TransferCode, TransferError};
use crate::{Error, Result};

/// A running receive. Dropping it does not stop the transfer; [`cancel`](Self::cancel) does.
#[derive(Debug)]
pub struct ReceiveHandle {
    /// The transfer's phase, path and bytes.
    pub status: watch::Receiver<Status>,
    cancel: Canceller,
    task: tokio::task::JoinHandle<Result<Received>>,
}

impl ReceiveHandle {
    /// Stops the transfer ([`Canceller::cancel`]); [`finished`](Self::finished) returns
    /// [`TransferError::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A canceller that outlives [`finished`](Self::finished)'s taking of the handle.
    pub fn canceller(&self) -> Canceller {
        self.cancel.clone()
    }

    /// Waits until everything is verified and stored (or the transfer failed).
    pub async fn finished(self) -> Result<Received> {
        self.task.await.map_err(|e| Error::Worker(e.to_string()))?
    }
}

/// Joins the session of `code` and returns at once; the PAKE, the connection and the
/// transfer run in the background (see the module documentation). Each offer is
/// decided by `options.decide`, which sees the names and sizes.
pub async fn receive(code: TransferCode, link: LinkOptions, options: ReceiveOptions) -> Result<ReceiveHandle> {
    let local = match link.local {
        Some(ip) => LocalListener::bind(ip).await,
        None => None,
    };
    let (keys, info) = ephemeral(local.as_ref().map(LocalListener::urls).unwrap_or_default())?;
    let client = register(&link, &keys).await?;
    let joined = match join_code(&client, &code.session().to_string(), &link.taken_retries).await {
        Ok(joined) => joined,
        Err(err) => {
            client.close().await;
            return Err(err.into());
        }
    };
    let (status_tx, status) = watch::channel(Status::start(Stage::Authenticating));
    let (cancel, cancelled) = Canceller::new();
    let (signaling, _) = Signaling::start(client, None, keys.clone(), &link, status_tx.clone());
    let receiver = Receiver { sender: joined.sender, code, keys, info, link, status: status_tx, cancelled };
    let task = tokio::spawn(async move {
        let local = local.map_or(Local::Off, Local::Listen);
        let result = receiver.run(&signaling, options, local).await;
        if let Some(client) = signaling.current()
            && let Err(err) = client.close_session(&joined.transfer_id, &joined.receiver_token).await
        {
            debug!(%err, "could not close the code's session (the sender may have closed it)");
        }
        signaling.close().await;
        result
    });
    Ok(ReceiveHandle { status, cancel, task })
}

/// The receiver's side once the session is joined.
struct Receiver {
    sender: peers_sdk::DeviceId,
    code: TransferCode,
    keys: Arc<DeviceKeys>,
    info: DeviceInfo,
    link: LinkOptions,
    status: watch::Sender<Status>,
    cancelled: watch::Receiver<bool>,
}

impl Receiver {
    async fn run(&self, signaling: &Signaling, mut options: ReceiveOptions, local: Local) -> Result<Received> {
        let link = &self.link;
        // A "no" ends with the sender closing the connection: remember it was ours.
        // The offer of a manifest already accepted (again, on another path) is not asked again.
        let declined = Arc::new(AtomicBool::new(false));
        let accepted: Arc<Mutex<Option<Hash>>> = Arc::default();
        let (decide, said_no, said_yes) = (options.decide.clone(), declined.clone(), accepted.clone());
        options.decide = Arc::new(move |manifest| {
            let digest = manifest.digest();
            if *said_yes.lock().unwrap_or_else(|e| e.into_inner()) == Some(digest) {
                return Box::pin(std::future::ready(true));
            }
            let (answer, said_no, said_yes) = (decide(manifest), said_no.clone(), said_yes.clone());
            Box::pin(async move {
                let yes = answer.await;
                said_no.store(!yes, Ordering::Relaxed);
                if yes {
                    *said_yes.lock().unwrap_or_else(|e| e.into_inner()) = Some(digest);
                }
                yes
            })
        });
        let (relay, peer) = until_cancelled(
            &self.cancelled,
            meet(signaling.first(), &self.sender, &self.code, CodeRole::Joiner, &self.info, link),
        )
        .await?;
        set_stage(&self.status, Stage::Connecting);
        // The handlers go on every connection before the sender may call (its offer comes at once).
        let handlers = ReceiverHandlers::new(options);
        let on_each = handlers.clone();
        let setup = move |conn: &Connection| {
            on_each.expose(conn);
        };
        let drain = DEFAULT_ANSWER_TIMEOUT;
        let webrtc = webrtc_endpoint(signaling, link);
        let keys = self.keys.clone();
        let mut paths = Paths::start(Side::Receiver, keys, &peer, webrtc, local, drain, relay, setup).await?;
        let result = until_cancelled(&self.cancelled, self.receive(&mut paths, signaling, &handlers, &declined)).await;
        if result.is_ok() {
            set_stage(&self.status, Stage::Done);
            // The stream's final answer may still be on its way to the sender, which
            // closes once it has it; close only if it does not.
            let mut current = paths.active();
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                while let Change::Active(next) = paths.changed(current.as_ref()).await {
                    current = Some(next);
                }
            })
            .await;
        }
        paths.close(close_reason(&result, "receiver")).await;
        result
    }

    /// Follows the transfer over whichever connection carries it, until the data is
    /// stored, it fails, or the sender is gone.
    async fn receive(
        &self,
        paths: &mut Paths,
        signaling: &Signaling,
        handlers: &ReceiverHandlers,
        declined: &AtomicBool,
    ) -> Result<Received> {
        let (link, status) = (&self.link, &self.status);
        let no_path = || TransferError::Protocol("no connection to the sender".into());
        let mut current = paths.active_within(link.relay_wait).await.ok_or_else(no_path)?;
        set_connected(status, class_of(&current));
        let mut outcome = handlers.last_outcome();
        let mut carrier = handlers.carrier();
        let mut last_error = None;
        let mut hops = 0;
        let mut at_hop = 0;
        let mut drops = signaling.drops();
        let stalled = follow(handlers.progress(), status, link.stall_timeout);
        tokio::pin!(stalled);
        loop {
            tokio::select! {
                changed = outcome.changed() => {
                    changed.map_err(|_| Error::Worker("the receiving handlers stopped".into()))?;
                    match outcome.borrow_and_update().clone() {
                        Some(Ok(received)) => return Ok(received),
                        Some(Err(err)) => {
                            debug!(%err, "a data stream failed; waiting for the sender to go on or give up");
                            last_error = Some(err);
                        }
                        None => {}
                    }
                }
                stalled = &mut stalled => return Err(stalled.into()),
                // The status shows the path the bytes take (the data stream's), which
                // may lag the manager's switch by the chunks in flight on the old one.
                Ok(()) = carrier.changed() => {
                    if let Some(class) = *carrier.borrow_and_update() {
                        set_connected(status, class);
                    }
                }
                change = paths.changed(Some(&current)) => match change {
                    Change::Active(next) => current = next,
                    Change::Lost => {
                        let reason = current.closed().await;
                        let done = status.borrow().progress.bytes_done;
                        let dropped = signaling.dropped_since(drops);
                        if receiver_reopens(&reason, done > at_hop, hops, dropped) {
                            hops += 1;
                            at_hop = done;
                            info!(reason = %reason.message, hop = hops, done, dropped, "the relay ended mid-way; resuming on a new one");
                            let client = signaling.client().await?;
                            drops = signaling.drops();
                            paths.add_relay(client.open_relay(&self.sender, link.relay_wait).await?).await?;
                            current = paths.active_within(link.relay_wait).await.ok_or_else(no_path)?;
                            continue;
                        }
                        // The data task may still be reporting why the stream broke.
                        if let Ok(Ok(ended)) =
                            tokio::time::timeout(Duration::from_secs(2), outcome.wait_for(Option::is_some)).await
                        {
                            last_error = match ended.clone() {
                                Some(Ok(received)) => return Ok(received),
                                Some(Err(err)) => Some(err),
                                None => last_error,
                            };
                        }
                        return Err(match last_error {
                            Some(err) => TransferError::Protocol(err).into(),
                            None if declined.load(Ordering::Relaxed) => TransferError::Declined("you said no".into()).into(),
                            None => TransferError::Protocol(format!("the sender closed the connection: {}", reason.message)).into(),
                        });
                    }
                }
            }
        }
    }
}
