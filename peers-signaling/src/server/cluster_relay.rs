//! Redis mode: the frame relay (section 7 of the protocol) between devices
//! registered on any instances. Clients see the same events as with one
//! instance.
//!
//! ```text
//!  A (instance 1): relay-open(B) ─▶ relay.lua: nothing from B ─▶ P:rq:<A> += "B|1|<conn>"  (waiting)
//!  B (instance 2): relay-open(A) ─▶ relay.lua: A's request found ─▶ id, P:relays, P:r:<id> (open)
//!     instance 2: leg (id, B) ─── "open" on P:relay:1 ──▶ instance 1: leg (id, A), relay-open to A
//!                 then relay-open to B
//!  frames / credit / closes: the sender's instance checks its leg, then ─── P:relay:<other> ──▶
//!     the other instance checks its leg and emits to its device
//! ```
//!
//! Each instance keeps a *leg* per relay party registered on it: the party's
//! connection, the other party and its instance, the deadline, what the party
//! sent, what the other party granted it, and the bytes the other party sent
//! (as last reported). So the per-frame path needs no Redis round trip but
//! the `PUBLISH` that carries the frame (none when both parties are here:
//! the event is handed over in process).
//!
//! - **Ordering:** everything this instance sends to others goes through one
//!   bounded queue and one task, publishing in order; each instance reads its
//!   channel in order.
//! - **Credit:** a leg refuses a frame beyond the credit the other party
//!   granted (`ProtocolError`), so what is in flight per relay and direction
//!   stays within one window, and so do the queues between instances.
//! - **Byte cap, both directions together:** each instance counts what its
//!   own party sends, and every frame carries its sender's running total. A
//!   frame enters only if `own + len + other's last total <= max_bytes`, and
//!   is delivered only if `own + its total <= max_bytes`. Take the last frame
//!   delivered each way, with totals `X` (A's) and `Y` (B's): if B had sent
//!   its `Y` bytes when A's frame arrived, the arrival check gives `X + Y <=
//!   max`; otherwise B's last frame entered after instance 2 saw `X`, and the
//!   entry check gives the same. So the cap holds exactly (the checks are
//!   [`RelayLeg`](crate::relay::RelayLeg), with a property test).
//! - **Ends:** a party closing, its connection closing, the time cap, a cap
//!   breach or a failed hand-over end the relay here and send `close` to the
//!   other instance. An instance that is gone (two checks of its
//!   `P:alive:<instance>`, half a second apart, find no subscriber, or a
//!   `PUBLISH` reaches nobody for a second) ends its relays for the surviving
//!   party with `TransportFailure`; a close is still sent to it, in case it
//!   was only re-making its Redis connection.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use peers_sdk::{CloseCode, DeviceId};
use serde::{Deserialize, Serialize};
use socketioxide_redis::drivers::ChanItem;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::cluster::{Cluster, unavailable};
use super::connection::{Connection, lock};
use super::hub::Peer;
use super::relay_requests::{close_notice, decoded_len, refuse};
use super::state::RelayOpening;
use super::{Shared, metrics as m, now_ms};
use crate::protocol::{
    ErrorCode, RELAY_WINDOW_FRAMES, Rejection, RelayClose, RelayCredit, RelayFrame, RelayOpened, events,
};
use crate::relay::{RelayLeg, RelayLimits};
use crate::store::redis::{RelayPairing, RelayQuota};

/// How often legs are checked for their deadline and their other instance.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// How often a publish that reached nobody is tried (a quarter second apart).
const PUBLISH_TRIES: usize = 4;
/// Room for events per relay in the queues between instances: a window of
/// frames, its credits and a close.
const EVENTS_PER_RELAY: usize = RELAY_WINDOW_FRAMES as usize + 16;
/// The most events the queues between instances hold.
const MAX_QUEUED_EVENTS: usize = 1 << 16;

