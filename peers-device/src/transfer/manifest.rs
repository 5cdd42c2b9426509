//! The manifest: what a transfer carries, with a BLAKE3 hash per chunk.
//!
//! The sender sends it first; the receiver validates it completely (names, counts,
//! sizes) before it asks the user or touches the disk, and checks every chunk against
//! it as the bytes arrive.
//!
//! - Paths are relative, `/`-separated, and never leave the target directory: no empty,
//!   `.` or `..` component, no leading `/`, no `\`, NUL or control character
//!   ([`validate_path`]).
//! - A file's hash is BLAKE3 over its chunk hashes in order; the manifest's digest
//!   ([`Manifest::digest`]) covers every field, so a resumed transfer can check it is
//!   the same one.
//! - Only the executable bit of a mode travels; the receiver writes `0644` or `0755`
//!   (less its umask), never set-id bits.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::TransferError;

/// The chunk size a sender uses unless told otherwise.
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;
/// The smallest chunk size a receiver accepts.
pub const MIN_CHUNK_SIZE: u32 = 16 * 1024;
/// The largest chunk size a receiver accepts.
pub const MAX_CHUNK_SIZE: u32 = 4 * 1024 * 1024;
/// Most entries (files and directories) in one transfer.
pub const MAX_ENTRIES: usize = 100_000;
/// Most chunk hashes in one manifest (1 TiB at the default chunk size; 32 MiB of hashes).
pub const MAX_CHUNKS: u64 = 1 << 20;
/// Longest path, in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest path component, in bytes.
pub const MAX_COMPONENT_LEN: usize = 255;

/// A chunk's or a file's BLAKE3 hash.
pub type Hash = [u8; 32];

/// What one entry is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A directory (listed so that empty ones arrive too).
    Dir,
    /// A regular file and its chunk hashes.
    File {
        /// Size in bytes.
        size: u64,
        /// Whether the owner may execute it.
        executable: bool,
        /// One BLAKE3 hash per chunk, in order; the last chunk may be short.
        #[serde(with = "hash_list")]
        chunks: Vec<Hash>,
    },
}

/// One file or directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Relative, `/`-separated path (see [`validate_path`]).
    pub path: String,
    /// File or directory.
    pub kind: EntryKind,
}

/// Everything a transfer carries, in the order the bytes are sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Bytes per chunk (the last chunk of a file may be shorter).
    pub chunk_size: u32,
    /// The entries, files in the order their bytes come.
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// Checks every bound and rule; a manifest from the network must pass before use.
    pub fn validate(&self) -> Result<(), TransferError> {
        let bad = |reason: String| Err(TransferError::BadManifest(reason));
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return bad(format!("chunk size {} outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}", self.chunk_size));
        }
        if self.entries.len() > MAX_ENTRIES {
            return bad(format!("{} entries, at most {MAX_ENTRIES}", self.entries.len()));
        }
        let mut paths = HashSet::with_capacity(self.entries.len());
        let mut parents = HashSet::new();
        let (mut chunks, mut total) = (0u64, 0u64);
        for entry in &self.entries {
            validate_path(&entry.path)?;
            if !paths.insert(entry.path.as_str()) {
                return bad(format!("{:?} appears twice", entry.path));
            }
            let mut prefix = entry.path.as_str();
            while let Some((parent, _)) = prefix.rsplit_once('/') {
                parents.insert(parent);
                prefix = parent;
            }
            if let EntryKind::File { size, chunks: hashes, .. } = &entry.kind {
                if hashes.len() as u64 != chunk_count(*size, self.chunk_size) {
                    return bad(format!("{:?}: {} chunk hashes for {size} bytes", entry.path, hashes.len()));
                }
                chunks += hashes.len() as u64;
                total = total.checked_add(*size).ok_or_else(|| TransferError::BadManifest("sizes overflow".into()))?;
            }
        }
        if chunks > MAX_CHUNKS {
            return bad(format!("{chunks} chunks, at most {MAX_CHUNKS}"));
        }
        for entry in &self.entries {
            if matches!(entry.kind, EntryKind::File { .. }) && parents.contains(entry.path.as_str()) {
                return bad(format!("{:?} is both a file and a directory", entry.path));
            }
        }
        Ok(())
    }

    /// Bytes of file content in the transfer.
    pub fn total_size(&self) -> u64 {
        self.files().map(|(_, size, _)| size).sum()
    }

    /// Number of files (directories not counted).
    pub fn file_count(&self) -> usize {
        self.files().count()
    }

    /// Each file's index, size and chunk hashes.
    pub fn files(&self) -> impl Iterator<Item = (usize, u64, &[Hash])> {
        self.entries.iter().enumerate().filter_map(|(i, e)| match &e.kind {
            EntryKind::File { size, chunks, .. } => Some((i, *size, chunks.as_slice())),
            EntryKind::Dir => None,
        })
    }

    /// The length of chunk `chunk` of a file of `size` bytes.
    pub fn chunk_len(&self, size: u64, chunk: u32) -> u64 {
        let start = u64::from(chunk) * u64::from(self.chunk_size);
        size.saturating_sub(start).min(u64::from(self.chunk_size))
    }

    /// BLAKE3 over every field: names a transfer for a resume.
    pub fn digest(&self) -> Hash {
        let mut hasher = blake3::Hasher::new_derive_key("peers/v1 transfer manifest");
        hasher.update(&self.chunk_size.to_be_bytes());
        hasher.update(&(self.entries.len() as u64).to_be_bytes());
        for entry in &self.entries {
            hasher.update(&(entry.path.len() as u64).to_be_bytes());
            hasher.update(entry.path.as_bytes());
            match &entry.kind {
                EntryKind::Dir => {
                    hasher.update(&[0]);
                }
                EntryKind::File { size, executable, chunks } => {
                    hasher.update(&[1, u8::from(*executable)]);
                    hasher.update(&size.to_be_bytes());
                    hasher.update(&file_hash(chunks));
                }
            }
        }
        *hasher.finalize().as_bytes()
    }
}

