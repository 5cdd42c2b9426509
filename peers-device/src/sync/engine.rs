//! [`SqliteSyncEngine`]: the reference [`SyncGroup`], a key-value map per group
//! kept in SQLite and synced by pulling from each member.
//!
//! Tasks: one announcer per engine (after local writes, and after writes pulled
//! from a peer so changes travel on to members further away, it hands the new
//! head to the notifier of every member that may lack them, at most once per
//! [`EngineOptions::notify_debounce`], waiting for none of them); per ready
//! member, one notifier (sends
//! that member the newest head, one notice at a time, each bounded by
//! [`EngineOptions::notify_timeout`]; heads announced meanwhile collapse into
//! one) and one puller (woken by that member's notices, when its link comes up,
//! by a poll timer that backs off while the member has nothing new, and by the
//! periodic full resync; it asks for the next page while applying one). A slow or vanished member therefore stalls only its
//! own two tasks. Tasks hold only a weak reference to the engine and stop when
//! it is dropped or the member is gone.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use async_trait::async_trait;
use peers_sdk::DeviceId;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::AbortHandle;
use tracing::{debug, warn};

use super::store::{Applied, Entry, Lister, Store};
use super::{Change, ChangeBatch, ChangeNotice, ListChanges, NetworkInfo, PeerDevice, SyncGroup, SyncLimits};
use crate::error::{Error, Result};
use crate::group::GroupId;
use crate::util::{lock, now_ms};

/// Settings of [`SqliteSyncEngine`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EngineOptions {
    /// Size limits on keys, values and batches.
    pub limits: SyncLimits,
    /// The least time between two announcements of new writes to the members:
    /// the first write after a quiet spell is announced at once, the writes
    /// within this time after an announcement are gathered into the next one.
    /// Default: 20 ms.
    pub notify_debounce: Duration,
    /// Changes asked for per `listChanges` call (the member also caps a page
    /// at its own [`SyncLimits::max_batch_changes`]). Default: 4,000: each
    /// page costs a call, a compression, a transaction and a hop to the
    /// blocking pool on both sides whatever its size, and pages of 4,000
    /// small changes spent less CPU per change than pages of 1,000.
    pub page_size: u32,
    /// How often every member is re-read from the start, as a safety net.
    /// Default: 1 hour.
    pub full_resync_interval: Duration,
    /// The most members synced at once; more are refused. Default: 256.
    pub max_peers: usize,
    /// Applied changes kept for slow [`SqliteSyncEngine::subscribe`] receivers
    /// before they lag. Default: 1,024.
    pub subscriber_capacity: usize,
    /// After a failed pull (a call timed out, the connection faltered), the
    /// next try comes after this delay, doubling up to
    /// [`retry_max`](Self::retry_max) while pulls keep failing. Default: 1 s.
    pub retry_first: Duration,
    /// The longest delay between tries of a failing pull. Default: 60 s.
    pub retry_max: Duration,
    /// A change notice to one member that is not answered within this time is
    /// given up (the member's puller polls anyway). Other members never wait
    /// for it. Default: 2 s.
    pub notify_timeout: Duration,
    /// Without notices, a member is pulled this long after the last pull that
    /// brought something (or after its link came up), the delay doubling up to
    /// [`poll_max`](Self::poll_max) while polls bring nothing. Default: 2 s.
    pub poll_first: Duration,
    /// The longest delay between polls of a quiet member. Default: 60 s.
    pub poll_max: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            limits: SyncLimits::default(),
            notify_debounce: Duration::from_millis(20),
            page_size: 4000,
            full_resync_interval: Duration::from_secs(3600),
            max_peers: 256,
            subscriber_capacity: 1024,
            retry_first: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            notify_timeout: Duration::from_secs(2),
            poll_first: Duration::from_secs(2),
            poll_max: Duration::from_secs(60),
        }
    }
}