/// One relay event between instances, on `P:relay:<instance>` (JSON).
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    relay: u64,
    /// The party it is for.
    to: String,
    /// The party it comes from.
    from: String,
    /// The instance it comes from.
    instance: String,
    #[serde(flatten)]
    event: LinkEvent,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum LinkEvent {
    /// The relay opened; `to` asked on `connection`.
    Open { connection: u64, deadline: u64 },
    /// A frame; `total` is every byte `from` sent on this relay, this one included.
    Frame { data: String, total: u64 },
    /// `from` grants `to` these cumulative limits.
    Credit { frames: u64, bytes: u64 },
    /// The relay ended.
    Close { code: CloseCode, message: String },
}

/// Work for the task that talks to the other instances.
#[derive(Debug)]
enum Outgoing {
    /// `retry`: whether reaching nobody is worth retrying (not for a close).
    Publish {
        instance: String,
        relay: u64,
        json: String,
        retry: bool,
    },
    Forget(u64),
    /// Answered once everything queued before it is done.
    Flush(oneshot::Sender<()>),
}

/// One party of a relay, registered on this instance.
#[derive(Debug)]
struct Leg {
    peer: Arc<Peer>,
    other: DeviceId,
    other_instance: String,
    deadline: u64,
    /// Bytes, credit and the other party's total.
    book: RelayLeg,
}

/// The receiving ends, taken once by the tasks.
type Inboxes = (mpsc::Receiver<Outgoing>, mpsc::Receiver<ChanItem>);

/// This instance's relay legs and its link to the other instances.
pub(crate) struct ClusterRelays {
    limits: RelayLimits,
    legs: Mutex<HashMap<(u64, DeviceId), Leg>>,
    link: mpsc::Sender<Outgoing>,
    inboxes: Mutex<Option<Inboxes>>,
}

impl std::fmt::Debug for ClusterRelays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRelays").finish_non_exhaustive()
    }
}

/// How many events the queues between instances hold.
pub(crate) fn queue_size(limits: &RelayLimits) -> usize {
    limits.max_relays.saturating_mul(EVENTS_PER_RELAY).min(MAX_QUEUED_EVENTS)
}

impl ClusterRelays {
    /// `inbound` receives this instance's `P:relay:<instance>` channel.
    pub(crate) fn new(limits: RelayLimits, inbound: mpsc::Receiver<ChanItem>) -> ClusterRelays {
        let (link, outgoing) = mpsc::channel(queue_size(&limits));
        ClusterRelays { limits, legs: Mutex::new(HashMap::new()), link, inboxes: Mutex::new(Some((outgoing, inbound))) }
    }

    fn gauge(legs: &HashMap<(u64, DeviceId), Leg>) {
        m::relays(legs.keys().map(|(id, _)| *id).collect::<HashSet<_>>().len());
    }
}

/// Starts the tasks that carry relay events between instances and watch the
/// legs; they end with the server.
pub(super) fn spawn_tasks(shared: &Arc<Shared>, cluster: &Cluster) -> Vec<tokio::task::JoinHandle<()>> {
    let Some((outgoing, inbound)) = lock(&cluster.relays.inboxes).take() else { return Vec::new() };
    let weak = Arc::downgrade(shared);
    vec![
        tokio::spawn(run_link(weak.clone(), outgoing)),
        tokio::spawn(run_inbox(weak.clone(), inbound)),
        tokio::spawn(run_watch(weak)),
    ]
}

/// Waits (at most `wait`) until the relay events queued so far have been
/// handed to the other instances: a shutting-down server's closes go out.
pub(super) async fn flush(cluster: &Cluster, wait: Duration) {
    let (done, flushed) = oneshot::channel();
    if cluster.relays.link.try_send(Outgoing::Flush(done)).is_ok() {
        let _ = tokio::time::timeout(wait, flushed).await;
    }
}

fn holder_parts(holder: &str) -> Option<(String, u64)> {
    let (instance, connection) = holder.split_once('|')?;
    Some((instance.to_owned(), connection.parse().ok()?))
}