/// Chunks of `chunk_size` in a file of `size` bytes (0 for an empty file).
pub fn chunk_count(size: u64, chunk_size: u32) -> u64 {
    size.div_ceil(u64::from(chunk_size.max(1)))
}

/// A file's hash: BLAKE3 over its chunk hashes in order.
pub fn file_hash(chunks: &[Hash]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    for chunk in chunks {
        hasher.update(chunk);
    }
    *hasher.finalize().as_bytes()
}

/// A chunk's hash.
pub fn chunk_hash(bytes: &[u8]) -> Hash {
    chunk_hash_of_pieces(&[bytes])
}

/// The hash of the chunk that `pieces` make up, in order, without joining them.
pub(crate) fn chunk_hash_of_pieces<B: AsRef<[u8]>>(pieces: &[B]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    for piece in pieces {
        hasher.update(piece.as_ref());
    }
    *hasher.finalize().as_bytes()
}

/// Refuses any path that could leave the target directory or means something else on
/// some system: empty, over [`MAX_PATH_LEN`], a leading `/`, an empty, `.` or `..`
/// component, a component over [`MAX_COMPONENT_LEN`], a `\`, NUL or control character.
pub fn validate_path(path: &str) -> Result<(), TransferError> {
    let bad = |reason: &str| {
        let mut shown = path.to_string();
        peers_sdk::text::truncate(&mut shown, 300);
        Err(TransferError::UnsafePath { path: shown, reason: reason.into() })
    };
    if path.is_empty() {
        return bad("empty");
    }
    if path.len() > MAX_PATH_LEN {
        return bad("too long");
    }
    if path.starts_with('/') {
        return bad("absolute");
    }
    if path.chars().any(|c| c == '\\' || c.is_control()) {
        return bad("a backslash or control character");
    }
    for component in path.split('/') {
        match component {
            "" => return bad("an empty component"),
            "." | ".." => return bad("a `.` or `..` component"),
            c if c.len() > MAX_COMPONENT_LEN => return bad("a component too long"),
            _ => {}
        }
    }
    Ok(())
}

/// `path`, or the first of `name (1).ext`, `name (2).ext`, … for which `taken` is false
/// (at most 999 tries), so a received file never replaces an existing one.
pub fn free_name(path: &str, taken: impl Fn(&str) -> bool) -> Result<String, TransferError> {
    if !taken(path) {
        return Ok(path.to_string());
    }
    let (dir, file) = path.rsplit_once('/').map_or(("", path), |(d, f)| (d, f));
    let (stem, ext) = match file.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (file, String::new()),
    };
    for n in 1..=999 {
        let name = format!("{stem} ({n}){ext}");
        let candidate = if dir.is_empty() { name } else { format!("{dir}/{name}") };
        if !taken(&candidate) {
            return Ok(candidate);
        }
    }
    Err(TransferError::UnsafePath { path: path.to_string(), reason: "999 files of that name exist".into() })
}

/// Chunk hashes as one byte string on the wire (32 bytes each), not a list of lists.
mod hash_list {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Hash;