/// How syncing with one member is going.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerSyncStatus {
    /// The member.
    pub device: DeviceId,
    /// How far this device has pulled from the member's log.
    pub checkpoint: u64,
    /// The member's newest `seq`, as last heard.
    pub peer_head: u64,
    /// Changes pulled from it that won and were written.
    pub written: u64,
    /// Pulls completed.
    pub pulls: u64,
    /// When the last pull finished.
    pub last_pull: Option<SystemTime>,
    /// The last pull's failure, if it failed.
    pub last_error: Option<String>,
}

impl PeerSyncStatus {
    /// Everything the member had, as last heard, has been pulled.
    pub fn caught_up(&self) -> bool {
        self.checkpoint >= self.peer_head && self.last_error.is_none()
    }
}

/// The reference sync engine. Cheap to clone.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use peers_device::GroupId;
/// use peers_device::sync::{EngineOptions, SqliteSyncEngine};
///
/// let me = peers_sdk::DeviceKeys::generate("alice")?.device_id();
/// let notes = SqliteSyncEngine::in_memory(GroupId::new("notes")?, me, EngineOptions::default()).await?;
/// notes.put("greeting", b"hello").await?;
/// assert_eq!(notes.get("greeting").await?, Some(b"hello".to_vec()));
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct SqliteSyncEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteSyncEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSyncEngine").field("group", &self.inner.group).finish_non_exhaustive()
    }
}

struct Inner {
    group: GroupId,
    device: DeviceId,
    store: Arc<Mutex<Store>>,
    /// Lists pages for members beside the store's connection (file-backed
    /// groups; an in-memory one lists through the store).
    lister: Option<Arc<Mutex<Lister>>>,
    options: EngineOptions,
    peers: Mutex<HashMap<DeviceId, Member>>,
    changes: broadcast::Sender<Change>,
    written: Arc<Notify>,
    notifier: Mutex<Option<AbortHandle>>,
}

/// One ready member: its puller, and its notifier fed through a one-slot
/// watch (the newest head to tell it), so it holds a bounded amount of work
/// whatever the member does.
struct Member {
    remote: Arc<dyn PeerDevice>,
    wake: Arc<Notify>,
    status: Arc<Mutex<PeerSyncStatus>>,
    /// Held by a pull from this member, so the puller and
    /// [`SqliteSyncEngine::sync_now`] never pull from it at the same time (two
    /// pulls would list the same page, and the second's apply is refused).
    pulling: Arc<tokio::sync::Mutex<()>>,
    heads: watch::Sender<u64>,
    /// Something was written since the last notice that this member may not
    /// have: a local write, or a pulled change that neither came from it nor
    /// was made by it. The announcer notifies only members owed a notice, so
    /// a change pulled from A is not announced back to A (which would pull
    /// its own changes again).
    owed: bool,
    puller: AbortHandle,
    notifier: AbortHandle,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.puller.abort();
        self.notifier.abort();
    }
}

impl Inner {
    /// Marks the members `owed` picks as owed a notice and wakes the announcer.
    fn owe(&self, owed: impl Fn(&DeviceId) -> bool) {
        for (device, member) in lock(&self.peers).iter_mut() {
            member.owed |= owed(device);
        }
        self.written.notify_one();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.notifier).take() {
            task.abort();
        }
        lock(&self.peers).clear();
    }
}

impl SqliteSyncEngine {
    /// Opens the group's database at `path` (created if missing).
    pub async fn open(path: PathBuf, group: GroupId, device: DeviceId, options: EngineOptions) -> Result<Self> {
        let (limits, id) = (options.limits.clone(), group.clone());
        let (store, lister) = blocking(move || {
            let store = Store::open(&path, &id, device, limits.clone())?;
            Ok((store, Lister::open(&path, limits)?))
        })
        .await?;
        Ok(Self::start(store, Some(lister), group, device, options))
    }

