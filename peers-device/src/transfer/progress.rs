//! Where a transfer stands: the sender's and the receiver's positions over the
//! manifest's chunks, with every chunk checked against its hash.
//!
//! Chunks move in manifest order, one file after the other. A position is a
//! [`Cursor`]; the receiver's cursor is also what it sends back to resume, so bytes
//! already verified are never sent again.

use serde::{Deserialize, Serialize};

use super::TransferError;
use super::manifest::{EntryKind, Hash, Manifest, chunk_hash_of_pieces};

/// A chunk's position: entry index and chunk index within that file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    /// Index into [`Manifest::entries`].
    pub entry: u32,
    /// Chunk within that file.
    pub chunk: u32,
}

impl Cursor {
    /// The start of a transfer.
    pub const START: Cursor = Cursor { entry: 0, chunk: 0 };
}

/// One chunk to send or to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    /// Its position.
    pub at: Cursor,
    /// The file's entry index.
    pub entry: usize,
    /// Byte offset within the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// The hash its bytes must have.
    pub hash: Hash,
}

impl ChunkRef {
    /// Checks `bytes` against this chunk's length and hash.
    pub fn check(&self, bytes: &[u8]) -> Result<(), TransferError> {
        self.check_pieces(&[bytes])
    }

    /// Checks the chunk that `pieces` make up, in order, against its length and hash,
    /// without joining them (the hash of the pieces is the hash of their concatenation).
    pub fn check_pieces<B: AsRef<[u8]>>(&self, pieces: &[B]) -> Result<(), TransferError> {
        let len: u64 = pieces.iter().map(|piece| piece.as_ref().len() as u64).sum();
        if len != self.len || chunk_hash_of_pieces(pieces) != self.hash {
            return Err(TransferError::ChunkMismatch { entry: self.entry, chunk: self.at.chunk });
        }
        Ok(())
    }
}

/// The chunk at `at`, or the first one after it, skipping directories and empty files;
/// `None` when the transfer has no chunk at or after `at`.
fn chunk_at(manifest: &Manifest, at: Cursor) -> Option<ChunkRef> {
    let mut at = at;
    loop {
        let entry = manifest.entries.get(at.entry as usize)?;
        if let EntryKind::File { size, chunks, .. } = &entry.kind
            && let Some(hash) = chunks.get(at.chunk as usize)
        {
            let offset = u64::from(at.chunk) * u64::from(manifest.chunk_size);
            return Some(ChunkRef {
                at,
                entry: at.entry as usize,
                offset,
                len: manifest.chunk_len(*size, at.chunk),
                hash: *hash,
            });
        }
        at = Cursor { entry: at.entry.checked_add(1)?, chunk: 0 };
    }
}

/// The position after `chunk`.
fn after(chunk: &ChunkRef) -> Cursor {
    Cursor { entry: chunk.at.entry, chunk: chunk.at.chunk.saturating_add(1) }
}

/// Checks that `at` lies within the manifest (an entry that exists, a chunk index no
/// larger than its file's count) and returns the bytes before it.
fn bytes_before(manifest: &Manifest, at: Cursor) -> Result<u64, TransferError> {
    let entry = at.entry as usize;
    let out_of_range = || TransferError::Protocol(format!("resume position {at:?} is outside the transfer"));
    if entry > manifest.entries.len() || (entry == manifest.entries.len() && at.chunk != 0) {
        return Err(out_of_range());
    }
    let earlier: u64 = manifest.files().take_while(|(i, _, _)| *i < entry).map(|(_, size, _)| size).sum();
    let within = match manifest.entries.get(entry).map(|e| &e.kind) {
        Some(EntryKind::File { size, chunks, .. }) if at.chunk as usize <= chunks.len() => {
            (u64::from(at.chunk) * u64::from(manifest.chunk_size)).min(*size)
        }
        Some(EntryKind::Dir) | None if at.chunk == 0 => 0,
        _ => return Err(out_of_range()),
    };
    Ok(earlier + within)
}

/// The receiver's side: which chunk comes next, and checking each one.
#[derive(Debug)]
pub struct Reception {
    manifest: Manifest,
    next: Option<ChunkRef>,
    verified: u64,
}

impl Reception {
    /// Starts receiving `manifest` (validated here) from `at`: [`Cursor::START`], or
    /// where an earlier attempt stopped.
    pub fn new(manifest: Manifest, at: Cursor) -> Result<Self, TransferError> {
        manifest.validate()?;
        let verified = bytes_before(&manifest, at)?;
        let next = chunk_at(&manifest, at);
        Ok(Self { manifest, next, verified })
    }

    /// The manifest being received.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The chunk expected next (`None`: complete).
    pub fn expected(&self) -> Option<&ChunkRef> {
        self.next.as_ref()
    }

