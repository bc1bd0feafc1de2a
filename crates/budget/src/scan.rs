//! One look at the evictable stores on disk: every CAS tarball by unit,
//! every stored file and every derived frame by source digest.
//!
//! Invariant: the scan only reads; names that do not fit a store's layout
//! (temp files, strays) are left out, so they are never evicted as units.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::evict::StoreUsage;

/// A SHA-512 file digest in binary (half the memory of its hex).
pub(crate) type Digest = [u8; 64];

/// One CAS object.
pub(crate) struct Tarball {
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
    pub(crate) mtime_ms: i64,
}

pub(crate) struct Scan {
    /// Unit → its objects (one per namespace that cached it).
    pub(crate) tarballs: HashMap<String, Vec<Tarball>>,
    /// Stored file → its length.
    pub(crate) files: HashMap<Digest, u64>,
    /// Source file → its derived frames.
    pub(crate) frames: HashMap<Digest, Vec<(PathBuf, u64)>>,
}

impl Scan {
    /// Bytes and objects per store, `tarballs`, `files`, `frames`.
    pub(crate) fn usage(&self) -> Vec<StoreUsage> {
        let tarballs = self.tarballs.values().flatten();
        let frames = self.frames.values().flatten();
        vec![
            StoreUsage::new(
                "tarballs",
                tarballs.clone().map(|t| t.len).sum(),
                tarballs.count() as u64,
            ),
            StoreUsage::new("files", self.files.values().sum(), self.files.len() as u64),
            StoreUsage::new(
                "frames",
                frames.clone().map(|f| f.1).sum(),
                frames.count() as u64,
            ),
        ]
    }
}

pub(crate) fn scan(cas_root: &Path, files: &pnpr_cafs::FileStore) -> Scan {
    Scan {
        tarballs: tarballs(cas_root),
        files: stored_files(&files.files_dir()),
        frames: frames(&files.derived_dir()),
    }
}

pub(crate) fn digest(hex_digest: &str) -> Option<Digest> {
    let mut out = [0u8; 64];
    hex::decode_to_slice(hex_digest, &mut out).ok()?;
    Some(out)
}

/// Subdirectories (or files) of `dir` with their names.
fn entries(dir: &Path, want_dirs: bool) -> Vec<(String, PathBuf, fs::Metadata)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            let keep = if want_dirs {
                meta.is_dir()
            } else {
                meta.is_file()
            };
            keep.then(|| (e.file_name().to_string_lossy().into_owned(), e.path(), meta))
        })
        .collect()
}

/// `<root>/<ns>/<algo>/<hex[0..2]>/<hex[2..]>` (the CAS layout).
fn tarballs(root: &Path) -> HashMap<String, Vec<Tarball>> {
    let mut out: HashMap<String, Vec<Tarball>> = HashMap::new();
    for (ns, ns_dir, _) in entries(root, true) {
        if ns == "tmp" {
            continue;
        }
        for (algo, algo_dir, _) in entries(&ns_dir, true) {
            for (fan, fan_dir, _) in entries(&algo_dir, true) {
                for (rest, path, meta) in entries(&fan_dir, false) {
                    let mtime_ms = meta
                        .modified()
                        .ok()
                        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                    out.entry(format!("{algo}-{fan}{rest}"))
                        .or_default()
                        .push(Tarball {
                            path,
                            len: meta.len(),
                            mtime_ms,
                        });
                }
            }
        }
    }
    out
}

/// `files/<hex[0..2]>/<hex[2..]>`.
fn stored_files(dir: &Path) -> HashMap<Digest, u64> {
    let mut out = HashMap::new();
    for (fan, fan_dir, _) in entries(dir, true) {
        for (rest, _, meta) in entries(&fan_dir, false) {
            if let Some(d) = digest(&format!("{fan}{rest}")) {
                out.insert(d, meta.len());
            }
        }
    }
    out
}

/// `frames/<hex[0..2]>/<hex[2..]><variant>`.
fn frames(dir: &Path) -> HashMap<Digest, Vec<(PathBuf, u64)>> {
    let mut out: HashMap<Digest, Vec<(PathBuf, u64)>> = HashMap::new();
    for (fan, fan_dir, _) in entries(dir, true) {
        for (name, path, meta) in entries(&fan_dir, false) {
            let source = pnpr_cafs::derived_source(&fan, &name);
            if let Some(d) = source.as_deref().and_then(digest) {
                out.entry(d).or_default().push((path, meta.len()));
            }
        }
    }
    out
}
