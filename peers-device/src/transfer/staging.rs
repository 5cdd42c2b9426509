//! The receiver's staging directory: verified chunks written in place, the position
//! after the last one saved, and the entries moved into place once all are there.
//!
//! The `resume` file holds two positions (each an entry and a chunk index, `u32`
//! big-endian): bytes 0..8, the first chunk not written yet, rewritten in place after
//! every chunk and never synced; bytes 8..16, the first chunk not known to be on the
//! disk, written at a *checkpoint* (every [`CHECKPOINT_BYTES`], and when the transfer
//! pauses) after the data before it was synced, and synced itself. A reopened staging
//! trusts the synced position and reads back the chunks between the two, checking
//! each against its hash: after a receiver killed mid-way they are all there (the page
//! cache kept them), after a crash of the whole machine the first one that did not
//! reach the disk ends the check, and the transfer resumes from it. An 8-byte file (a
//! receiver before checkpoints) reads as a written position with nothing synced.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::TransferError;
use super::exchange::Received;
use super::manifest::{EntryKind, Hash, Manifest};
use super::progress::{Cursor, Reception};
use crate::Result;

/// Bytes already verified in `out_dir` for `manifest`: what an earlier offer of the
/// same files (same digest) left in its staging directory, or `None` when there is no
/// saved position. An application may accept such an offer without asking again: the
/// person accepted exactly these files into this directory before.
/// (The written position, read without checking the chunks again: at most what a
/// reopen keeps.)
pub fn staged_bytes(out_dir: &Path, manifest: &Manifest) -> Option<u64> {
    let dir = out_dir.join(Staging::dir_name(&manifest.digest()));
    let saved = decode_resume(&fs::read(dir.join("resume")).ok()?)?;
    Reception::new(manifest.clone(), saved.written).ok().map(|reception| reception.verified_bytes())
}

/// Bytes written between two checkpoints: at most this much is read back and hashed
/// again when a staging is reopened, and one `fdatasync` of the data and one of the
/// `resume` file are paid per this much received.
pub(super) const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;

/// The two positions of the `resume` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Saved {
    /// The first chunk not written yet.
    written: Cursor,
    /// The first chunk not known to be on the disk.
    synced: Cursor,
}

/// The receiver's staging directory for one manifest.
pub(super) struct Staging {
    out_dir: PathBuf,
    dir: PathBuf,
    pub(super) reception: Reception,
    open: Option<(usize, File)>,
    /// The `resume` file, open once the first chunk is stored.
    resume: Option<File>,
    /// The position of the last checkpoint (every chunk before it is on the disk).
    synced: Cursor,
    /// Bytes written since that checkpoint.
    unsynced_bytes: u64,
    /// Bytes between checkpoints ([`CHECKPOINT_BYTES`]; smaller in tests).
    checkpoint_bytes: u64,
}

impl Staging {
    /// The staging directory's name for a manifest digest.
    pub(super) fn dir_name(digest: &Hash) -> String {
        let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
        format!(".peers-transfer-{hex}")
    }

    /// Opens (or creates) the staging directory of `manifest` under `out_dir`, with
    /// its directories and empty files, resuming from its saved position; checks that
    /// the disk has room for the rest.
    pub(super) fn open(out_dir: &Path, manifest: Manifest) -> Result<Self> {
        let io = |what: String| move |source| TransferError::Io { what, source };
        let dir = out_dir.join(Self::dir_name(&manifest.digest()));
        fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
        let saved = fs::read(dir.join("resume")).ok().and_then(|bytes| decode_resume(&bytes));
        let saved = saved.unwrap_or(Saved { written: Cursor::START, synced: Cursor::START });
        // A saved position that does not fit the manifest (a damaged file) starts over.
        let mut reception = match Reception::new(manifest.clone(), saved.synced) {
            Ok(reception) => reception,
            Err(_) => Reception::new(manifest, Cursor::START)?,
        };
        let needed = reception.manifest().total_size().saturating_sub(reception.verified_bytes());
        if let Some(available) = available_space(&dir)
            && available < needed
        {
            return Err(TransferError::NoSpace { needed, available }.into());
        }
        for entry in &reception.manifest().entries {
            let path = dir.join("data").join(&entry.path);
            match &entry.kind {
                EntryKind::Dir => fs::create_dir_all(&path).map_err(io(format!("create {}", path.display())))?,
                EntryKind::File { .. } => {
                    if let Some(parent) = path.parent() {
                        fs::create_dir_all(parent).map_err(io(format!("create {}", parent.display())))?;
                    }
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .map_err(io(format!("create {}", path.display())))?;
                }
            }
        }
        let synced = reception.resume_point();
        let data = dir.join("data");
        let checked = check_written(&data, &mut reception, saved.written);
        tracing::debug!(?synced, written = ?saved.written, checked, "reopened a staging");
        Ok(Self {
            out_dir: out_dir.to_path_buf(),
            dir,
            reception,
            open: None,
            resume: None,
            synced,
            unsynced_bytes: checked,
            checkpoint_bytes: CHECKPOINT_BYTES,
        })
    }

