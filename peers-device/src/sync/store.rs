//! The reference engine's storage: one SQLite database per group.
//!
//! ```text
//! entries(key TEXT PRIMARY KEY, value BLOB NULL, ts INTEGER, origin TEXT, seq INTEGER UNIQUE)
//! checkpoints(peer TEXT PRIMARY KEY, seq INTEGER)   -- how far we pulled from each peer
//! meta(name TEXT PRIMARY KEY, value)                -- schema, group, device, clock, digest
//! ```
//!
//! `entries` is both the data and the change log: each key has one row, its
//! latest version, and every write gives the row a new `seq`. Listing the changes
//! after a `seq` is an index range scan, and the log never grows past one row per
//! key (deletes leave a tombstone so they propagate). A change from a peer is
//! written, with a new local `seq`, only if it beats the stored version, so
//! applying a change twice does nothing and changes flow on to devices further
//! away.
//!
//! A page from a peer is applied in one transaction with a few statements, not
//! two per change: the stored versions of all its keys are read together and
//! its winning changes written by multi-row `INSERT`s (`rows`). A file-backed
//! group also has a [`Lister`], a second, read-only connection that lists pages
//! for members' pulls from a WAL snapshot while the store's connection writes.
//!
//! Synchronous and clock-free: the caller passes the wall clock in, and the async
//! engine runs these calls on the blocking pool.

use std::path::Path;

use peers_sdk::DeviceId;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use super::clock::HybridClock;
use super::rows::{OriginText, parse_origin, stored_versions, write_changes};
use super::types::{Change, ChangeBatch, NetworkInfo, SyncLimits};
use crate::error::{Error, Result};
use crate::group::GroupId;

/// The schema version this code writes.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value ANY NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    value BLOB,
    ts INTEGER NOT NULL,
    origin TEXT NOT NULL,
    seq INTEGER NOT NULL UNIQUE
) STRICT;
CREATE TABLE IF NOT EXISTS checkpoints (peer TEXT PRIMARY KEY, seq INTEGER NOT NULL) STRICT;
";

/// A key's stored version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The value, `None` if deleted.
    pub value: Option<Vec<u8>>,
    /// When it was written (hybrid logical clock).
    pub timestamp: u64,
    /// Who wrote it.
    pub origin: DeviceId,
    /// Its position in this device's log.
    pub seq: u64,
}

/// What applying a batch from a peer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Changes that beat the stored version and were written.
    pub written: usize,
    /// Changes that were older than (or equal to) what is stored.
    pub ignored: usize,
}

impl Applied {
    pub(crate) fn add(&mut self, mask: &[bool]) {
        let written = mask.iter().filter(|w| **w).count();
        self.written += written;
        self.ignored += mask.len() - written;
    }
}