    /// A group kept in memory only, for tests and examples.
    pub async fn in_memory(group: GroupId, device: DeviceId, options: EngineOptions) -> Result<Self> {
        let store = Store::in_memory(&group, device, options.limits.clone())?;
        Ok(Self::start(store, None, group, device, options))
    }

    fn start(store: Store, lister: Option<Lister>, group: GroupId, device: DeviceId, options: EngineOptions) -> Self {
        let (changes, _) = broadcast::channel(options.subscriber_capacity.max(1));
        let inner = Arc::new(Inner {
            group,
            device,
            store: Arc::new(Mutex::new(store)),
            lister: lister.map(|l| Arc::new(Mutex::new(l))),
            options,
            peers: Mutex::new(HashMap::new()),
            changes,
            written: Arc::new(Notify::new()),
            notifier: Mutex::new(None),
        });
        let task = tokio::spawn(announce_head(Arc::downgrade(&inner), inner.written.clone())).abort_handle();
        *lock(&inner.notifier) = Some(task);
        SqliteSyncEngine { inner }
    }

    /// Writes `key` and tells the members (at most one notice per
    /// [`EngineOptions::notify_debounce`]).
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<Change> {
        self.write(key, Some(value.to_vec())).await
    }

    /// Deletes `key` (a tombstone that syncs like a write).
    pub async fn delete(&self, key: &str) -> Result<Change> {
        self.write(key, None).await
    }

    /// Writes several keys (a `None` value deletes) in one transaction, all or
    /// none, and tells the members once.
    pub async fn put_many(&self, items: Vec<(String, Option<Vec<u8>>)>) -> Result<Vec<Change>> {
        let store = self.inner.store.clone();
        let changes = blocking(move || {
            let items: Vec<(&str, Option<&[u8]>)> = items.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
            lock(&store).put_many(&items, now_ms())
        })
        .await?;
        // Cloned only for subscribers: with none, the copy of every key and
        // value was a share of the write's allocations.
        if self.inner.changes.receiver_count() > 0 {
            for change in &changes {
                let _ = self.inner.changes.send(change.clone());
            }
        }
        self.inner.owe(|_| true);
        Ok(changes)
    }

    async fn write(&self, key: &str, value: Option<Vec<u8>>) -> Result<Change> {
        let store = self.inner.store.clone();
        let key = key.to_owned();
        let change = blocking(move || lock(&store).put(&key, value.as_deref(), now_ms())).await?;
        let _ = self.inner.changes.send(change.clone());
        self.inner.owe(|_| true);
        Ok(change)
    }

    /// The value of `key`, if it is set.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.entry(key).await?.and_then(|e| e.value))
    }

    /// The stored version of `key`, tombstones included.
    pub async fn entry(&self, key: &str) -> Result<Option<Entry>> {
        let (store, key) = (self.inner.store.clone(), key.to_owned());
        blocking(move || lock(&store).get(&key)).await
    }

    /// Every key that is set, with its value, in key order.
    pub async fn snapshot(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let store = self.inner.store.clone();
        blocking(move || lock(&store).snapshot()).await
    }

    /// This device's summary (head, entry count, digest).
    pub fn info(&self) -> NetworkInfo {
        lock(&self.inner.store).info()
    }

    /// Every change written from now on, local or pulled. A receiver that falls
    /// more than [`EngineOptions::subscriber_capacity`] behind sees `Lagged`.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    /// How syncing with each ready member is going.
    pub fn peer_status(&self) -> Vec<PeerSyncStatus> {
        let mut all: Vec<_> = lock(&self.inner.peers).values().map(|m| lock(&m.status).clone()).collect();
        all.sort_by_key(|s| s.device);
        all
    }

    /// Pulls everything new from `device` now and waits for it.
    pub async fn sync_now(&self, device: &DeviceId) -> Result<Applied> {
        let member =
            lock(&self.inner.peers).get(device).map(|m| (m.remote.clone(), m.status.clone(), m.pulling.clone()));
        let Some((remote, status, pulling)) = member else {
            return Err(Error::NotAMember { device: *device, group: self.inner.group.to_string() });
        };
        let _alone = pulling.lock().await;
        pull(&self.inner, remote.as_ref(), &status, false).await
    }
}