    /// Checks the chunk at `at`, in `pieces`, against the manifest; only then writes it
    /// at its place (one vectored write of all its pieces) and saves the position after it.
    pub(super) fn store(&mut self, at: Cursor, pieces: &[Bytes]) -> std::result::Result<(), TransferError> {
        let chunk = self.reception.accept_pieces(at, pieces)?;
        let entry = self
            .reception
            .manifest()
            .entries
            .get(chunk.entry)
            .ok_or_else(|| TransferError::Protocol("no such entry".into()))?;
        let path = self.dir.join("data").join(&entry.path);
        let io = |e| TransferError::Io { what: format!("write {}", path.display()), source: e };
        if self.open.as_ref().is_some_and(|(i, _)| *i != chunk.entry)
            && let Some((_, previous)) = self.open.take()
        {
            previous.sync_all().map_err(io)?;
        }
        let file = match &mut self.open {
            Some((_, file)) => &*file,
            open => &open.insert((chunk.entry, OpenOptions::new().write(true).open(&path).map_err(io)?)).1,
        };
        let offset = write_pieces_at(file, pieces, chunk.offset).map_err(io)?;
        start_writeback(file, chunk.offset, offset - chunk.offset);
        self.unsynced_bytes += chunk.len;
        if self.unsynced_bytes >= self.checkpoint_bytes {
            file.sync_data().map_err(io)?;
            return self.checkpoint();
        }
        self.save_position().map(drop)
    }

    /// Saves the position after the last verified chunk as synced too, and syncs the
    /// `resume` file: the caller has synced every chunk before it.
    fn checkpoint(&mut self) -> std::result::Result<(), TransferError> {
        self.synced = self.reception.resume_point();
        self.unsynced_bytes = 0;
        let path = self.dir.join("resume");
        let resume = self.save_position()?;
        resume.sync_data().map_err(|e| TransferError::Io { what: format!("sync {}", path.display()), source: e })
    }

    /// Writes the position after the last verified chunk, and the last checkpoint's,
    /// into the `resume` file, in place: its 16 bytes at offset 0, one write within one
    /// page, so a receiver that dies leaves the old positions or the new ones. (Writing
    /// a temporary file and renaming it over `resume` cost about 2 ms per chunk on ext4,
    /// which flushes a file renamed over another: the receiver's largest cost per chunk.)
    /// Returns the `resume` file.
    fn save_position(&mut self) -> std::result::Result<&File, TransferError> {
        let path = self.dir.join("resume");
        let io = |e| TransferError::Io { what: format!("write {}", path.display()), source: e };
        let file = match self.resume.take() {
            Some(file) => file,
            None => {
                let file =
                    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
                file.set_len(RESUME_LEN as u64).map_err(io)?;
                file
            }
        };
        let file = self.resume.insert(file);
        let saved = Saved { written: self.reception.resume_point(), synced: self.synced };
        write_all_at(file, &encode_resume(saved), 0).map_err(io)?;
        Ok(file)
    }

    /// Syncs the file being written and checkpoints: what was verified stays for the
    /// next offer, even across a crash of the machine.
    pub(super) fn pause(mut self) -> std::result::Result<(), String> {
        let Some((_, file)) = self.open.take() else { return Ok(()) };
        file.sync_all().map_err(|e| format!("sync: {e}"))?;
        self.checkpoint().map_err(|e| e.to_string())
    }