    pub(super) fn serialize<S: Serializer>(hashes: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&hashes.concat())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        let bytes: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
        if !bytes.len().is_multiple_of(32) {
            return Err(serde::de::Error::custom("chunk hashes are not a multiple of 32 bytes"));
        }
        Ok(bytes.chunks_exact(32).filter_map(|c| Hash::try_from(c).ok()).collect())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn file(path: &str, size: u64) -> ManifestEntry {
        let n = chunk_count(size, MIN_CHUNK_SIZE) as usize;
        ManifestEntry { path: path.into(), kind: EntryKind::File { size, executable: false, chunks: vec![[7; 32]; n] } }
    }

    fn manifest(entries: Vec<ManifestEntry>) -> Manifest {
        Manifest { chunk_size: MIN_CHUNK_SIZE, entries }
    }

    #[test]
    fn a_directory_tree_is_valid() {
        let m = manifest(vec![
            ManifestEntry { path: "photos".into(), kind: EntryKind::Dir },
            file("photos/a.jpg", 40_000),
            file("photos/empty", 0),
            file("notes.txt", 1),
        ]);
        m.validate().unwrap();
        assert_eq!(m.total_size(), 40_001);
        assert_eq!(m.file_count(), 3);
        assert_eq!(m.chunk_len(40_000, 2), 40_000 - 2 * u64::from(MIN_CHUNK_SIZE));
    }

    #[test]
    fn unsafe_names_are_refused() {
        for path in ["", "/etc/passwd", "../up", "a/../../b", "a//b", "./a", "a/.", "c:\\x", "a\0b", "a\nb"] {
            let err = manifest(vec![file(path, 1)]).validate().unwrap_err();
            assert!(matches!(err, TransferError::UnsafePath { .. }), "{path:?}: {err}");
        }
        let long = "x".repeat(MAX_COMPONENT_LEN + 1);
        assert!(validate_path(&long).is_err());
    }

    #[test]
    fn inconsistent_manifests_are_refused() {
        let twice = manifest(vec![file("a", 1), file("a", 2)]);
        let file_and_dir = manifest(vec![file("a", 1), file("a/b", 1)]);
        let mut wrong_count = manifest(vec![file("a", 100_000)]);
        if let EntryKind::File { chunks, .. } = &mut wrong_count.entries[0].kind {
            chunks.pop();
        }
        let tiny_chunks = Manifest { chunk_size: 1, entries: vec![] };
        for m in [twice, file_and_dir, wrong_count, tiny_chunks] {
            assert!(matches!(m.validate(), Err(TransferError::BadManifest(_))), "{m:?}");
        }
    }

    #[test]
    fn the_digest_changes_with_any_field() {
        let base = manifest(vec![file("a", 70_000)]);
        let mut renamed = base.clone();
        renamed.entries[0].path = "b".into();
        let mut rehashed = base.clone();
        if let EntryKind::File { chunks, .. } = &mut rehashed.entries[0].kind {
            chunks[1] = [8; 32];
        }
        let mut executable = base.clone();
        if let EntryKind::File { executable: x, .. } = &mut executable.entries[0].kind {
            *x = true;
        }
        for other in [renamed, rehashed, executable] {
            assert_ne!(base.digest(), other.digest());
        }
    }

    #[test]
    fn free_names_never_replace_a_file() {
        let taken = ["a.txt", "a (1).txt", "dir/b", "dir/b (1)"];
        let is_taken = |p: &str| taken.contains(&p);
        assert_eq!(free_name("c.txt", is_taken).unwrap(), "c.txt");
        assert_eq!(free_name("a.txt", is_taken).unwrap(), "a (2).txt");
        assert_eq!(free_name("dir/b", is_taken).unwrap(), "dir/b (2)");
        assert!(free_name("x", |_| true).is_err());
    }

    proptest! {
        #[test]
        fn a_manifest_survives_messagepack(sizes in proptest::collection::vec(0u64..200_000, 0..8)) {
            let m = manifest(sizes.iter().enumerate().map(|(i, s)| file(&format!("d/f{i}"), *s)).collect());
            let bytes = rmp_serde::to_vec_named(&m).unwrap();
            let back: Manifest = rmp_serde::from_slice(&bytes).unwrap();
            prop_assert_eq!(back.digest(), m.digest());
            prop_assert_eq!(back, m);
        }

        #[test]
        fn validate_path_never_panics_and_never_passes_a_dot_dot(path in "[a./\\\\]{0,12}") {
            if validate_path(&path).is_ok() {
                prop_assert!(!path.split('/').any(|c| c == ".." || c == "." || c.is_empty()));
                prop_assert!(!path.starts_with('/'));
            }
        }
    }
}