#[async_trait]
impl SyncGroup for SqliteSyncEngine {
    fn group_id(&self) -> &GroupId {
        &self.inner.group
    }

    async fn list_changes(&self, from: &DeviceId, request: ListChanges) -> Result<ChangeBatch> {
        debug!(group = %self.inner.group, peer = %from, since = request.since, "listChanges");
        let skip = request.skip_mine.then_some(*from);
        let (since, limit) = (request.since, request.limit);
        match self.inner.lister.clone() {
            Some(lister) => blocking(move || lock(&lister).list_changes_for(since, limit, skip.as_ref())).await,
            None => {
                let store = self.inner.store.clone();
                blocking(move || lock(&store).list_changes_for(since, limit, skip.as_ref())).await
            }
        }
    }

    async fn get_network_info(&self, _from: &DeviceId) -> Result<NetworkInfo> {
        Ok(self.info())
    }

    async fn notify_of_changes(&self, from: &DeviceId, notice: ChangeNotice) -> Result<()> {
        let peers = lock(&self.inner.peers);
        let member = peers.get(from).ok_or(Error::NotAMember { device: *from, group: self.inner.group.to_string() })?;
        let mut status = lock(&member.status);
        status.peer_head = status.peer_head.max(notice.head);
        member.wake.notify_one();
        Ok(())
    }

    async fn peer_ready(&self, remote: Arc<dyn PeerDevice>) {
        let device = remote.device_id();
        if device == self.inner.device {
            warn!(group = %self.inner.group, "refusing to sync with this device itself");
            return;
        }
        let mut peers = lock(&self.inner.peers);
        if !peers.contains_key(&device) && peers.len() >= self.inner.options.max_peers {
            warn!(group = %self.inner.group, peer = %device, limit = self.inner.options.max_peers, "too many members");
            return;
        }
        let checkpoint = lock(&self.inner.store).checkpoint(&device).unwrap_or(0);
        let status = Arc::new(Mutex::new(PeerSyncStatus {
            device,
            checkpoint,
            peer_head: 0,
            written: 0,
            pulls: 0,
            last_pull: None,
            last_error: None,
        }));
        // The link (re)came up: pull at once, and tell the member our head.
        let wake = Arc::new(Notify::new());
        wake.notify_one();
        let pulling = Arc::new(tokio::sync::Mutex::new(()));
        let puller = tokio::spawn(pull_member(
            Arc::downgrade(&self.inner),
            remote.clone(),
            wake.clone(),
            status.clone(),
            pulling.clone(),
        ));
        let head = lock(&self.inner.store).info().head;
        let (heads, head_rx) = watch::channel(head);
        let notifier = tokio::spawn(notify_member(
            self.inner.group.clone(),
            remote.clone(),
            head_rx,
            self.inner.options.notify_timeout,
        ));
        let member = Member {
            remote,
            wake,
            status,
            pulling,
            heads,
            owed: false,
            puller: puller.abort_handle(),
            notifier: notifier.abort_handle(),
        };
        // The member replaced (its tasks aborted on drop) outside the lock.
        let old = peers.insert(device, member);
        drop(peers);
        drop(old);
    }

    async fn peer_gone(&self, device: &DeviceId) {
        let gone = lock(&self.inner.peers).remove(device);
        drop(gone);
    }

    fn sync_status(&self) -> Vec<PeerSyncStatus> {
        self.peer_status()
    }
}