    /// Syncs, sets modes, moves every top-level entry into place under a free name and
    /// removes the staging directory.
    pub(super) fn finish(mut self) -> std::result::Result<Received, String> {
        if let Some((_, file)) = self.open.take() {
            file.sync_all().map_err(|e| e.to_string())?;
        }
        let manifest = self.reception.manifest();
        let data = self.dir.join("data");
        set_modes(&data, manifest);
        let mut stored = vec![];
        for entry in manifest.entries.iter().filter(|e| !e.path.contains('/')) {
            let name = super::manifest::free_name(&entry.path, |p| self.out_dir.join(p).symlink_metadata().is_ok())
                .map_err(|e| e.to_string())?;
            fs::rename(data.join(&entry.path), self.out_dir.join(&name)).map_err(|e| format!("move {name}: {e}"))?;
            stored.push(name);
        }
        let bytes = manifest.total_size();
        fs::remove_dir_all(&self.dir).map_err(|e| format!("remove {}: {e}", self.dir.display()))?;
        Ok(Received { stored, bytes })
    }
}

/// The `resume` file's length.
const RESUME_LEN: usize = 16;

fn encode_resume(saved: Saved) -> [u8; RESUME_LEN] {
    let mut out = [0u8; RESUME_LEN];
    for (i, at) in [saved.written, saved.synced].into_iter().enumerate() {
        out[i * 8..i * 8 + 4].copy_from_slice(&at.entry.to_be_bytes());
        out[i * 8 + 4..i * 8 + 8].copy_from_slice(&at.chunk.to_be_bytes());
    }
    out
}

/// The positions of a `resume` file of 16 bytes, or of 8 (written, nothing synced); a
/// synced position after the written one (a damaged file) counts as nothing synced.
fn decode_resume(bytes: &[u8]) -> Option<Saved> {
    let cursor = |at: usize| -> Option<Cursor> {
        let entry = u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
        let chunk = u32::from_be_bytes(bytes.get(at + 4..at + 8)?.try_into().ok()?);
        Some(Cursor { entry, chunk })
    };
    let written = cursor(0)?;
    let synced = match bytes.len() {
        8 => Cursor::START,
        RESUME_LEN => cursor(8).filter(|synced| *synced <= written).unwrap_or(Cursor::START),
        _ => return None,
    };
    Some(Saved { written, synced })
}

/// Reads back the chunks `reception` expects before `written` from the files under
/// `data`, accepting each that matches its hash, and stops at the first that does not
/// (or cannot be read); returns the bytes accepted.
fn check_written(data: &Path, reception: &mut Reception, written: Cursor) -> u64 {
    let start = reception.verified_bytes();
    let mut buffer = Vec::new();
    let mut open: Option<(usize, File)> = None;
    while let Some(chunk) = reception.expected().copied().filter(|chunk| chunk.at < written) {
        if open.as_ref().is_none_or(|(entry, _)| *entry != chunk.entry) {
            let Some(entry) = reception.manifest().entries.get(chunk.entry) else { break };
            match File::open(data.join(&entry.path)) {
                Ok(file) => open = Some((chunk.entry, file)),
                Err(_) => break,
            }
        }
        let Some((_, file)) = &open else { break };
        // At most MAX_CHUNK_SIZE: the manifest was validated.
        buffer.resize(chunk.len as usize, 0);
        if read_exact_at(file, &mut buffer, chunk.offset).is_err() || reception.accept(chunk.at, &buffer).is_err() {
            break;
        }
    }
    reception.verified_bytes() - start
}

#[cfg(unix)]
fn set_modes(data: &Path, manifest: &Manifest) {
    use std::os::unix::fs::PermissionsExt;
    for entry in &manifest.entries {
        if let EntryKind::File { executable: true, .. } = entry.kind {
            let path = data.join(&entry.path);
            if let Ok(meta) = fs::metadata(&path) {
                let mut permissions = meta.permissions();
                let mode = permissions.mode() & 0o777;
                // Execute wherever read is allowed: 0644 becomes 0755.
                permissions.set_mode(mode | ((mode & 0o444) >> 2));
                let _ = fs::set_permissions(&path, permissions);
            }
        }
    }
}