    /// Where a resumed transfer starts: the first chunk not yet verified.
    pub fn resume_point(&self) -> Cursor {
        self.next.map_or(Cursor { entry: self.manifest.entries.len() as u32, chunk: 0 }, |c| c.at)
    }

    /// Takes the chunk the sender says is at `at`: it must be the expected one, of the
    /// right length and hash. Returns where its bytes go; only then may they be written.
    pub fn accept(&mut self, at: Cursor, bytes: &[u8]) -> Result<ChunkRef, TransferError> {
        self.accept_pieces(at, &[bytes])
    }

    /// [`accept`](Self::accept) for a chunk that arrived in pieces, in order.
    pub fn accept_pieces<B: AsRef<[u8]>>(&mut self, at: Cursor, pieces: &[B]) -> Result<ChunkRef, TransferError> {
        let expected = self.next.ok_or_else(|| TransferError::Protocol("a chunk after the last one".into()))?;
        if expected.at != at {
            return Err(TransferError::Protocol(format!("chunk {at:?} sent, {:?} expected", expected.at)));
        }
        expected.check_pieces(pieces)?;
        self.verified += expected.len;
        self.next = chunk_at(&self.manifest, after(&expected));
        Ok(expected)
    }

    /// Bytes received and verified so far (including those of an earlier attempt).
    pub fn verified_bytes(&self) -> u64 {
        self.verified
    }

    /// Whether every chunk arrived.
    pub fn is_complete(&self) -> bool {
        self.next.is_none()
    }
}

/// The sender's side: the chunks to read and send, from where the receiver asks.
#[derive(Debug)]
pub struct Sending {
    manifest: Manifest,
    next: Option<ChunkRef>,
    sent: u64,
}

impl Sending {
    /// Sends `manifest` from the receiver's resume point `at`.
    pub fn new(manifest: Manifest, at: Cursor) -> Result<Self, TransferError> {
        let sent = bytes_before(&manifest, at)?;
        let next = chunk_at(&manifest, at);
        Ok(Self { manifest, next, sent })
    }

    /// The manifest being sent.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The next chunk to read and send (`None`: all sent). Check the bytes read with
    /// [`ChunkRef::check`]: a file that changed since it was scanned must not go out
    /// under the old hash.
    pub fn next_chunk(&mut self) -> Option<ChunkRef> {
        let chunk = self.next?;
        self.next = chunk_at(&self.manifest, after(&chunk));
        self.sent += chunk.len;
        Some(chunk)
    }

    /// Whether every chunk was handed out.
    pub fn is_done(&self) -> bool {
        self.next.is_none()
    }

