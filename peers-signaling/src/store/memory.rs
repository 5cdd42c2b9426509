//! [`MemoryStore`]: a [`Store`] that keeps everything in the process.

use std::collections::BTreeMap;

use super::{Snapshot, Store};
use crate::error::Result;
use crate::notices::StoredNotice;
use crate::queue::QueuedMessage;
use crate::sessions::CodeSession;

/// Keeps the queue and notices in memory; nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    messages: BTreeMap<u64, QueuedMessage>,
    notices: BTreeMap<u64, StoredNotice>,
    sessions: BTreeMap<String, CodeSession>,
}

impl Store for MemoryStore {
    fn load(&mut self) -> Result<Snapshot> {
        Ok(Snapshot {
            messages: self.messages.values().cloned().collect(),
            notices: self.notices.values().cloned().collect(),
            sessions: self.sessions.values().cloned().collect(),
        })
    }

    fn put_message(&mut self, message: &QueuedMessage) -> Result<()> {
        self.messages.insert(message.seq, message.clone());
        Ok(())
    }

    fn delete_messages(&mut self, seqs: &[u64]) -> Result<()> {
        for seq in seqs {
            self.messages.remove(seq);
        }
        Ok(())
    }

    fn put_notice(&mut self, notice: &StoredNotice) -> Result<()> {
        self.notices.insert(notice.seq, notice.clone());
        Ok(())
    }

    fn delete_notices(&mut self, seqs: &[u64]) -> Result<()> {
        for seq in seqs {
            self.notices.remove(seq);
        }
        Ok(())
    }

    fn put_session(&mut self, session: &CodeSession) -> Result<()> {
        self.sessions.insert(session.transfer_id.clone(), session.clone());
        Ok(())
    }

    fn delete_sessions(&mut self, transfer_ids: &[String]) -> Result<()> {
        for id in transfer_ids {
            self.sessions.remove(id);
        }
        Ok(())
    }
}
