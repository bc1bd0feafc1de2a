//! Uploading a node's existing local blobs into a bucket (`pnpr copy`, when
//! an embedded deployment gains `blobs:`).
//!
//! Invariants guarded: only files whose path has the exact shape of a
//! content address are considered (anything else under the roots, such as
//! temp files, is ignored), each file is re-hashed and uploaded only when
//! its bytes match the digest its path names (a damaged local file never
//! reaches the bucket under that name), and a key the bucket already holds
//! is skipped, so the copy is idempotent and an interrupted run is simply
//! run again.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use ssri::{Algorithm, Integrity, IntegrityChecker};

use super::{block_on, BlobBackend};
use crate::Result;

/// One local object and the key it has in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBlob {
    pub key: String,
    pub path: PathBuf,
    algo: Algorithm,
    hex: String,
}

/// What a copy did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyCounts {
    pub uploaded: usize,
    /// Already in the bucket.
    pub present: usize,
    /// Local bytes that do not match their name (left out, logged).
    pub damaged: usize,
}

/// The proxy CAS's objects: `<root>/<ns>/<algo>/<hex[0..2]>/<hex[2..]>`.
pub fn cas_objects(root: &Path) -> Vec<LocalBlob> {
    let mut out = Vec::new();
    for ns in subdirs(root) {
        let Some(ns_name) = name(&ns) else { continue };
        if crate::cas::check_ns(&ns_name).is_err() {
            continue;
        }
        for algo_dir in subdirs(&ns) {
            let Some(algo) = name(&algo_dir).and_then(|a| a.parse::<Algorithm>().ok()) else {
                continue;
            };
            for (path, hex) in digest_files(&algo_dir) {
                let key = format!("tarballs/{ns_name}/{algo}/{}/{}", &hex[..2], &hex[2..]);
                out.push(LocalBlob {
                    key,
                    path,
                    algo,
                    hex,
                });
            }
        }
    }
    out
}

/// Hosted tarballs: `<root>/sha512/<hex[0..2]>/<hex[2..]>`.
pub fn hosted_objects(root: &Path) -> Vec<LocalBlob> {
    digest_files(&root.join("sha512"))
        .into_iter()
        .filter_map(|(path, hex)| {
            Some(LocalBlob {
                key: super::hosted_key(&hex)?,
                path,
                algo: Algorithm::Sha512,
                hex,
            })
        })
        .collect()
}

/// Uploads every blob whose key the bucket lacks. Blocks: call it outside
/// any async runtime (the copy command).
pub fn upload_missing(backend: &dyn BlobBackend, blobs: &[LocalBlob]) -> Result<CopyCounts> {
    let mut counts = CopyCounts::default();
    for blob in blobs {
        if block_on(backend.exists(blob.key.clone()))? {
            counts.present += 1;
            continue;
        }
        if !matches_name(blob)? {
            tracing::warn!(path = %blob.path.display(), "local blob does not match its digest; not copied");
            counts.damaged += 1;
            continue;
        }
        block_on(backend.put(blob.key.clone(), blob.path.clone()))?;
        counts.uploaded += 1;
    }
    Ok(counts)
}

fn matches_name(blob: &LocalBlob) -> Result<bool> {
    let Ok(sri) = Integrity::from_hex(&blob.hex, blob.algo) else {
        return Ok(false);
    };
    let mut checker = IntegrityChecker::new(sri);
    let mut file = File::open(&blob.path)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        checker.input(&buf[..n]);
    }
    Ok(checker.result().is_ok())
}

/// `<dir>/<hex[0..2]>/<hex[2..]>` files whose joined name is lowercase hex.
fn digest_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for fan in subdirs(dir) {
        let Some(head) = name(&fan).filter(|h| h.len() == 2 && is_hex(h)) else {
            continue;
        };
        let Ok(rd) = fs::read_dir(&fan) else { continue };
        for entry in rd.flatten() {
            let path = entry.path();
            let Some(tail) = name(&path).filter(|t| !t.is_empty() && is_hex(t)) else {
                continue;
            };
            if path.is_file() {
                out.push((path, format!("{head}{tail}")));
            }
        }
    }
    out.sort();
    out
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn name(path: &Path) -> Option<String> {
    path.file_name()?.to_str().map(str::to_owned)
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