    /// Bytes handed out by [`next_chunk`](Self::next_chunk), plus those the receiver
    /// already had.
    pub fn sent_bytes(&self) -> u64 {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::manifest::{MIN_CHUNK_SIZE, ManifestEntry, chunk_count};
    use super::*;
    use crate::transfer::manifest::chunk_hash;

    /// A manifest of real contents: each file's bytes are `i` repeated.
    fn tree(sizes: &[u64]) -> (Manifest, Vec<Vec<u8>>) {
        let cs = MIN_CHUNK_SIZE as usize;
        let mut entries = vec![ManifestEntry { path: "dir".into(), kind: EntryKind::Dir }];
        let mut contents = vec![vec![]];
        for (i, size) in sizes.iter().enumerate() {
            let bytes = vec![i as u8; *size as usize];
            let chunks = bytes.chunks(cs).map(chunk_hash).collect::<Vec<_>>();
            assert_eq!(chunks.len() as u64, chunk_count(*size, MIN_CHUNK_SIZE));
            entries.push(ManifestEntry {
                path: format!("dir/f{i}"),
                kind: EntryKind::File { size: *size, executable: false, chunks },
            });
            contents.push(bytes);
        }
        (Manifest { chunk_size: MIN_CHUNK_SIZE, entries }, contents)
    }

    fn bytes_of<'a>(contents: &'a [Vec<u8>], c: &ChunkRef) -> &'a [u8] {
        &contents[c.entry][c.offset as usize..(c.offset + c.len) as usize]
    }

    /// Sends everything from the receiver's resume point; returns the chunks that moved.
    fn transfer(contents: &[Vec<u8>], sending: &mut Sending, reception: &mut Reception) -> usize {
        let mut moved = 0;
        while let Some(chunk) = sending.next_chunk() {
            let bytes = bytes_of(contents, &chunk);
            chunk.check(bytes).unwrap();
            reception.accept(chunk.at, bytes).unwrap();
            moved += 1;
        }
        moved
    }

    #[test]
    fn a_tree_moves_whole_and_the_receiver_knows_it() {
        let (manifest, contents) = tree(&[0, 40_000, 16_384, 1]);
        let mut reception = Reception::new(manifest.clone(), Cursor::START).unwrap();
        let mut sending = Sending::new(manifest.clone(), reception.resume_point()).unwrap();
        assert_eq!(transfer(&contents, &mut sending, &mut reception), 3 + 1 + 1);
        assert!(reception.is_complete());
        assert_eq!(reception.verified_bytes(), manifest.total_size());
        assert_eq!(sending.sent_bytes(), manifest.total_size());
    }

    #[test]
    fn a_resume_sends_only_what_was_not_verified() {
        let (manifest, contents) = tree(&[40_000, 40_000]);
        let mut first = Reception::new(manifest.clone(), Cursor::START).unwrap();
        let mut sending = Sending::new(manifest.clone(), Cursor::START).unwrap();
        for _ in 0..4 {
            let chunk = sending.next_chunk().unwrap();
            first.accept(chunk.at, bytes_of(&contents, &chunk)).unwrap();
        }
        let at = first.resume_point();
        assert_eq!(at, Cursor { entry: 2, chunk: 1 });
        let mut second = Reception::new(manifest.clone(), at).unwrap();
        assert_eq!(second.verified_bytes(), first.verified_bytes());
        let mut sending = Sending::new(manifest.clone(), at).unwrap();
        assert_eq!(transfer(&contents, &mut sending, &mut second), 2);
        assert!(second.is_complete());
    }

    #[test]
    fn wrong_bytes_order_or_position_are_refused() {
        let (manifest, contents) = tree(&[40_000]);
        let mut reception = Reception::new(manifest.clone(), Cursor::START).unwrap();
        let first = *reception.expected().unwrap();
        let mut tampered = bytes_of(&contents, &first).to_vec();
        tampered[0] ^= 1;
        assert!(matches!(reception.accept(first.at, &tampered), Err(TransferError::ChunkMismatch { .. })));
        assert!(matches!(reception.accept(first.at, &tampered[1..]), Err(TransferError::ChunkMismatch { .. })));
        let later = Cursor { entry: 1, chunk: 1 };
        assert!(matches!(reception.accept(later, bytes_of(&contents, &first)), Err(TransferError::Protocol(_))));
        assert_eq!(reception.verified_bytes(), 0);
        for at in [Cursor { entry: 1, chunk: 4 }, Cursor { entry: 9, chunk: 0 }, Cursor { entry: 0, chunk: 1 }] {
            assert!(Reception::new(manifest.clone(), at).is_err(), "{at:?}");
            assert!(Sending::new(manifest.clone(), at).is_err(), "{at:?}");
        }
    }

    #[test]
    fn a_chunk_in_pieces_checks_as_the_whole_and_any_wrong_piece_fails_it() {
        let (manifest, contents) = tree(&[40_000]);
        let chunk = *Reception::new(manifest, Cursor::START).unwrap().expected().unwrap();
        let whole = bytes_of(&contents, &chunk);
        for cut in [1, 100, 1024, 8191, whole.len() - 1] {
            let (a, b) = whole.split_at(cut);
            chunk.check_pieces(&[a, b]).unwrap();
            chunk.check_pieces(&[&whole[..0], a, &whole[..0], b]).unwrap();
            let mut tampered = b.to_vec();
            tampered[b.len() - 1] ^= 1;
            assert!(matches!(chunk.check_pieces(&[a, &tampered[..]]), Err(TransferError::ChunkMismatch { .. })));
            // The right bytes, but one too few or one too many.
            assert!(chunk.check_pieces(&[a, &b[1..]]).is_err());
            assert!(chunk.check_pieces(&[a, b, &b[..1]]).is_err());
        }
    }

    proptest! {
        #[test]
        fn any_cut_resumes_to_the_same_bytes(
            sizes in proptest::collection::vec(0u64..70_000, 1..5),
            cut in 0usize..20,
        ) {
            let (manifest, contents) = tree(&sizes);
            let mut first = Reception::new(manifest.clone(), Cursor::START).unwrap();
            let mut sending = Sending::new(manifest.clone(), Cursor::START).unwrap();
            let mut moved = 0;
            while moved < cut {
                let Some(chunk) = sending.next_chunk() else { break };
                first.accept(chunk.at, bytes_of(&contents, &chunk)).unwrap();
                moved += 1;
            }
            let mut second = Reception::new(manifest.clone(), first.resume_point()).unwrap();
            let mut rest = Sending::new(manifest.clone(), second.resume_point()).unwrap();
            let total_chunks: u64 = manifest.files().map(|(_, _, c)| c.len() as u64).sum();
            let again = transfer(&contents, &mut rest, &mut second) as u64;
            prop_assert_eq!(moved as u64 + again, total_chunks);
            prop_assert!(second.is_complete());
            prop_assert_eq!(second.verified_bytes(), manifest.total_size());
        }
    }
}