/// `"relay-open"` in Redis mode.
pub(super) async fn open(
    cluster: &Cluster,
    conn: &Connection,
    device: DeviceId,
    peer: DeviceId,
) -> Result<RelayOpening, Rejection> {
    if peer == device {
        return Err(Rejection::new(ErrorCode::SelfAddressed, "a device cannot relay to itself"));
    }
    // A device that does not allow `device` is asked through its shadow: the
    // request waits like one for a device that does not exist, never pairs.
    let addressed = cluster.state.addresses(&device, &[peer]).await.map_err(unavailable)?;
    let peer = addressed.first().copied().unwrap_or(peer);
    let relays = &cluster.relays;
    let token = cluster.token(conn.peer.id);
    let pairing = cluster
        .state
        .relay_open(now_ms(), &device, &peer, conn.ip(), &token, &relays.limits)
        .await
        .map_err(unavailable)?;
    match pairing {
        RelayPairing::Waiting => Ok(RelayOpening::Waiting),
        RelayPairing::Busy => {
            let max = relays.limits.max_pending_per_device;
            Err(Rejection::new(ErrorCode::TooManyRelays, format!("a device may wait for {max} relays at once")))
        }
        RelayPairing::Quota(whose) => {
            let limits = &relays.limits;
            let message = match whose {
                RelayQuota::Device => format!("this device is a party of its limit of {} relays", limits.per_device),
                RelayQuota::Peer => format!("the other device is a party of its limit of {} relays", limits.per_device),
                RelayQuota::Address => {
                    format!("the devices of this address are parties of their limit of {} relays", limits.per_address)
                }
                RelayQuota::PeerAddress => format!(
                    "the devices of the other device's address are parties of their limit of {} relays",
                    limits.per_address
                ),
            };
            Err(Rejection::new(ErrorCode::QuotaExceeded, message))
        }
        RelayPairing::Full => {
            let max = relays.limits.max_relays;
            Err(Rejection::new(ErrorCode::TooManyRelays, format!("the servers carry their limit of {max} relays")))
        }
        RelayPairing::Open { id, deadline, holder } => {
            let Some((other_instance, connection)) = holder_parts(&holder) else {
                return Err(unavailable(crate::Error::Redis {
                    operation: "open a relay",
                    detail: format!("unexpected reply: bad holder {holder:?}"),
                }));
            };
            info!(relay = id, a = %peer, b = %device, "relay open");
            let leg = Leg {
                peer: conn.peer.clone(),
                other: peer,
                other_instance: other_instance.clone(),
                deadline,
                book: RelayLeg::default(),
            };
            {
                let mut legs = lock(&relays.legs);
                legs.insert((id, device), leg);
                ClusterRelays::gauge(&legs);
            }
            // The other end first: in process, its leg exists before this
            // device hears of the relay and can send on it.
            let opened = LinkEvent::Open { connection, deadline };
            let handed =
                send(&conn.shared, cluster, &other_instance, Envelope::new(cluster, id, &peer, &device, opened));
            let max_frame = relays.limits.max_frame as u64;
            let rate = Some(conn.shared.config.rate_limits.relay_rate());
            conn.peer.emit(events::RELAY_OPEN, &RelayOpened { relay: id, peer: peer.to_string(), max_frame, rate });
            if !handed || !conn.peer.connected() {
                // This device left meanwhile (its disconnect found no leg yet),
                // or the other instance cannot be reached now.
                let message = "the relay could not be set up";
                end_leg(&conn.shared, cluster, id, &device, CloseCode::TransportFailure, message, true);
            }
            Ok(RelayOpening::Open { relay: id })
        }
    }
}

impl Envelope {
    fn new(cluster: &Cluster, relay: u64, to: &DeviceId, from: &DeviceId, event: LinkEvent) -> Envelope {
        let instance = cluster.instance().to_owned();
        Envelope { relay, to: to.to_string(), from: from.to_string(), instance, event }
    }
}

/// Hands `envelope` to `instance`: in process if it is this one, otherwise
/// through the link queue. Whether it was taken (not: the queue is full, or
/// the event could not be encoded).
fn send(shared: &Shared, cluster: &Cluster, instance: &str, envelope: Envelope) -> bool {
    if instance == cluster.instance() {
        arrive(shared, cluster, envelope);
        return true;
    }
    let (relay, retry) = (envelope.relay, !matches!(envelope.event, LinkEvent::Close { .. }));
    let Ok(json) = serde_json::to_string(&envelope) else { return false };
    cluster.relays.link.try_send(Outgoing::Publish { instance: instance.to_owned(), relay, json, retry }).is_ok()
}

