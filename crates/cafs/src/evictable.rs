//! What the disk budget (`pnpr-budget`) needs of the file store to evict a
//! package version: its index rows, its files and the bytes derived from
//! them, listed and removed without going through the install paths.
//!
//! Invariants guarded here:
//! - removals happen only under [`FileStore::exclusive`], which waits for
//!   every unpack in progress and holds new ones off, so a file an unpack
//!   found present (and will name in its index row) is never removed under
//!   it; the caller decides what is unreferenced while holding the guard;
//! - removing an index row also drops its in-memory copy, so the next
//!   install sees the package as missing and unpacks it again instead of
//!   planning files that are gone;
//! - removal is an unlink: a reader that already opened a file keeps its
//!   bytes (nothing in this crate re-opens a file by path mid-read).

use std::path::{Path, PathBuf};
use std::sync::RwLockWriteGuard;

use crate::error::CafsError;
use crate::index::PackageIndex;
use crate::store::FileStore;

/// Where [`FileStore::derived`] keeps derived bytes, under the store root.
const DERIVED_DIR: &str = "frames";

/// The source digest of a derived file, from its fan-out directory name and
/// its file name (`frames/<hex[0..2]>/<hex[2..]><variant>`).
pub fn derived_source(fanout: &str, name: &str) -> Option<String> {
    let rest = name.get(..126)?;
    let digest = format!("{fanout}{rest}");
    let hex = digest.len() == 128
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    hex.then_some(digest)
}

impl FileStore {
    /// Holds off every unpack until dropped (waits for those running).
    pub fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|p| p.into_inner())
    }

    /// `files/`: one file per digest under 256 fan-out directories.
    pub fn files_dir(&self) -> PathBuf {
        self.root.join("files")
    }

    /// Where derived bytes live (see [`derived_source`] for their names).
    pub fn derived_dir(&self) -> PathBuf {
        self.root.join(DERIVED_DIR)
    }

    /// Every integrity that has an index row.
    pub fn index_keys(&self) -> Result<Vec<String>, CafsError> {
        self.db.keys()
    }

    /// An index row decoded without entering the in-memory cache (a scan
    /// over every package must not evict the hot ones).
    pub fn index_uncached(&self, integrity: &str) -> Result<Option<PackageIndex>, CafsError> {
        let Some(data) = self.db.get(integrity)? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&data).ok())
    }

    /// Drops a package's index row (and its cached copy).
    pub fn remove_index(&self, integrity: &str) -> Result<(), CafsError> {
        self.cache_lock().pop(integrity);
        self.db.delete(integrity)
    }

    /// Unlinks a stored file; returns the bytes freed (0 when absent).
    pub fn remove_file(&self, digest_hex: &str) -> Result<u64, CafsError> {
        let path = self.file_path(digest_hex)?;
        Ok(unlink(&path))
    }
}

/// Removes `path`, returning its size (0 when it was not there).
pub(crate) fn unlink(path: &Path) -> u64 {
    let len = std::fs::symlink_metadata(path).map_or(0, |m| m.len());
    match std::fs::remove_file(path) {
        Ok(()) => len,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_map_back_to_their_source() {
        let digest = "ab".repeat(64);
        let name = format!("{}-exec.gz", &digest[2..]);
        assert_eq!(derived_source(&digest[..2], &name), Some(digest.clone()));
        assert_eq!(derived_source("ab", "short.gz"), None);
        assert_eq!(derived_source("zz", &name), None);
    }
}
