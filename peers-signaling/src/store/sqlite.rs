//! [`SqliteStore`]: the embedded default store, one SQLite file.
//!
//! ```text
//! messages(seq INTEGER PRIMARY KEY, recipient TEXT, sender TEXT, id TEXT,
//!          kind TEXT, body TEXT, sent_at INTEGER, expires_at INTEGER,
//!          origin TEXT, shadowed INTEGER (1: waits in the recipient's shadow queue))
//! notices (seq INTEGER PRIMARY KEY, device TEXT, notice TEXT (JSON), expires_at INTEGER)
//! sessions(transfer_id TEXT PRIMARY KEY, session TEXT (JSON))
//! ```
//!
//! Device ids are stored as hex, times as unix milliseconds. WAL journal with
//! `synchronous = NORMAL`: a commit survives the process dying (the restart
//! test kills the server); the last commits may be lost if the machine loses
//! power.

use std::path::Path;

use rusqlite::{Connection, params};

use super::{Snapshot, Store};
use crate::error::{Error, Result};
use crate::notices::StoredNotice;
use crate::queue::QueuedMessage;
use crate::sessions::CodeSession;

/// The file name inside the data directory.
pub const DATABASE_FILE: &str = "signaling.sqlite3";

/// Version 2 added `messages.origin` (the sender's address group, for the
/// per-address queue quota), version 3 `messages.shadowed` (a message from a
/// device its recipient does not allow); older files are upgraded on open.
const SCHEMA_VERSION: i64 = 3;

/// The queue and notices in one SQLite database.
#[derive(Debug)]
pub struct SqliteStore {
    connection: Connection,
}

