//! The store's SQL for many rows at once: the stored versions of a page's keys
//! in one statement per [`LOOKUP_KEYS`] keys, and a page's winning changes
//! written by multi-row `INSERT`s. Applying a page of 1,000 changes one
//! statement per row (a lookup and an upsert each) spent much of its time
//! stepping, binding and resetting statements rather than in the B-trees.

use std::collections::HashMap;
use std::sync::LazyLock;

use peers_sdk::DeviceId;
use rusqlite::Transaction;

use super::types::Change;
use crate::error::{Error, Result};

/// Keys looked up per statement (`key IN (?1, …, ?64)`; unused slots are NULL,
/// which matches nothing).
const LOOKUP_KEYS: usize = 64;

/// The most rows one `INSERT` writes: 64 rows of 5 values, 320 parameters,
/// within SQLite's smallest default limit (999). Fewer rows go in statements of
/// 32, 16, … 1 rows, so at most seven statements are ever prepared.
const INSERT_ROWS: usize = 64;

/// A key's stored version: its timestamp and origin.
pub(super) type Version = (u64, DeviceId);

static LOOKUP_SQL: LazyLock<String> = LazyLock::new(|| {
    let slots: Vec<String> = (1..=LOOKUP_KEYS).map(|i| format!("?{i}")).collect();
    format!("SELECT key, ts, origin FROM entries WHERE key IN ({})", slots.join(", "))
});

/// `INSERT_SQL[i]` writes 2^i rows.
static INSERT_SQL: LazyLock<Vec<String>> = LazyLock::new(|| {
    (0..=INSERT_ROWS.trailing_zeros())
        .map(|i| {
            let rows = vec!["(?, ?, ?, ?, ?)"; 1 << i].join(", ");
            format!(
                "INSERT INTO entries (key, value, ts, origin, seq) VALUES {rows}
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, ts = excluded.ts,
                     origin = excluded.origin, seq = excluded.seq"
            )
        })
        .collect()
});

/// The stored version of each of `keys` (`None`: not stored), keyed by the
/// caller's own strings. A key given twice is looked up once.
pub(super) fn stored_versions<'k>(
    tx: &Transaction<'_>,
    keys: impl ExactSizeIterator<Item = &'k str>,
) -> Result<HashMap<&'k str, Option<Version>>> {
    let mut versions: HashMap<&str, Option<Version>> = HashMap::with_capacity(keys.len());
    versions.extend(keys.map(|k| (k, None)));
    let unique: Vec<&str> = versions.keys().copied().collect();
    let mut statement = tx.prepare_cached(&LOOKUP_SQL)?;
    let mut origins = OriginText::default();
    for chunk in unique.chunks(LOOKUP_KEYS) {
        for slot in 0..LOOKUP_KEYS {
            statement.raw_bind_parameter(slot + 1, chunk.get(slot).copied())?;
        }
        let mut rows = statement.raw_query();
        while let Some(row) = rows.next()? {
            let key = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            if let Some(version) = versions.get_mut(key) {
                let origin = origins.parse(row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?)?;
                *version = Some((row.get::<_, i64>(1)? as u64, origin));
            }
        }
    }
    Ok(versions)
}

/// Writes each change with its new `seq` (upserting its key), in order, in as
/// few statements as the sizes of [`INSERT_SQL`] allow.
pub(super) fn write_changes(tx: &Transaction<'_>, rows: &[(&Change, u64)]) -> Result<()> {
    let mut origins = OriginText::default();
    let mut rest = rows;
    while !rest.is_empty() {
        let size = 1usize << rest.len().min(INSERT_ROWS).ilog2();
        let (chunk, tail) = rest.split_at(size);
        let mut statement = tx.prepare_cached(&INSERT_SQL[size.trailing_zeros() as usize])?;
        for (i, (change, seq)) in chunk.iter().enumerate() {
            let slot = i * 5;
            statement.raw_bind_parameter(slot + 1, change.key.as_str())?;
            statement.raw_bind_parameter(slot + 2, change.value.as_deref())?;
            statement.raw_bind_parameter(slot + 3, change.timestamp as i64)?;
            statement.raw_bind_parameter(slot + 4, origins.text(&change.origin))?;
            statement.raw_bind_parameter(slot + 5, *seq as i64)?;
        }
        statement.raw_execute()?;
        rest = tail;
    }
    Ok(())
}

pub(super) fn parse_origin(text: &str) -> Result<DeviceId> {
    text.parse().map_err(|_| Error::IncompatibleDatabase {
        path: "entries".into(),
        reason: format!("origin {text:?} is not a device id"),
    })
}

/// The last origin turned into text or parsed from it: a page's changes mostly
/// share one origin, and formatting or parsing a device id per row was a
/// visible part of applying and listing.
#[derive(Default)]
pub(super) struct OriginText {
    last: Option<(DeviceId, String)>,
}

impl OriginText {
    pub(super) fn text(&mut self, origin: &DeviceId) -> &str {
        if self.last.as_ref().is_none_or(|(id, _)| id != origin) {
            self.last = Some((*origin, origin.to_string()));
        }
        self.last.as_ref().map_or("", |(_, text)| text.as_str())
    }

    pub(super) fn parse(&mut self, text: &str) -> Result<DeviceId> {
        match &self.last {
            Some((id, last)) if last == text => Ok(*id),
            _ => {
                let id = parse_origin(text)?;
                self.last = Some((id, text.to_owned()));
                Ok(id)
            }
        }
    }
}
