//! What the disk budget (`pnpr-budget`) needs of the file store to evict a
//! package version: its index rows and its member, listed and removed
//! without going through the install paths (and the raw files and per-file
//! frames an older version left, which nothing reads any more).
//!
//! Invariants guarded here:
//! - removals happen only under [`FileStore::exclusive`], which waits for
//!   every unpack in progress and holds new ones off, so a member an unpack
//!   found present (and will keep a row for) is never removed under it; the
//!   caller decides what is unreferenced while holding the guard;
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

/// Where derived bytes (members; per-file frames of older versions) live,
/// under the store root.
const DERIVED_DIR: &str = "frames";

/// The source digest of a per-file frame an older version kept, from its
/// fan-out directory name and its file name
/// (`frames/<hex[0..2]>/<hex[2..]><variant>`).
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

    /// `files/`: the raw unpacked files an older version kept (one per
    /// digest under 256 fan-out directories); nothing reads them now.
    pub fn files_dir(&self) -> PathBuf {
        self.root.join("files")
    }

    /// Where derived bytes live: members under `members/`, per-file
    /// frames of older versions (see [`derived_source`] for their names).
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
        self.keys_lock().pop(integrity);
        self.db.delete(integrity)
    }

    /// The key of the member a row names, without touching the caches.
    pub fn member_key_uncached(&self, index: &PackageIndex) -> Result<String, CafsError> {
        crate::member::key(index)
    }

    /// Where the member named `key_hex` lives (whether or not it exists).
    pub fn member_file(&self, key_hex: &str) -> Result<PathBuf, CafsError> {
        self.member_path(key_hex)
    }

    /// Unlinks a raw file an older version kept; returns the bytes freed
    /// (0 when absent).
    pub fn remove_file(&self, digest_hex: &str) -> Result<u64, CafsError> {
        if !crate::files::is_digest_hex(digest_hex) {
            return Err(CafsError::InvalidDigest(
                digest_hex.chars().take(160).collect(),
            ));
        }
        let path = self
            .files_dir()
            .join(&digest_hex[..2])
            .join(&digest_hex[2..]);
        Ok(unlink(&path))
    }
}

/// The key of a stored member from its path under the derived directory
/// (`members/<key[0..2]>/<key[2..]>`), `None` for anything else.
pub fn member_key_of_path(fanout: &str, name: &str) -> Option<String> {
    let key = format!("{fanout}{name}");
    let ok = fanout.len() == 2
        && key.len() == 64
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then_some(key)
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