fn forget(cluster: &Cluster, id: u64) {
    if cluster.relays.link.try_send(Outgoing::Forget(id)).is_err() {
        warn!(relay = id, "relay link queue full; the relay counts against the cap until its deadline");
    }
}

/// Ends the leg of `device` on relay `id`: tells its device (if `tell_here`)
/// and the other party (through its instance).
fn end_leg(
    shared: &Shared,
    cluster: &Cluster,
    id: u64,
    device: &DeviceId,
    code: CloseCode,
    message: &str,
    tell_here: bool,
) {
    let leg = {
        let mut legs = lock(&cluster.relays.legs);
        let leg = legs.remove(&(id, *device));
        ClusterRelays::gauge(&legs);
        leg
    };
    let Some(leg) = leg else { return };
    debug!(relay = id, ?code, %message, "relay closed");
    if tell_here {
        leg.peer.emit(events::RELAY_CLOSE, &close_notice(id, code, message));
    }
    let close = LinkEvent::Close { code, message: message.to_owned() };
    send(shared, cluster, &leg.other_instance, Envelope::new(cluster, id, &leg.other, device, close));
    forget(cluster, id);
}

/// Ends every leg `pick` selects (their other instance looks gone, or a
/// hand-over failed) and tells their devices. The other side is sent a close
/// too: if its instance is only slow (its Redis connection was being
/// re-made), its device must not be left waiting on a relay that is gone.
fn end_picked(shared: &Shared, cluster: &Cluster, pick: impl Fn(u64, &Leg) -> bool, code: CloseCode, message: &str) {
    let picked: Vec<(u64, DeviceId)> =
        lock(&cluster.relays.legs).iter().filter(|((id, _), leg)| pick(*id, leg)).map(|(key, _)| *key).collect();
    for (id, device) in picked {
        end_leg(shared, cluster, id, &device, code, message, true);
    }
}

/// `"relay-frame"` from this instance's `device`.
pub(super) fn frame(shared: &Shared, cluster: &Cluster, device: DeviceId, frame: RelayFrame) {
    let limits = &cluster.relays.limits;
    let len = decoded_len(&frame.data, limits.max_frame).unwrap_or(usize::MAX) as u64;
    let checked = {
        let mut legs = lock(&cluster.relays.legs);
        let Some(leg) = legs.get_mut(&(frame.relay, device)) else {
            drop(legs);
            return refuse(&shared.hub(), &device, frame.relay, "no such relay");
        };
        leg.book.admit(len, limits).map(|total| (leg.other, leg.other_instance.clone(), total))
    };
    match checked {
        Ok((other, instance, total)) => {
            let event = LinkEvent::Frame { data: frame.data, total };
            if !send(shared, cluster, &instance, Envelope::new(cluster, frame.relay, &other, &device, event)) {
                let message = "the other device is not taking frames";
                end_leg(shared, cluster, frame.relay, &device, CloseCode::TransportFailure, message, true);
            }
        }
        Err((code, message)) => end_leg(shared, cluster, frame.relay, &device, code, &message, true),
    }
}

/// `"relay-credit"` from this instance's `device`.
pub(super) fn credit(shared: &Shared, cluster: &Cluster, device: DeviceId, credit: RelayCredit) {
    let target =
        lock(&cluster.relays.legs).get(&(credit.relay, device)).map(|leg| (leg.other, leg.other_instance.clone()));
    let Some((other, instance)) = target else {
        return refuse(&shared.hub(), &device, credit.relay, "no such relay");
    };
    let event = LinkEvent::Credit { frames: credit.frames, bytes: credit.bytes };
    if !send(shared, cluster, &instance, Envelope::new(cluster, credit.relay, &other, &device, event)) {
        let message = "the other device is not taking frames";
        end_leg(shared, cluster, credit.relay, &device, CloseCode::TransportFailure, message, true);
    }
}