/// A member's puller: pulls when woken (a notice, the link coming up), polls
/// on a timer that backs off while the member has nothing new (notices can be
/// lost: the member's notifier gives up on a slow link), tries again with
/// backoff after a failed pull, and re-reads everything periodically.
async fn pull_member(
    engine: Weak<Inner>,
    remote: Arc<dyn PeerDevice>,
    wake: Arc<Notify>,
    status: Arc<Mutex<PeerSyncStatus>>,
    pulling: Arc<tokio::sync::Mutex<()>>,
) {
    let Some(options) = engine.upgrade().map(|e| e.options.clone()) else { return };
    let mut schedule = PullSchedule::new(&options, Instant::now());
    loop {
        let cause = tokio::select! {
            () = wake.notified() => PullCause::Woken,
            () = tokio::time::sleep_until(schedule.next()) => schedule.due(Instant::now()),
        };
        let Some(inner) = engine.upgrade() else { return };
        let _alone = pulling.lock().await;
        if cause == PullCause::FullResync {
            let device = remote.device_id();
            let store = inner.store.clone();
            if let Err(err) = blocking(move || lock(&store).reset_checkpoint(&device)).await {
                warn!(%err, "cannot reset checkpoint for the full resync");
            }
        }
        let outcome = pull(&inner, remote.as_ref(), &status, cause == PullCause::FullResync).await;
        let now = Instant::now();
        match outcome {
            Ok(applied) => schedule.on_pulled(cause, applied.written + applied.ignored > 0, now),
            Err(err) => {
                let next = schedule.on_failed(now);
                debug!(group = %inner.group, peer = %remote.device_id(), %err, ?next, "pull failed; trying again");
            }
        }
    }
}

/// Why a pull runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PullCause {
    /// A notice, or the member's link came up.
    Woken,
    /// The poll timer.
    Poll,
    /// The retry after a failed pull.
    Retry,
    /// The periodic full re-read.
    FullResync,
}

/// When a member's puller runs next without being woken. Sans-IO.
#[derive(Clone, Debug)]
struct PullSchedule {
    retry_first: Duration,
    retry_max: Duration,
    poll_first: Duration,
    poll_max: Duration,
    full_every: Duration,
    /// The retry delay in use while pulls keep failing.
    retry: Option<Duration>,
    /// The poll delay in use; doubles while polls bring nothing.
    poll: Duration,
    next_poll: Instant,
    next_full: Instant,
}

impl PullSchedule {
    fn new(options: &EngineOptions, now: Instant) -> Self {
        let poll = options.poll_first.max(Duration::from_millis(1));
        PullSchedule {
            retry_first: options.retry_first,
            retry_max: options.retry_max,
            poll_first: poll,
            poll_max: options.poll_max.max(poll),
            full_every: options.full_resync_interval,
            retry: None,
            poll,
            next_poll: now + poll,
            next_full: now + options.full_resync_interval,
        }
    }

    /// The next deadline (retry, poll or full resync).
    fn next(&self) -> Instant {
        self.next_poll.min(self.next_full)
    }

    /// The deadline passed at `now`: what kind of pull it is.
    fn due(&self, now: Instant) -> PullCause {
        if now >= self.next_full {
            PullCause::FullResync
        } else if self.retry.is_some() {
            PullCause::Retry
        } else {
            PullCause::Poll
        }
    }

    /// A pull succeeded; `brought` says whether the member had anything new.
    fn on_pulled(&mut self, cause: PullCause, brought: bool, now: Instant) {
        self.retry = None;
        if cause == PullCause::FullResync {
            self.next_full = now + self.full_every;
        }
        self.poll =
            if brought || cause == PullCause::Woken { self.poll_first } else { (self.poll * 2).min(self.poll_max) };
        self.next_poll = now + self.poll;
    }

    /// A pull failed: the next try comes after the retry delay.
    fn on_failed(&mut self, now: Instant) -> Duration {
        let delay = self.retry.map_or(self.retry_first, |d| (d * 2).min(self.retry_max));
        self.retry = Some(delay);
        self.next_poll = now + delay;
        delay
    }
}