#[cfg(not(unix))]
fn set_modes(_: &Path, _: &Manifest) {}

/// Bytes free for an unprivileged user on the file system holding `dir`.
#[cfg(unix)]
fn available_space(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(not(unix))]
fn available_space(_: &Path) -> Option<u64> {
    None
}

/// Starts writing `len` bytes at `offset` of `file` to the disk without waiting for
/// it, so the data goes to the disk while the next chunks arrive and the final
/// `sync_all` finds little left to write (it took 0.3 to 0.4 s for 1 GiB at the end of
/// a transfer). A hint: a failure changes nothing but the timing. On Linux,
/// `POSIX_FADV_DONTNEED` starts the writeback of the range's dirty pages (and drops the
/// ones already clean, so a large transfer does not fill the page cache).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn start_writeback(file: &File, offset: u64, len: u64) {
    // `None` would mean "to the end of the file".
    let Some(len) = std::num::NonZeroU64::new(len) else { return };
    if let Err(err) = rustix::fs::fadvise(file, offset, Some(len), rustix::fs::Advice::DontNeed) {
        tracing::debug!(%err, "could not start writing a chunk to the disk");
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn start_writeback(_: &File, _: u64, _: u64) {}

/// Writes `pieces` one after another from `offset` of `file`, in one `pwritev` (more
/// only after a short write, or beyond `IOV_MAX` pieces); returns the offset after them.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn write_pieces_at(file: &File, pieces: &[Bytes], mut offset: u64) -> std::io::Result<u64> {
    use std::io::IoSlice;
    /// Linux's `IOV_MAX`: more slices in one call fail with `EINVAL`.
    const IOV_MAX: usize = 1024;
    let mut slices: Vec<IoSlice<'_>> = pieces.iter().map(|piece| IoSlice::new(piece)).collect();
    let mut rest = &mut slices[..];
    IoSlice::advance_slices(&mut rest, 0);
    while !rest.is_empty() {
        let batch = rest.get(..rest.len().min(IOV_MAX)).unwrap_or_default();
        let written = match rustix::io::pwritev(file, batch, offset) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => written,
            Err(rustix::io::Errno::INTR) => continue,
            Err(errno) => return Err(errno.into()),
        };
        offset += written as u64;
        IoSlice::advance_slices(&mut rest, written);
    }
    Ok(offset)
}

/// Writes `pieces` one after another from `offset` of `file`; returns the offset after them.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn write_pieces_at(file: &File, pieces: &[Bytes], mut offset: u64) -> std::io::Result<u64> {
    for piece in pieces {
        write_all_at(file, piece, offset)?;
        offset += piece.len() as u64;
    }
    Ok(offset)
}

/// Reads `buffer.len()` bytes at `offset` of `file`.
#[cfg(unix)]
fn read_exact_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
}

#[cfg(not(unix))]
fn read_exact_at(mut file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buffer)
}

