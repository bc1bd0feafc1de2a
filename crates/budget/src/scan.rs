//! One look at the evictable stores on disk: every CAS tarball by unit,
//! every package member by key, and what older versions kept (raw files
//! and per-file frames, by source digest).
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
    /// Raw file an older version kept → its length.
    pub(crate) files: HashMap<Digest, u64>,
    /// Source file → the per-file frames an older version kept.
    pub(crate) frames: HashMap<Digest, Vec<(PathBuf, u64)>>,
    /// Package member key → the member.
    pub(crate) members: HashMap<String, Tarball>,
    /// Other derived bytes: evicted by their own age.
    pub(crate) loose: Vec<Tarball>,
}

impl Scan {
    /// Bytes and objects per store, `tarballs`, `files`, `frames`.
    pub(crate) fn usage(&self) -> Vec<StoreUsage> {
        let tarballs = self.tarballs.values().flatten();
        let frames = self
            .frames
            .values()
            .flatten()
            .map(|f| f.1)
            .chain(self.members.values().map(|t| t.len))
            .chain(self.loose.iter().map(|t| t.len));
        vec![
            StoreUsage::new(
                "tarballs",
                tarballs.clone().map(|t| t.len).sum(),
                tarballs.count() as u64,
            ),
            StoreUsage::new("files", self.files.values().sum(), self.files.len() as u64),
            StoreUsage::new("frames", frames.clone().sum(), frames.count() as u64),
        ]
    }
}

pub(crate) fn scan(cas_root: &Path, files: &pnpr_cafs::FileStore) -> Scan {
    let (frames, members, loose) = derived(&files.derived_dir());
    Scan {
        tarballs: tarballs(cas_root),
        files: stored_files(&files.files_dir()),
        frames,
        members,
        loose,
    }
}

fn mtime_ms(meta: &fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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
                    let mtime_ms = mtime_ms(&meta);
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

type Frames = HashMap<Digest, Vec<(PathBuf, u64)>>;

/// Everything under the derived directory: `<hex[0..2]>/<hex[2..]><variant>`
/// files by source digest, `members/<key[0..2]>/<key[2..]>` by key,
/// anything else loose.
fn derived(dir: &Path) -> (Frames, HashMap<String, Tarball>, Vec<Tarball>) {
    let mut frames: Frames = HashMap::new();
    let mut members = HashMap::new();
    let mut loose = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push((e.path(), depth + 1));
                continue;
            }
            if !meta.is_file() || d.file_name().is_some_and(|n| n == "tmp") {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let fan = d.file_name().map(|n| n.to_string_lossy().into_owned());
            let fan = fan.as_deref().unwrap_or("");
            let source = (depth == 1)
                .then(|| pnpr_cafs::derived_source(fan, &name))
                .flatten();
            let in_members = d
                .parent()
                .is_some_and(|p| p.file_name().is_some_and(|n| n == "members"));
            let member = (depth == 2 && in_members)
                .then(|| pnpr_cafs::member_key_of_path(fan, &name))
                .flatten();
            let object = Tarball {
                path: e.path(),
                len: meta.len(),
                mtime_ms: mtime_ms(&meta),
            };
            match (source.as_deref().and_then(digest), member) {
                (Some(src), _) => frames.entry(src).or_default().push((e.path(), meta.len())),
                (None, Some(key)) => {
                    members.insert(key, object);
                }
                (None, None) => loose.push(object),
            }
        }
    }
    (frames, members, loose)
}