/// Pulls pages from `remote` until it has nothing more. A full read
/// (`everything`) also lists the changes this device made, which a normal pull
/// leaves out ([`ListChanges::skip_mine`]): it is the safety net for a device
/// whose own database went back.
async fn pull(
    inner: &Arc<Inner>,
    remote: &dyn PeerDevice,
    status: &Mutex<PeerSyncStatus>,
    everything: bool,
) -> Result<Applied> {
    let device = remote.device_id();
    let result = pull_pages(inner, remote, status, everything).await;
    let mut status = lock(status);
    status.last_pull = Some(SystemTime::now());
    status.pulls += 1;
    match &result {
        Ok(applied) => {
            status.written += applied.written as u64;
            status.last_error = None;
        }
        Err(err) => status.last_error = Some(err.to_string()),
    }
    status.checkpoint = lock(&inner.store).checkpoint(&device).unwrap_or(status.checkpoint);
    result
}

/// The page loop. While a page is applied (one transaction, on the blocking
/// pool), the next one is already asked for: at most two pages are held, the
/// one being applied and the one arriving, each within [`SyncLimits`]. The
/// checkpoint moves only in the transaction that applies a page, so a failure
/// anywhere leaves it at the last page applied whole, and the page read ahead
/// is dropped.
async fn pull_pages(
    inner: &Arc<Inner>,
    remote: &dyn PeerDevice,
    status: &Mutex<PeerSyncStatus>,
    everything: bool,
) -> Result<Applied> {
    let device = remote.device_id();
    let request = |since| ListChanges { since, limit: inner.options.page_size, skip_mine: !everything };
    let mut applied = Applied::default();
    let mut restarted = false;
    let mut since = lock(&inner.store).checkpoint(&device)?;
    let mut batch = remote.list_changes(request(since)).await?;
    loop {
        lock(status).peer_head = batch.head;
        if batch.head < since && !restarted {
            // The member's log is behind what we pulled: its database was replaced
            // or restored. Read it again from the start (once per pull).
            warn!(group = %inner.group, peer = %device, since, head = batch.head, "member's log went back; re-reading");
            restarted = true;
            let store = inner.store.clone();
            blocking(move || lock(&store).reset_checkpoint(&device)).await?;
            since = 0;
            batch = remote.list_changes(request(since)).await?;
            continue;
        }
        let (more, through) = (batch.more, batch.next_since(since));
        let store = inner.store.clone();
        let changes = std::mem::take(&mut batch.changes);
        let apply = blocking(move || {
            let mask = lock(&store).apply_page(&device, &changes, through, now_ms())?;
            Ok((mask, changes))
        });
        let (mask, changes) = if more {
            let (done, next) = tokio::join!(apply, remote.list_changes(request(through)));
            let done = done?;
            (since, batch) = (through, next?);
            done
        } else {
            apply.await?
        };
        applied.add(&mask);
        let mut origins: Vec<DeviceId> = Vec::new();
        for (change, written) in changes.into_iter().zip(mask) {
            if written {
                if !origins.contains(&change.origin) {
                    origins.push(change.origin);
                }
                let _ = inner.changes.send(change);
            }
        }
        if !origins.is_empty() {
            // Members further away may not have these; `device` listed them, and
            // a member has the changes it made itself.
            inner.owe(|member| *member != device && origins.iter().any(|o| o != member));
        }
        if !more {
            return Ok(applied);
        }
    }
}