impl SqliteStore {
    /// Opens (or creates) [`DATABASE_FILE`] in `data_dir`, creating the
    /// directory if needed.
    pub fn open_in_dir(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| Error::Store {
            detail: format!("cannot create data directory {}: {e}", data_dir.display()),
        })?;
        Self::open(&data_dir.join(DATABASE_FILE))
    }

    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let connection = Connection::open(path)
            .map_err(|e| Error::Store { detail: format!("cannot open {}: {e}", path.display()) })?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
        match version {
            0 => {
                connection.execute_batch(
                    "BEGIN;
                     CREATE TABLE messages (seq INTEGER PRIMARY KEY, recipient TEXT NOT NULL, sender TEXT NOT NULL,
                         id TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL, sent_at INTEGER NOT NULL,
                         expires_at INTEGER NOT NULL, origin TEXT, shadowed INTEGER NOT NULL DEFAULT 0);
                     CREATE TABLE notices (seq INTEGER PRIMARY KEY, device TEXT NOT NULL, notice TEXT NOT NULL,
                         expires_at INTEGER NOT NULL);
                     CREATE TABLE sessions (transfer_id TEXT PRIMARY KEY, session TEXT NOT NULL);
                     COMMIT;",
                )?;
                connection.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            1 => {
                connection.execute_batch(
                    "BEGIN; ALTER TABLE messages ADD COLUMN origin TEXT;
                     ALTER TABLE messages ADD COLUMN shadowed INTEGER NOT NULL DEFAULT 0; COMMIT;",
                )?;
                connection.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            2 => {
                connection.execute_batch(
                    "BEGIN; ALTER TABLE messages ADD COLUMN shadowed INTEGER NOT NULL DEFAULT 0; COMMIT;",
                )?;
                connection.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            SCHEMA_VERSION => {}
            other => {
                return Err(Error::Store {
                    detail: format!("{} has schema version {other}; this build reads {SCHEMA_VERSION}", path.display()),
                });
            }
        }
        Ok(SqliteStore { connection })
    }

    fn delete(&mut self, table: &str, seqs: &[u64]) -> Result<()> {
        let tx = self.connection.transaction()?;
        {
            let mut statement = tx.prepare_cached(&format!("DELETE FROM {table} WHERE seq = ?1"))?;
            for &seq in seqs {
                statement.execute([to_sql(seq)])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn from_sql(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::Store { detail: format!("unreadable {what} row: {detail}") }
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Snapshot> {
        let mut snapshot = Snapshot::default();
        let mut statement = self.connection.prepare(
            "SELECT seq, recipient, sender, id, kind, body, sent_at, expires_at, origin, shadowed FROM messages
             ORDER BY seq",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, i64>(6)?,
                row.get::<_, i64>(7)?,
                row.get::<_, Option<String>>(8)?,
                row.get::<_, i64>(9)?,
            ))
        })?;
        for row in rows {
            let (seq, to, from, id, kind, body, sent_at, expires_at, origin, shadowed) = row?;
            snapshot.messages.push(QueuedMessage {
                seq: from_sql(seq),
                to: to.parse().map_err(|e| corrupt("message", e))?,
                from: from.parse().map_err(|e| corrupt("message", e))?,
                origin: origin.map(|ip| ip.parse()).transpose().map_err(|e| corrupt("message", e))?,
                id,
                kind: kind.parse().map_err(|e| corrupt("message", e))?,
                body,
                sent_at: from_sql(sent_at),
                expires_at: from_sql(expires_at),
                shadowed: shadowed != 0,
            });
        }
        let mut statement =
            self.connection.prepare("SELECT seq, device, notice, expires_at FROM notices ORDER BY seq")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get::<_, i64>(3)?))
        })?;
        for row in rows {
            let (seq, device, notice, expires_at) = row?;
            snapshot.notices.push(StoredNotice {
                seq: from_sql(seq),
                device: device.parse().map_err(|e| corrupt("notice", e))?,
                notice: serde_json::from_str(&notice).map_err(|e| corrupt("notice", e))?,
                expires_at: from_sql(expires_at),
            });
        }
        let mut statement = self.connection.prepare("SELECT session FROM sessions")?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        for row in rows {
            snapshot.sessions.push(serde_json::from_str(&row?).map_err(|e| corrupt("session", e))?);
        }
        Ok(snapshot)
    }

    fn put_message(&mut self, m: &QueuedMessage) -> Result<()> {
        self.connection
            .prepare_cached(
                "INSERT OR REPLACE INTO messages
                     (seq, recipient, sender, id, kind, body, sent_at, expires_at, origin, shadowed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                to_sql(m.seq),
                m.to.to_string(),
                m.from.to_string(),
                m.id,
                m.kind.as_str(),
                m.body,
                to_sql(m.sent_at),
                to_sql(m.expires_at),
                m.origin.map(|ip| ip.to_string()),
                i64::from(m.shadowed)
            ])?;
        Ok(())
    }

    fn delete_messages(&mut self, seqs: &[u64]) -> Result<()> {
        self.delete("messages", seqs)
    }

    fn put_notice(&mut self, n: &StoredNotice) -> Result<()> {
        let notice = serde_json::to_string(&n.notice).map_err(|e| Error::Store { detail: e.to_string() })?;
        self.connection
            .prepare_cached("INSERT INTO notices (seq, device, notice, expires_at) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![to_sql(n.seq), n.device.to_string(), notice, to_sql(n.expires_at)])?;
        Ok(())
    }

    fn delete_notices(&mut self, seqs: &[u64]) -> Result<()> {
        self.delete("notices", seqs)
    }

    fn put_session(&mut self, session: &CodeSession) -> Result<()> {
        let text = serde_json::to_string(session).map_err(|e| Error::Store { detail: e.to_string() })?;
        self.connection
            .prepare_cached("INSERT OR REPLACE INTO sessions (transfer_id, session) VALUES (?1, ?2)")?
            .execute(params![session.transfer_id, text])?;
        Ok(())
    }

    fn delete_sessions(&mut self, transfer_ids: &[String]) -> Result<()> {
        let tx = self.connection.transaction()?;
        {
            let mut statement = tx.prepare_cached("DELETE FROM sessions WHERE transfer_id = ?1")?;
            for id in transfer_ids {
                statement.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{OutcomeKind, OutcomeNotice, SignalKind};

    fn device(n: u8) -> peers_sdk::DeviceId {
        format!("{n:02x}").repeat(20).parse().unwrap()
    }

    #[test]
    fn survives_reopening_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let message = |seq| QueuedMessage {
            seq,
            to: device(1),
            from: device(2),
            origin: Some(std::net::IpAddr::from([127, 0, 0, 2])),
            id: format!("m{seq}"),
            kind: SignalKind::IceCandidate,
            body: r#"{"candidate":""}"#.into(),
            sent_at: 10,
            expires_at: 20,
            shadowed: seq == 3,
        };
        let notice = StoredNotice {
            seq: 5,
            device: device(2),
            notice: OutcomeNotice { id: "m1".into(), to: device(1).to_string(), outcome: OutcomeKind::Expired, at: 9 },
            expires_at: 99,
        };
        {
            let mut store = SqliteStore::open_in_dir(dir.path()).unwrap();
            for seq in 1..=3 {
                store.put_message(&message(seq)).unwrap();
            }
            store.put_notice(&notice).unwrap();
            store.delete_messages(&[2]).unwrap();
        }
        let mut store = SqliteStore::open_in_dir(dir.path()).unwrap();
        let snapshot = store.load().unwrap();
        assert_eq!(snapshot.messages, vec![message(1), message(3)]);
        assert_eq!(snapshot.notices, vec![notice]);
        store.delete_notices(&[5]).unwrap();
        assert!(store.load().unwrap().notices.is_empty());
    }

    #[test]
    fn upgrades_a_version_1_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE messages (seq INTEGER PRIMARY KEY, recipient TEXT NOT NULL, sender TEXT NOT NULL,
                     id TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL, sent_at INTEGER NOT NULL,
                     expires_at INTEGER NOT NULL);
                 CREATE TABLE notices (seq INTEGER PRIMARY KEY, device TEXT NOT NULL, notice TEXT NOT NULL,
                     expires_at INTEGER NOT NULL);
                 CREATE TABLE sessions (transfer_id TEXT PRIMARY KEY, session TEXT NOT NULL);",
            )
            .unwrap();
            old.execute(
                "INSERT INTO messages VALUES (1, ?1, ?2, 'm1', 'offer', '{}', 10, 20)",
                params![device(1).to_string(), device(2).to_string()],
            )
            .unwrap();
            old.pragma_update(None, "user_version", 1).unwrap();
        }
        let mut store = SqliteStore::open(&path).unwrap();
        let messages = store.load().unwrap().messages;
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].origin, None, "an old message has no known address");
        let mut new = messages[0].clone();
        new.seq = 2;
        new.origin = Some("2001:db8::".parse().unwrap());
        store.put_message(&new).unwrap();
        assert_eq!(store.load().unwrap().messages[1], new);
        // Version 3: a message can move to its recipient's shadow queue.
        new.shadowed = true;
        store.put_message(&new).unwrap();
        assert_eq!(store.load().unwrap().messages[1], new);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }
}