/// Writes all of `bytes` at `offset` of `file` (no seek: positioned writes).
#[cfg(unix)]
fn write_all_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(not(unix))]
fn write_all_at(mut file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::manifest::{MIN_CHUNK_SIZE, ManifestEntry, chunk_hash};
    use crate::transfer::progress::{ChunkRef, Sending};

    const CHUNK: usize = MIN_CHUNK_SIZE as usize;

    fn data() -> Vec<u8> {
        (0..CHUNK * 3 + CHUNK / 2).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn manifest_of(data: &[u8]) -> Manifest {
        let chunks = data.chunks(CHUNK).map(chunk_hash).collect();
        let kind = EntryKind::File { size: data.len() as u64, executable: false, chunks };
        Manifest { chunk_size: MIN_CHUNK_SIZE, entries: vec![ManifestEntry { path: "f.bin".into(), kind }] }
    }

    /// The chunk's bytes in two pieces, as a stream may cut them.
    fn pieces(data: &[u8], chunk: &ChunkRef) -> Vec<Bytes> {
        let bytes = &data[chunk.offset as usize..(chunk.offset + chunk.len) as usize];
        let (a, b) = bytes.split_at(bytes.len() / 3);
        vec![Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)]
    }

    fn resume_file(out: &Path, manifest: &Manifest) -> PathBuf {
        out.join(Staging::dir_name(&manifest.digest())).join("resume")
    }

    fn saved(out: &Path, manifest: &Manifest) -> Saved {
        let bytes = fs::read(resume_file(out, manifest)).unwrap();
        assert_eq!(bytes.len(), RESUME_LEN);
        decode_resume(&bytes).unwrap()
    }

    fn at(chunk: u32) -> Cursor {
        Cursor { entry: 0, chunk }
    }

    /// Receives the first `count` chunks of `data` into a fresh staging under `out`.
    fn receive_some(out: &Path, data: &[u8], count: usize, checkpoint_bytes: u64) -> Staging {
        let manifest = manifest_of(data);
        let mut staging = Staging::open(out, manifest.clone()).unwrap();
        staging.checkpoint_bytes = checkpoint_bytes;
        let mut order = Sending::new(manifest, Cursor::START).unwrap();
        for _ in 0..count {
            let chunk = order.next_chunk().unwrap();
            staging.store(chunk.at, &pieces(data, &chunk)).unwrap();
        }
        staging
    }

    /// Receives the rest of `data` into `staging`, from its resume point, and checks
    /// what lands in `out`.
    fn receive_rest(out: &Path, data: &[u8], mut staging: Staging) {
        let mut order = Sending::new(staging.reception.manifest().clone(), staging.reception.resume_point()).unwrap();
        while let Some(chunk) = order.next_chunk() {
            staging.store(chunk.at, &pieces(data, &chunk)).unwrap();
        }
        staging.finish().unwrap();
        assert_eq!(fs::read(out.join("f.bin")).unwrap(), data);
    }

    #[test]
    fn each_chunk_saves_its_position_in_place_and_a_reopen_resumes_after_it() {
        let (out, data) = (tempfile::tempdir().unwrap(), data());
        let manifest = manifest_of(&data);
        let mut staging = Staging::open(out.path(), manifest.clone()).unwrap();
        let mut order = Sending::new(manifest.clone(), Cursor::START).unwrap();
        // A position an earlier receiver left, longer than one: overwritten, cut to 16 bytes.
        fs::write(resume_file(out.path(), &manifest), [0xff; 24]).unwrap();
        for _ in 0..2 {
            let chunk = order.next_chunk().unwrap();
            staging.store(chunk.at, &pieces(&data, &chunk)).unwrap();
            let written = staging.reception.resume_point();
            assert_eq!(saved(out.path(), &manifest), Saved { written, synced: Cursor::START });
        }
        drop(staging);
        assert_eq!(staged_bytes(out.path(), &manifest), Some(2 * CHUNK as u64));

        let mut staging = Staging::open(out.path(), manifest.clone()).unwrap();
        assert_eq!(staging.reception.resume_point(), Cursor { entry: 0, chunk: 2 });
        let mut order = Sending::new(manifest.clone(), staging.reception.resume_point()).unwrap();
        // A chunk that does not match is not written and does not move the position.
        let chunk = order.next_chunk().unwrap();
        let mut bad = pieces(&data, &chunk);
        bad[0] = Bytes::from(vec![0; bad[0].len()]);
        assert!(staging.store(chunk.at, &bad).is_err());
        assert_eq!(saved(out.path(), &manifest).written, at(2));
        staging.store(chunk.at, &pieces(&data, &chunk)).unwrap();
        let last = order.next_chunk().unwrap();
        staging.store(last.at, &pieces(&data, &last)).unwrap();
        assert!(order.next_chunk().is_none());
        let received = staging.finish().unwrap();
        assert_eq!(received.stored, ["f.bin"]);
        assert_eq!(fs::read(out.path().join("f.bin")).unwrap(), data);
        assert!(!out.path().join(Staging::dir_name(&manifest.digest())).exists());
    }

    #[test]
    fn a_chunk_in_more_pieces_than_one_vectored_write_takes_is_stored_whole() {
        let (out, data) = (tempfile::tempdir().unwrap(), data());
        let manifest = manifest_of(&data);
        let mut staging = Staging::open(out.path(), manifest.clone()).unwrap();
        let mut order = Sending::new(manifest.clone(), Cursor::START).unwrap();
        while let Some(chunk) = order.next_chunk() {
            let bytes = &data[chunk.offset as usize..(chunk.offset + chunk.len) as usize];
            // 16-byte pieces (thousands per chunk) and an empty one among them.
            let mut pieces: Vec<Bytes> = bytes.chunks(16).map(Bytes::copy_from_slice).collect();
            pieces.insert(1, Bytes::new());
            staging.store(chunk.at, &pieces).unwrap();
        }
        staging.finish().unwrap();
        assert_eq!(fs::read(out.path().join("f.bin")).unwrap(), data);
    }

    #[test]
    fn a_reopen_reads_back_the_unsynced_chunks_and_resumes_at_the_first_the_disk_lost() {
        let (out, data) = (tempfile::tempdir().unwrap(), data());
        let manifest = manifest_of(&data);
        // Three chunks written, no checkpoint yet: the receiver is killed.
        drop(receive_some(out.path(), &data, 3, CHECKPOINT_BYTES));
        assert_eq!(saved(out.path(), &manifest), Saved { written: at(3), synced: Cursor::START });
        // A crash of the machine lost the second chunk's data (zeros where it was).
        let file = out.path().join(Staging::dir_name(&manifest.digest())).join("data/f.bin");
        write_all_at(&OpenOptions::new().write(true).open(&file).unwrap(), &[0; 100], CHUNK as u64 + 7).unwrap();
        let staging = Staging::open(out.path(), manifest.clone()).unwrap();
        assert_eq!(staging.reception.resume_point(), at(1), "the lost chunk and those after it are asked again");
        assert_eq!(staging.reception.verified_bytes(), CHUNK as u64);
        receive_rest(out.path(), &data, staging);
    }

    #[test]
    fn a_reopen_after_a_killed_receiver_keeps_every_chunk_written() {
        let (out, data) = (tempfile::tempdir().unwrap(), data());
        let manifest = manifest_of(&data);
        drop(receive_some(out.path(), &data, 3, CHECKPOINT_BYTES));
        let staging = Staging::open(out.path(), manifest.clone()).unwrap();
        assert_eq!(staging.reception.resume_point(), at(3));
        receive_rest(out.path(), &data, staging);
    }

    #[test]
    fn checkpoints_sync_the_position_every_so_many_bytes_and_on_pause() {
        let (out, data) = (tempfile::tempdir().unwrap(), data());
        let manifest = manifest_of(&data);
        // A checkpoint every two chunks: after chunk 2, not after chunk 3.
        let staging = receive_some(out.path(), &data, 3, 2 * CHUNK as u64);
        assert_eq!(saved(out.path(), &manifest), Saved { written: at(3), synced: at(2) });
        staging.pause().unwrap();
        assert_eq!(saved(out.path(), &manifest), Saved { written: at(3), synced: at(3) });
        // What a checkpoint covers is not read back: only the chunks after it are.
        let file = out.path().join(Staging::dir_name(&manifest.digest())).join("data/f.bin");
        write_all_at(&OpenOptions::new().write(true).open(&file).unwrap(), &[0; 10], 0).unwrap();
        let staging = Staging::open(out.path(), manifest.clone()).unwrap();
        assert_eq!(staging.reception.resume_point(), at(3));
    }

    #[test]
    fn a_position_of_an_earlier_receiver_or_a_damaged_one_is_read_safely() {
        // 8 bytes (before checkpoints): written, nothing synced.
        assert_eq!(decode_resume(&[0, 0, 0, 0, 0, 0, 0, 3]), Some(Saved { written: at(3), synced: Cursor::START }));
        // A synced position after the written one: nothing synced.
        let damaged = encode_resume(Saved { written: at(1), synced: at(2) });
        assert_eq!(decode_resume(&damaged), Some(Saved { written: at(1), synced: Cursor::START }));
        assert_eq!(decode_resume(&[0; 12]), None);
        let saved = Saved { written: Cursor { entry: 2, chunk: 5 }, synced: Cursor { entry: 1, chunk: 9 } };
        assert_eq!(decode_resume(&encode_resume(saved)), Some(saved));
    }
}