/// After writes, hands the notifier of every member owed a notice
/// ([`Member::owed`]) the new head: at once after a quiet spell, then at most
/// once per [`EngineOptions::notify_debounce`], writes in between gathered
/// into the next announcement.
/// Waits on `written` without holding the engine, so dropping the engine ends
/// the task; waits for no member.
async fn announce_head(engine: Weak<Inner>, written: Arc<Notify>) {
    let mut last: Option<Instant> = None;
    loop {
        written.notified().await;
        let Some(debounce) = engine.upgrade().map(|inner| inner.options.notify_debounce) else { return };
        if let Some(last) = last {
            tokio::time::sleep_until(last + debounce).await;
        }
        last = Some(Instant::now());
        let Some(inner) = engine.upgrade() else { return };
        let head = lock(&inner.store).info().head;
        for member in lock(&inner.peers).values_mut() {
            if std::mem::take(&mut member.owed) {
                member.heads.send_if_modified(|told| std::mem::replace(told, head) != head);
            }
        }
    }
}

/// One member's notifier: tells it the newest head, one notice at a time,
/// each given up after `timeout`. Heads announced while a notice is out
/// collapse into the newest.
async fn notify_member(
    group: GroupId,
    remote: Arc<dyn PeerDevice>,
    mut heads: watch::Receiver<u64>,
    timeout: Duration,
) {
    loop {
        let head = *heads.borrow_and_update();
        if head > 0 {
            match tokio::time::timeout(timeout, remote.notify_of_changes(ChangeNotice { head })).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => debug!(%group, peer = %remote.device_id(), %err, "notifyOfChanges failed"),
                Err(_) => debug!(%group, peer = %remote.device_id(), ?timeout, "notifyOfChanges not answered in time"),
            }
        }
        if heads.changed().await.is_err() {
            return;
        }
    }
}

/// Runs a database call on the blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Error::Worker(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> EngineOptions {
        EngineOptions {
            retry_first: Duration::from_secs(1),
            retry_max: Duration::from_secs(4),
            poll_first: Duration::from_secs(2),
            poll_max: Duration::from_secs(8),
            full_resync_interval: Duration::from_secs(100),
            ..EngineOptions::default()
        }
    }

    #[test]
    fn a_quiet_member_is_polled_less_and_less_and_a_busy_one_every_poll_first() {
        let start = Instant::now();
        let mut schedule = PullSchedule::new(&options(), start);
        assert_eq!(schedule.next(), start + Duration::from_secs(2));
        assert_eq!(schedule.due(schedule.next()), PullCause::Poll);
        let mut now = schedule.next();
        let mut delays = Vec::new();
        for _ in 0..4 {
            schedule.on_pulled(PullCause::Poll, false, now);
            delays.push(schedule.next() - now);
            now = schedule.next();
        }
        let secs: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [4, 8, 8, 8], "doubling up to poll_max");
        schedule.on_pulled(PullCause::Poll, true, now);
        assert_eq!(schedule.next() - now, Duration::from_secs(2), "a poll that brought changes resets");
        schedule.on_pulled(PullCause::Poll, false, now);
        schedule.on_pulled(PullCause::Woken, false, now);
        assert_eq!(schedule.next() - now, Duration::from_secs(2), "a notice resets");
    }

    #[test]
    fn failures_retry_with_their_own_backoff_then_polling_resumes() {
        let start = Instant::now();
        let mut schedule = PullSchedule::new(&options(), start);
        let secs: Vec<u64> = (0..4).map(|_| schedule.on_failed(start).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 4]);
        assert_eq!(schedule.due(schedule.next()), PullCause::Retry);
        schedule.on_pulled(PullCause::Retry, false, start);
        assert_eq!(schedule.on_failed(start), Duration::from_secs(1), "a success forgets the retry delay");
    }

    #[test]
    fn the_full_resync_comes_on_its_own_clock() {
        let start = Instant::now();
        let mut schedule = PullSchedule::new(&options(), start);
        let late = start + Duration::from_secs(100);
        assert_eq!(schedule.due(late), PullCause::FullResync);
        schedule.on_pulled(PullCause::FullResync, false, late);
        assert_eq!(schedule.due(late + Duration::from_secs(8)), PullCause::Poll);
        assert!(schedule.next() <= late + Duration::from_secs(100));
    }
}