/// One group's database.
pub(crate) struct Store {
    db: Connection,
    device: DeviceId,
    clock: HybridClock,
    digest: [u8; 32],
    head: u64,
    entries: u64,
    limits: SyncLimits,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("device", &self.device).field("head", &self.head).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` for `group` on `device`.
    pub(crate) fn open(path: &Path, group: &GroupId, device: DeviceId, limits: SyncLimits) -> Result<Self> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        Self::init(db, &path.display().to_string(), group, device, limits)
    }

    /// A database in memory, for tests.
    pub(crate) fn in_memory(group: &GroupId, device: DeviceId, limits: SyncLimits) -> Result<Self> {
        Self::init(Connection::open_in_memory()?, ":memory:", group, device, limits)
    }

    fn init(mut db: Connection, path: &str, group: &GroupId, device: DeviceId, limits: SyncLimits) -> Result<Self> {
        db.execute_batch(SCHEMA)?;
        // Room for every statement the store prepares (the multi-row ones
        // included, `rows`), so none is parsed again.
        db.set_prepared_statement_cache_capacity(32);
        let incompatible = |reason: String| Error::IncompatibleDatabase { path: path.to_owned(), reason };
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (name, value) in [
            ("schema", rusqlite::types::Value::Integer(SCHEMA_VERSION)),
            ("group", rusqlite::types::Value::Text(group.to_string())),
            ("device", rusqlite::types::Value::Text(device.to_string())),
        ] {
            tx.execute("INSERT OR IGNORE INTO meta (name, value) VALUES (?1, ?2)", params![name, value])?;
            let stored: rusqlite::types::Value =
                tx.query_row("SELECT value FROM meta WHERE name = ?1", [name], |row| row.get(0))?;
            if stored != value {
                return Err(incompatible(format!("its {name} is {stored:?}, expected {value:?}")));
            }
        }
        tx.commit()?;
        let clock_last: i64 =
            db.query_row("SELECT coalesce(max(ts), 0) FROM entries", [], |row| row.get(0)).unwrap_or(0);
        let head: i64 = db.query_row("SELECT coalesce(max(seq), 0) FROM entries", [], |row| row.get(0))?;
        let entries: i64 = db.query_row("SELECT count(*) FROM entries", [], |row| row.get(0))?;
        let digest = db
            .query_row("SELECT value FROM meta WHERE name = 'digest'", [], |row| row.get::<_, Vec<u8>>(0))
            .optional()?
            .map_or(Ok([0; 32]), |d| {
                <[u8; 32]>::try_from(d.as_slice()).map_err(|_| incompatible("its digest is not 32 bytes".into()))
            })?;
        Ok(Store {
            db,
            device,
            clock: HybridClock::new(clock_last.max(0) as u64, limits.max_clock_skew_ms),
            digest,
            head: head.max(0) as u64,
            entries: entries.max(0) as u64,
            limits,
        })
    }

    /// Writes (or, with `None`, deletes) `key` locally; returns the change.
    pub(crate) fn put(&mut self, key: &str, value: Option<&[u8]>, wall_ms: u64) -> Result<Change> {
        let mut changes = self.put_many(&[(key, value)], wall_ms)?;
        changes.pop().ok_or_else(|| Error::Worker("a write produced no change".into()))
    }

    /// Writes several keys locally in one transaction (all or none).
    pub(crate) fn put_many(&mut self, items: &[(&str, Option<&[u8]>)], wall_ms: u64) -> Result<Vec<Change>> {
        let origin = self.device;
        for (key, value) in items {
            self.check_sizes(&origin, key, *value)?;
        }
        let mut clock = self.clock.clone();
        let (mut head, mut digest, mut entries) = (self.head, self.digest, self.entries);
        let origin_text = origin.to_string();
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut changes = Vec::with_capacity(items.len());
        for (key, value) in items {
            let timestamp = clock.tick(wall_ms);
            let previous = read_version(&tx, key)?;
            head += 1;
            write_entry(&tx, key, *value, timestamp, &origin_text, head)?;
            digest = updated_digest(digest, previous.as_ref().map(|(t, o)| (*key, *t, o)), (key, timestamp, &origin));
            entries += u64::from(previous.is_none());
            changes.push(Change {
                seq: head,
                key: (*key).to_owned(),
                value: value.map(<[u8]>::to_vec),
                timestamp,
                origin,
            });
        }
        write_digest(&tx, &digest)?;
        tx.commit()?;
        (self.clock, self.head, self.digest, self.entries) = (clock, head, digest, entries);
        Ok(changes)
    }

    /// The stored version of `key`.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Entry>> {
        let row = self
            .db
            .query_row("SELECT value, ts, origin, seq FROM entries WHERE key = ?1", [key], |row| {
                Ok((
                    row.get::<_, Option<Vec<u8>>>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })
            .optional()?;
        row.map(|(value, ts, origin, seq)| {
            Ok(Entry { value, timestamp: ts as u64, origin: parse_origin(&origin)?, seq: seq as u64 })
        })
        .transpose()
    }

    /// Every live key with its value, in key order (tombstones left out).
    pub(crate) fn snapshot(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut statement = self.db.prepare("SELECT key, value FROM entries WHERE value IS NOT NULL ORDER BY key")?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Changes after `since`, in `seq` order, at most `limit` (and the configured
    /// count and byte caps), always at least one when there are any.
    #[cfg(test)]
    pub(crate) fn list_changes(&self, since: u64, limit: u32) -> Result<ChangeBatch> {
        self.list_changes_for(since, limit, None)
    }

    /// [`Store::list_changes`], leaving out the changes whose origin is `skip`
    /// (the asker's own): the page's `through` says how far it covers, so the
    /// asker's checkpoint moves past what was left out. The rows left out are
    /// filtered by SQLite and never loaded.
    pub(crate) fn list_changes_for(&self, since: u64, limit: u32, skip: Option<&DeviceId>) -> Result<ChangeBatch> {
        list_page(&self.db, self.head, &self.limits, (since, limit, skip))
    }

    /// [`Store::apply_page`] with the checkpoint moving to the batch's last `seq`.
    #[cfg(test)]
    pub(crate) fn apply(&mut self, peer: &DeviceId, batch: &[Change], wall_ms: u64) -> Result<Vec<bool>> {
        self.apply_page(peer, batch, 0, wall_ms)
    }

    /// Checks a peer's page (every change, before anything is written), then
    /// writes the changes that win and moves the peer's checkpoint to the page's
    /// last `seq`, or to `through` when that is further (the lister left out
    /// changes after it, [`ChangeBatch::through`]), in one transaction with
    /// statements prepared once per connection. Returns, for each change,
    /// whether it was written. On any error nothing is written and the
    /// checkpoint stays where it was.
    pub(crate) fn apply_page(
        &mut self,
        peer: &DeviceId,
        batch: &[Change],
        through: u64,
        wall_ms: u64,
    ) -> Result<Vec<bool>> {
        if batch.len() > self.limits.max_batch_changes {
            return Err(invalid(
                peer,
                format!("batch of {} changes (limit {})", batch.len(), self.limits.max_batch_changes),
            ));
        }
        let checkpoint = self.checkpoint(peer)?;
        let mut last_seq = checkpoint;
        for change in batch {
            if change.seq <= last_seq {
                return Err(invalid(peer, format!("seq {} does not follow {last_seq}", change.seq)));
            }
            last_seq = change.seq;
            self.check_sizes(&change.origin, &change.key, change.value.as_deref())?;
            self.clock.check(change.timestamp, wall_ms).map_err(|ahead_ms| Error::ClockSkew {
                origin: change.origin.to_string(),
                ahead_ms,
                limit_ms: self.limits.max_clock_skew_ms,
            })?;
        }
        let last_seq = last_seq.max(through);
        if batch.is_empty() && last_seq == checkpoint {
            return Ok(Vec::new());
        }
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (mut head, mut digest, mut entries) = (self.head, self.digest, self.entries);
        // The stored versions of the page's keys, read in a few statements
        // rather than one per change, then kept up to date as the page's
        // changes win, so a key listed twice compares with the first.
        let mut versions = stored_versions(&tx, batch.iter().map(|c| c.key.as_str()))?;
        let mut written = Vec::with_capacity(batch.len());
        let mut rows = Vec::with_capacity(batch.len());
        for change in batch {
            let version = versions
                .get_mut(change.key.as_str())
                .ok_or_else(|| Error::Worker("a key of the page was not looked up".into()))?;
            let wins = version.is_none_or(|(ts, origin)| (change.timestamp, change.origin) > (ts, origin));
            written.push(wins);
            if !wins {
                continue;
            }
            head += 1;
            rows.push((change, head));
            digest = updated_digest(
                digest,
                version.as_ref().map(|(t, o)| (change.key.as_str(), *t, o)),
                (&change.key, change.timestamp, &change.origin),
            );
            entries += u64::from(version.is_none());
            *version = Some((change.timestamp, change.origin));
        }
        write_changes(&tx, &rows)?;
        if digest != self.digest {
            write_digest(&tx, &digest)?;
        }
        tx.prepare_cached("INSERT OR REPLACE INTO checkpoints (peer, seq) VALUES (?1, ?2)")?
            .execute(params![peer.to_string(), last_seq.min(i64::MAX as u64) as i64])?;
        tx.commit()?;
        for change in batch {
            self.clock.observe(change.timestamp);
        }
        (self.head, self.digest, self.entries) = (head, digest, entries);
        Ok(written)
    }

    /// How far this device has pulled from `peer`'s log.
    pub(crate) fn checkpoint(&self, peer: &DeviceId) -> Result<u64> {
        let seq: Option<i64> = self
            .db
            .prepare_cached("SELECT seq FROM checkpoints WHERE peer = ?1")?
            .query_row([peer.to_string()], |row| row.get(0))
            .optional()?;
        Ok(seq.unwrap_or(0).max(0) as u64)
    }

    /// Forgets how far this device pulled from `peer`, so the next pull lists
    /// everything again (the periodic full resync, or a peer whose log restarted).
    pub(crate) fn reset_checkpoint(&mut self, peer: &DeviceId) -> Result<()> {
        self.db.execute("DELETE FROM checkpoints WHERE peer = ?1", [peer.to_string()])?;
        Ok(())
    }

    /// The database itself, for tests that make it fail.
    #[cfg(test)]
    pub(crate) fn db(&self) -> &Connection {
        &self.db
    }

    /// This device's summary of the group.
    pub(crate) fn info(&self) -> NetworkInfo {
        NetworkInfo { device: self.device, head: self.head, entries: self.entries, digest: self.digest }
    }

    fn check_sizes(&self, origin: &DeviceId, key: &str, value: Option<&[u8]>) -> Result<()> {
        if key.is_empty() || key.len() > self.limits.max_key_len {
            return Err(invalid(
                origin,
                format!("key of {} bytes (1 to {} allowed)", key.len(), self.limits.max_key_len),
            ));
        }
        if let Some(value) = value
            && value.len() > self.limits.max_value_len
        {
            return Err(invalid(
                origin,
                format!("value of {} bytes (limit {})", value.len(), self.limits.max_value_len),
            ));
        }
        Ok(())
    }
}

/// A second, read-only connection to a file-backed group's database that lists
/// pages for members' pulls. In WAL mode it reads a snapshot while the store's
/// own connection writes, so serving a pull does not hold up local writes or
/// the applying of another member's page (listing through the store held its
/// lock for as long as the page took to read).
pub(crate) struct Lister {
    db: Connection,
    limits: SyncLimits,
}

impl Lister {
    /// Opens the database at `path`, which [`Store::open`] created, for reading.
    pub(crate) fn open(path: &Path, limits: SyncLimits) -> Result<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Ok(Lister { db: Connection::open_with_flags(path, flags)?, limits })
    }

    /// [`Store::list_changes_for`] from the newest committed state: the page and
    /// its `head` (hence its `through`) come from one snapshot.
    pub(crate) fn list_changes_for(&mut self, since: u64, limit: u32, skip: Option<&DeviceId>) -> Result<ChangeBatch> {
        let tx = self.db.transaction()?;
        let head: i64 =
            tx.prepare_cached("SELECT coalesce(max(seq), 0) FROM entries")?.query_row([], |row| row.get(0))?;
        let batch = list_page(&tx, head.max(0) as u64, &self.limits, (since, limit, skip))?;
        tx.commit()?;
        Ok(batch)
    }
}

fn invalid(origin: &DeviceId, reason: String) -> Error {
    Error::InvalidChange { origin: origin.to_string(), reason }
}

/// Lists a page of `db`'s changes after `since` (see
/// [`Store::list_changes_for`]); `head` is the newest `seq` the page is read at.
fn list_page(
    db: &Connection,
    head: u64,
    limits: &SyncLimits,
    (since, limit, skip): (u64, u32, Option<&DeviceId>),
) -> Result<ChangeBatch> {
    let cap = (limit as usize).clamp(1, limits.max_batch_changes);
    // One more row than the cap tells whether more follow (and where).
    let (since, rows_wanted) = (since.min(i64::MAX as u64) as i64, (cap + 1) as i64);
    let mut statement;
    let mut rows = match skip {
        None => {
            statement = db.prepare_cached(
                "SELECT seq, key, value, ts, origin FROM entries WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            statement.query(params![since, rows_wanted])?
        }
        Some(asker) => {
            statement = db.prepare_cached(
                "SELECT seq, key, value, ts, origin FROM entries WHERE seq > ?1 AND origin != ?3
                 ORDER BY seq LIMIT ?2",
            )?;
            statement.query(params![since, rows_wanted, asker.to_string()])?
        }
    };
    let mut batch = ChangeBatch { changes: Vec::new(), head, more: false, through: head };
    let mut origins = OriginText::default();
    let mut bytes = 0usize;
    while let Some(row) = rows.next()? {
        let seq = row.get::<_, i64>(0)? as u64;
        if batch.changes.len() == cap {
            // Everything before this row is listed or left out.
            (batch.more, batch.through) = (true, seq - 1);
            break;
        }
        let change = Change {
            seq,
            key: row.get(1)?,
            value: row.get(2)?,
            timestamp: row.get::<_, i64>(3)? as u64,
            origin: origins.parse(row.get_ref(4)?.as_str().map_err(rusqlite::Error::from)?)?,
        };
        if !batch.changes.is_empty() && bytes + change.weight() > limits.max_batch_bytes {
            (batch.more, batch.through) = (true, seq - 1);
            break;
        }
        bytes += change.weight();
        batch.changes.push(change);
    }
    Ok(batch)
}

fn read_version(tx: &rusqlite::Transaction<'_>, key: &str) -> Result<Option<(u64, DeviceId)>> {
    let row = tx
        .prepare_cached("SELECT ts, origin FROM entries WHERE key = ?1")?
        .query_row([key], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))
        .optional()?;
    row.map(|(ts, origin)| Ok((ts as u64, parse_origin(&origin)?))).transpose()
}

fn write_entry(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    value: Option<&[u8]>,
    timestamp: u64,
    origin: &str,
    seq: u64,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO entries (key, value, ts, origin, seq) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, ts = excluded.ts,
             origin = excluded.origin, seq = excluded.seq",
    )?
    .execute(params![key, value, timestamp as i64, origin, seq as i64])?;
    Ok(())
}

fn write_digest(tx: &rusqlite::Transaction<'_>, digest: &[u8; 32]) -> Result<()> {
    tx.prepare_cached("INSERT OR REPLACE INTO meta (name, value) VALUES ('digest', ?1)")?.execute([&digest[..]])?;
    Ok(())
}

/// The digest is the XOR of a hash of each key's version, so it can be updated
/// per write (remove the old version's hash, add the new one's) in any order.
fn updated_digest(digest: [u8; 32], old: Option<(&str, u64, &DeviceId)>, new: (&str, u64, &DeviceId)) -> [u8; 32] {
    let mut digest = digest;
    for version in old.into_iter().chain([new]) {
        for (d, h) in digest.iter_mut().zip(version_hash(version)) {
            *d ^= h;
        }
    }
    digest
}

fn version_hash((key, timestamp, origin): (&str, u64, &DeviceId)) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"peers/v1 sync version");
    hash.update((key.len() as u64).to_be_bytes());
    hash.update(key.as_bytes());
    hash.update(timestamp.to_be_bytes());
    hash.update(origin.as_bytes());
    hash.finalize().into()
}