/// `"relay-close"` from this instance's `device`.
pub(super) fn close(shared: &Shared, cluster: &Cluster, device: DeviceId, close: RelayClose) {
    end_leg(shared, cluster, close.relay, &device, close.code, &close.message, false);
}

/// Connection `peer_id` of `device` closed: its relays end for the other parties.
pub(super) fn device_gone(shared: &Shared, cluster: &Cluster, device: DeviceId, peer_id: u64) {
    let ids: Vec<u64> = lock(&cluster.relays.legs)
        .iter()
        .filter(|((_, party), leg)| *party == device && leg.peer.id == peer_id)
        .map(|((id, _), _)| *id)
        .collect();
    for id in ids {
        end_leg(shared, cluster, id, &device, CloseCode::TransportFailure, "the other device went offline", false);
    }
}

/// A relay event for a party on this instance (from another instance, or in
/// process). A frame or credit for a leg this instance does not have (the
/// relay ended here) is answered with a close, so the sender's end closes
/// too; other stale events are dropped.
fn arrive(shared: &Shared, cluster: &Cluster, envelope: Envelope) {
    let (Ok(to), Ok(from)) = (envelope.to.parse::<DeviceId>(), envelope.from.parse::<DeviceId>()) else {
        warn!(relay = envelope.relay, "relay event with a bad device id; dropped");
        return;
    };
    let (id, source) = (envelope.relay, envelope.instance);
    let limits = &cluster.relays.limits;
    let answer_closed = |message: &str| {
        let close = LinkEvent::Close { code: CloseCode::TransportFailure, message: message.to_owned() };
        send(shared, cluster, &source, Envelope::new(cluster, id, &from, &to, close));
    };
    match envelope.event {
        LinkEvent::Open { connection, deadline } => {
            let peer = shared.hub().peer(&to).filter(|peer| peer.id == connection && peer.connected());
            let Some(peer) = peer else {
                answer_closed("the other device went offline");
                forget(cluster, id);
                return;
            };
            let rate = Some(shared.config.rate_limits.relay_rate());
            let opened = RelayOpened { relay: id, peer: from.to_string(), max_frame: limits.max_frame as u64, rate };
            let leg =
                Leg { peer: peer.clone(), other: from, other_instance: source, deadline, book: RelayLeg::default() };
            {
                let mut legs = lock(&cluster.relays.legs);
                legs.insert((id, to), leg);
                ClusterRelays::gauge(&legs);
            }
            peer.emit(events::RELAY_OPEN, &opened);
        }
        LinkEvent::Frame { data, total } => {
            let delivered = {
                let mut legs = lock(&cluster.relays.legs);
                let Some(leg) = legs.get_mut(&(id, to)).filter(|leg| leg.other == from) else {
                    drop(legs);
                    return answer_closed("the relay ended on the other device's server");
                };
                leg.book.deliverable(total, limits).and_then(|()| {
                    if leg.peer.emit(events::RELAY_FRAME, &RelayFrame { relay: id, data }) {
                        Ok(())
                    } else {
                        Err((CloseCode::TransportFailure, "the other device is not taking frames".to_owned()))
                    }
                })
            };
            if let Err((code, message)) = delivered {
                end_leg(shared, cluster, id, &to, code, &message, true);
            }
        }
        LinkEvent::Credit { frames, bytes } => {
            let mut legs = lock(&cluster.relays.legs);
            let Some(leg) = legs.get_mut(&(id, to)).filter(|leg| leg.other == from) else {
                drop(legs);
                return answer_closed("the relay ended on the other device's server");
            };
            leg.book.grant(frames, bytes);
            leg.peer.emit(events::RELAY_CREDIT, &RelayCredit { relay: id, frames, bytes });
        }
        LinkEvent::Close { code, message } => {
            let leg = {
                let mut legs = lock(&cluster.relays.legs);
                let mine = legs.get(&(id, to)).is_some_and(|leg| leg.other == from);
                let leg = if mine { legs.remove(&(id, to)) } else { None };
                ClusterRelays::gauge(&legs);
                leg
            };
            if let Some(leg) = leg {
                debug!(relay = id, ?code, %message, from = %source, "relay closed by the other party");
                leg.peer.emit(events::RELAY_CLOSE, &close_notice(id, code, &message));
            }
        }
    }
}

