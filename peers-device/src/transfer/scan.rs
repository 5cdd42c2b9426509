//! Building a [`Manifest`] from files on disk (blocking: run it on a blocking thread).
//!
//! Each argument becomes a top-level entry named by its last component; a directory
//! brings its whole tree, walked in name order. Symbolic links are never followed:
//! they, and anything that is not a regular file or a directory, are listed in
//! [`Scanned::skipped`] instead. Names must be UTF-8.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::TransferError;
use super::manifest::{EntryKind, MAX_ENTRIES, Manifest, ManifestEntry, chunk_hash, validate_path};

/// A manifest and where each of its entries is on this disk.
#[derive(Debug)]
pub struct Scanned {
    /// What will be sent.
    pub manifest: Manifest,
    /// The local path of each entry, index for index.
    pub sources: Vec<PathBuf>,
    /// Paths left out: symbolic links and special files.
    pub skipped: Vec<PathBuf>,
}

/// Scans `paths` (files or directories) into a manifest with `chunk_size` chunks,
/// reading and hashing every file once.
pub fn scan(paths: &[PathBuf], chunk_size: u32) -> Result<Scanned, TransferError> {
    let mut out = Scanned { manifest: Manifest { chunk_size, entries: vec![] }, sources: vec![], skipped: vec![] };
    for path in paths {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| TransferError::UnsafePath {
                path: path.display().to_string(),
                reason: "no UTF-8 file name".into(),
            })?
            .to_string();
        if out.manifest.entries.iter().any(|e| e.path == name) {
            return Err(TransferError::UnsafePath { path: name, reason: "two arguments have this name".into() });
        }
        add(&mut out, path, name)?;
    }
    out.manifest.validate()?;
    Ok(out)
}

fn io(what: &str, path: &Path, source: std::io::Error) -> TransferError {
    TransferError::Io { what: format!("{what} {}", path.display()), source }
}

/// Adds `path` as `name`, and a directory's contents under it.
fn add(out: &mut Scanned, path: &Path, name: String) -> Result<(), TransferError> {
    let meta = fs::symlink_metadata(path).map_err(|e| io("read", path, e))?;
    if out.manifest.entries.len() >= MAX_ENTRIES {
        return Err(TransferError::BadManifest(format!("more than {MAX_ENTRIES} entries")));
    }
    if meta.is_dir() {
        validate_path(&name)?;
        out.manifest.entries.push(ManifestEntry { path: name.clone(), kind: EntryKind::Dir });
        out.sources.push(path.to_path_buf());
        let mut children = fs::read_dir(path)
            .map_err(|e| io("list", path, e))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| io("list", path, e))?;
        children.sort();
        for child in children {
            let Some(child_name) = child.file_name().and_then(|n| n.to_str()) else {
                out.skipped.push(child);
                continue;
            };
            let child_name = format!("{name}/{child_name}");
            add(out, &child, child_name)?;
        }
    } else if meta.is_file() {
        validate_path(&name)?;
        let chunks = hash_file(path, out.manifest.chunk_size)?;
        out.manifest.entries.push(ManifestEntry {
            path: name,
            kind: EntryKind::File { size: meta.len(), executable: is_executable(&meta), chunks },
        });
        out.sources.push(path.to_path_buf());
    } else {
        out.skipped.push(path.to_path_buf());
    }
    Ok(())
}

/// Reads `path` in chunks of `chunk_size`, hashing each, in constant memory.
fn hash_file(path: &Path, chunk_size: u32) -> Result<Vec<[u8; 32]>, TransferError> {
    let mut file = File::open(path).map_err(|e| io("open", path, e))?;
    let mut buf = vec![0u8; chunk_size as usize];
    let mut hashes = vec![];
    loop {
        let n = read_full(&mut file, &mut buf).map_err(|e| io("read", path, e))?;
        if n == 0 {
            return Ok(hashes);
        }
        hashes.push(chunk_hash(buf.get(..n).unwrap_or_default()));
        if n < buf.len() {
            return Ok(hashes);
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
pub(crate) fn read_full(file: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o100 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::super::manifest::MIN_CHUNK_SIZE;
    use super::*;

    #[test]
    fn a_tree_is_scanned_in_order_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("photos");
        fs::create_dir_all(root.join("2026/empty")).unwrap();
        fs::write(root.join("2026/b.jpg"), vec![1u8; 40_000]).unwrap();
        fs::write(root.join("a.txt"), b"hello").unwrap();
        let single = dir.path().join("notes.md");
        fs::write(&single, b"").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();

        let scanned = scan(&[root.clone(), single], MIN_CHUNK_SIZE).unwrap();
        let names: Vec<&str> = scanned.manifest.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            names,
            ["photos", "photos/2026", "photos/2026/b.jpg", "photos/2026/empty", "photos/a.txt", "notes.md"]
        );
        assert_eq!(scanned.manifest.total_size(), 40_005);
        assert_eq!(scanned.sources.len(), names.len());
        #[cfg(unix)]
        assert_eq!(scanned.skipped, [root.join("link")]);
        let (_, _, chunks) = scanned.manifest.files().next().unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2], chunk_hash(&[1u8; 40_000 - 2 * 16_384]));
    }

    #[test]
    fn two_arguments_with_one_name_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["x", "y"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
            fs::write(dir.path().join(sub).join("same.txt"), b"1").unwrap();
        }
        let err = scan(&[dir.path().join("x/same.txt"), dir.path().join("y/same.txt")], MIN_CHUNK_SIZE).unwrap_err();
        assert!(err.to_string().contains("two arguments"), "{err}");
    }
}
