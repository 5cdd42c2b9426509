//! Files for the transfer tests: payloads and what a tree holds.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

pub use peers_sdk::testdata::incompressible as noise;

/// Writes `len` incompressible bytes to `path`, a mebibyte at a time.
pub fn write_noise(path: &Path, len: usize, seed: u64) {
    let mut file = File::create(path).unwrap();
    let block = 1 << 20;
    let mut left = len;
    let mut round = 0;
    while left > 0 {
        let n = left.min(block);
        file.write_all(&noise(n, seed.wrapping_add(round))).unwrap();
        left -= n;
        round += 1;
    }
}

/// The BLAKE3 hash of the file at `path`, read a mebibyte at a time.
pub fn hash_file(path: &Path) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    let mut file = File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            return hasher.finalize();
        }
        hasher.update(&buf[..n]);
    }
}

/// Everything under `dir` by relative path, sorted: each file with the hash of its
/// bytes, each directory with `None`.
pub fn hashes(dir: &Path) -> Vec<(String, Option<blake3::Hash>)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if p.is_dir() {
                out.push((rel, None));
                stack.push(p);
            } else {
                out.push((rel, Some(hash_file(&p))));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