/// Publishes one event to `instance`, trying up to `tries` times while
/// nobody receives it (the instance may be re-making its Redis connection);
/// then, or on a Redis error, the reason the relay must end.
async fn publish(cluster: &Cluster, instance: &str, relay: u64, json: &str, tries: usize) -> Result<(), &'static str> {
    let channel = cluster.state.relay_channel(instance);
    for attempt in 1..=tries {
        match cluster.state.publish(&channel, json).await {
            Ok(0) if attempt < tries => tokio::time::sleep(WATCH_EVERY / 2).await,
            Ok(0) => break,
            Ok(_) => return Ok(()),
            Err(err) => {
                warn!(relay, %err, "could not hand a relay event to the other instance");
                m::store_errors();
                return Err("the relay lost its link to the other device's server");
            }
        }
    }
    Err("the other device's server is gone")
}

/// Publishes this instance's relay events in order, and forgets ended relays
/// in Redis. A publish that reaches nobody (the other instance is gone) or
/// fails ends the relay here.
async fn run_link(shared: Weak<Shared>, mut outgoing: mpsc::Receiver<Outgoing>) {
    while let Some(work) = outgoing.recv().await {
        let Some(shared) = shared.upgrade() else { return };
        let Some(cluster) = shared.cluster.clone() else { return };
        match work {
            Outgoing::Publish { instance, relay, json, retry } => {
                let tries = if retry { PUBLISH_TRIES } else { 1 };
                if let Err(gone) = publish(&cluster, &instance, relay, &json, tries).await {
                    let pick = |id, leg: &Leg| id == relay && leg.other_instance == instance;
                    end_picked(&shared, &cluster, pick, CloseCode::TransportFailure, gone);
                }
            }
            Outgoing::Forget(id) => {
                if let Err(err) = cluster.state.relay_forget(id).await {
                    warn!(relay = id, %err, "could not forget a relay; it counts against the cap until its deadline");
                }
            }
            Outgoing::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Reads this instance's `P:relay:<instance>` channel, in order.
async fn run_inbox(shared: Weak<Shared>, mut inbound: mpsc::Receiver<ChanItem>) {
    while let Some((channel, payload)) = inbound.recv().await {
        let Some(shared) = shared.upgrade() else { return };
        let Some(cluster) = shared.cluster.clone() else { return };
        match serde_json::from_slice::<Envelope>(&payload) {
            Ok(envelope) => arrive(&shared, &cluster, envelope),
            Err(err) => warn!(%channel, %err, "unreadable relay event; dropped"),
        }
    }
}

/// Ends legs past their deadline, and legs whose other instance is gone.
async fn run_watch(shared: Weak<Shared>) {
    let mut suspects = HashSet::new();
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let Some(shared) = shared.upgrade() else { return };
        let Some(cluster) = shared.cluster.clone() else { return };
        let now = now_ms();
        let expired: Vec<(u64, DeviceId)> =
            lock(&cluster.relays.legs).iter().filter(|(_, leg)| leg.deadline <= now).map(|(key, _)| *key).collect();
        for (id, device) in expired {
            let message = "the relay reached its time limit";
            end_leg(&shared, &cluster, id, &device, CloseCode::LimitExceeded, message, true);
        }
        let others: HashSet<String> = lock(&cluster.relays.legs)
            .values()
            .map(|leg| leg.other_instance.clone())
            .filter(|instance| instance != cluster.instance())
            .collect();
        // An instance counts as gone when two checks in a row find it
        // without its connection (not while it re-makes one).
        let mut dead = HashSet::new();
        for instance in others {
            if let Ok(false) = cluster.state.instance_alive(&instance).await {
                if suspects.contains(&instance) {
                    info!(%instance, "an instance holding relay parties is gone; ending its relays");
                    let message = "the other device's server is gone";
                    end_picked(
                        &shared,
                        &cluster,
                        |_, leg| leg.other_instance == instance,
                        CloseCode::TransportFailure,
                        message,
                    );
                }
                dead.insert(instance);
            }
        }
        suspects = dead;
    }
}
