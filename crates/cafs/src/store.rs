//! `FileStore`: the on-disk layout (`tmp/` through [`Files`], `frames/
//! members/` (one stored gzip member per package, RFC 0008), `index.sqlite`)
//! behind one handle.
//!
//! Invariant: an index row is written last, only after the package's whole
//! member (made from the verified, unpacked tarball) is in place, and a
//! row counts as present ([`FileStore::has_index`]) only while its member
//! is there too, so readers can trust any row they are given: every file it
//! names can be read from the member. No raw copy of a file is kept (RFC
//! 0008 §4): a partial package is cut from its member.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::cache::Lru;
use crate::db::IndexDb;
use crate::error::CafsError;
use crate::files::{is_digest_hex, Files};
use crate::index::{FileEntry, PackageIndex};
use crate::limits::Limits;
use crate::manifest;
use crate::member;
use crate::spool::Spool;
use crate::unpack;

/// Index rows kept in memory by [`FileStore::open`].
pub const DEFAULT_INDEX_CACHE_ENTRIES: usize = 4096;

/// Package members plus their indexes.
#[derive(Debug)]
pub struct FileStore {
    pub(crate) root: PathBuf,
    pub(crate) files: Files,
    pub(crate) db: IndexDb,
    /// Decoded rows, so hot packages skip SQLite and JSON decoding.
    pub(crate) cache: Mutex<Lru<Arc<PackageIndex>>>,
    /// Member key per integrity (derived from the row; cached because every
    /// install asks [`FileStore::has_index`] for each package).
    pub(crate) keys: Mutex<Lru<String>>,
    /// Unpacks hold it shared; eviction ([`crate::evictable`]) holds it
    /// exclusively while it removes rows and members, so it never removes a
    /// member an unpack found present and is about to keep a row for.
    pub(crate) gate: std::sync::RwLock<()>,
    /// What `frames/cuts/` holds ([`crate::cuts`]).
    pub(crate) cuts: Mutex<crate::cuts::Ledger>,
}

impl FileStore {
    /// Open (creating if needed) the store rooted at `root`.
    pub fn open(root: &Path) -> Result<Self, CafsError> {
        Self::open_with_cache(root, DEFAULT_INDEX_CACHE_ENTRIES)
    }

    /// Like [`FileStore::open`] with an explicit in-memory index cache size
    /// (0 disables the cache).
    pub fn open_with_cache(root: &Path, cache_entries: usize) -> Result<Self, CafsError> {
        let files = Files::open(root)?;
        let db = IndexDb::open(&root.join("index.sqlite"))?;
        Ok(Self {
            root: root.to_path_buf(),
            files,
            db,
            cache: Mutex::new(Lru::new(cache_entries)),
            keys: Mutex::new(Lru::new(cache_entries)),
            gate: std::sync::RwLock::new(()),
            cuts: Mutex::new(crate::cuts::Ledger::default()),
        })
    }

    /// The directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A stored gzip member of several frames (for `/v1/install`: one
    /// package's), named by `key_hex` — 64 lowercase hex the wire owner
    /// derives from exactly the frames inside — made once by `encode`
    /// (streamed into a temp file, never held whole) and kept under
    /// `<root>/frames/members/`. Returns an open handle and its length.
    pub fn member(
        &self,
        key_hex: &str,
        encode: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(File, u64), CafsError> {
        let path = self.member_path(key_hex)?;
        if let Some(found) = open_with_len(&path) {
            return Ok(found);
        }
        let mut writer = self
            .files
            .derived_writer()
            .map_err(|e| CafsError::io("creating a member temp file".to_owned(), e))?;
        encode(&mut writer).map_err(|e| CafsError::io(format!("encoding member {key_hex}"), e))?;
        writer
            .place(&path)
            .map_err(|e| CafsError::io(format!("placing member {key_hex}"), e))?;
        open_with_len(&path).ok_or_else(|| CafsError::MissingFile {
            digest: key_hex.to_owned(),
        })
    }

    /// The stored member named `key_hex` and its length.
    pub fn open_member(&self, key_hex: &str) -> Result<(File, u64), CafsError> {
        open_with_len(&self.member_path(key_hex)?).ok_or_else(|| CafsError::MissingFile {
            digest: key_hex.to_owned(),
        })
    }

    /// The key of the package's whole member (`pnpr_protocol::member_key`
    /// of its frames, planned for the package alone).
    pub fn member_key(&self, integrity: &str, index: &PackageIndex) -> Result<String, CafsError> {
        if let Some(key) = self.keys_lock().get(integrity) {
            return Ok(key);
        }
        let key = member::key(index)?;
        self.keys_lock().put(integrity, key.clone());
        Ok(key)
    }

    /// Calls `keep` with the frames of the package's member that `wanted`
    /// names ((digest, executable) → length), in member order: how a group
    /// the client only partly lacks is served without raw files. Fails if
    /// the package or its member is gone, or a frame is missing.
    pub fn cut(
        &self,
        integrity: &str,
        wanted: &std::collections::HashMap<([u8; 64], bool), u64>,
        keep: impl FnMut(&[u8; 64], bool, Vec<u8>) -> std::io::Result<()>,
    ) -> Result<(), CafsError> {
        let index = self
            .index(integrity)?
            .ok_or_else(|| CafsError::MissingFile {
                digest: integrity.chars().take(200).collect(),
            })?;
        let key = self.member_key(integrity, &index)?;
        let (file, _) = self.open_member(&key)?;
        member::cut(file, wanted, keep)
            .map_err(|e| CafsError::io(format!("cutting member {key}"), e))
    }

    /// One file of a stored package, read back from its member (tests and
    /// tools; installs use [`FileStore::cut`]).
    pub fn read_packaged(&self, integrity: &str, digest_hex: &str) -> Result<Vec<u8>, CafsError> {
        if !is_digest_hex(digest_hex) {
            return Err(CafsError::InvalidDigest(
                digest_hex.chars().take(160).collect(),
            ));
        }
        let missing = || CafsError::MissingFile {
            digest: digest_hex.to_owned(),
        };
        let index = self.index(integrity)?.ok_or_else(missing)?;
        let entry = index
            .files
            .values()
            .find(|f| f.digest_hex == digest_hex)
            .ok_or_else(missing)?;
        let mut digest = [0u8; 64];
        hex::decode_to_slice(digest_hex, &mut digest).map_err(|_| missing())?;
        let wanted = [((digest, entry.is_executable()), entry.size)].into();
        let mut out = Vec::new();
        self.cut(integrity, &wanted, |_, _, content| {
            out = content;
            Ok(())
        })?;
        Ok(out)
    }

    /// Whether the member named `key_hex` is stored.
    pub fn has_member(&self, key_hex: &str) -> bool {
        self.member_path(key_hex)
            .is_ok_and(|p| fs::symlink_metadata(p).is_ok())
    }

    pub(crate) fn member_path(&self, key_hex: &str) -> Result<PathBuf, CafsError> {
        let ok = key_hex.len() == 64
            && key_hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(CafsError::InvalidDigest(key_hex.chars().take(80).collect()));
        }
        // Under `frames/` (the store metrics count it there); `members/`
        // never parses as a per-file derived name of older versions.
        Ok(self
            .root
            .join("frames")
            .join("members")
            .join(&key_hex[..2])
            .join(&key_hex[2..]))
    }

    /// The index of the package with this integrity, if it was added.
    ///
    /// A row that no longer decodes is deleted and reported as absent, so the
    /// package is simply unpacked again instead of failing forever.
    pub fn index(&self, integrity: &str) -> Result<Option<Arc<PackageIndex>>, CafsError> {
        if let Some(hit) = self.cache_lock().get(integrity) {
            return Ok(Some(hit));
        }
        let Some(data) = self.db.get(integrity)? else {
            return Ok(None);
        };
        match serde_json::from_slice::<PackageIndex>(&data) {
            Ok(index) => {
                let index = Arc::new(index);
                self.cache_lock().put(integrity, Arc::clone(&index));
                Ok(Some(index))
            }
            Err(err) => {
                tracing::warn!(%integrity, error = %err, "dropping undecodable package index row");
                self.db.delete(integrity)?;
                Ok(None)
            }
        }
    }

    /// Whether the package with this integrity can be served: its index
    /// row and its member are both stored (errors read as no). A row whose
    /// member is gone (evicted, or a data directory of an older version)
    /// reads as absent, so the package is unpacked again.
    pub fn has_index(&self, integrity: &str) -> bool {
        let found = self.index(integrity).and_then(|row| match row {
            Some(index) => Ok(self.has_member(&self.member_key(integrity, &index)?)),
            None => Ok(false),
        });
        match found {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(%integrity, error = %err, "package index lookup failed");
                false
            }
        }
    }

    /// Number of package indexes stored.
    pub fn index_count(&self) -> Result<u64, CafsError> {
        self.db.count()
    }

    /// Unpack a gzipped npm tarball into the package's member and record its
    /// index under `integrity` (blocking; run it on a blocking thread).
    ///
    /// The tarball bytes are verified against `integrity` while streaming
    /// into a private spool; the member is made from the spool only after
    /// the whole tarball verified, and the row is written after the member
    /// is placed. If the package is already stored ([`FileStore::has_index`])
    /// the stored index is returned without reading `tgz`. On any error no
    /// index row is written and the spool is removed.
    pub fn add_tarball(
        &self,
        integrity: &str,
        tgz: impl Read,
        limits: &Limits,
    ) -> Result<Arc<PackageIndex>, CafsError> {
        let _unpacking = self.gate.read().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = self.index(integrity)? {
            if self.has_member(&self.member_key(integrity, &existing)?) {
                return Ok(existing);
            }
        }
        let sri = parse_integrity(integrity)?;
        let spool = Spool::create(self.files.tmp_dir())?;
        let unpacked = unpack::unpack(spool, tgz, sri, limits)?;
        let mut spool = unpacked.spool;
        let mut files = unpacked.files;
        let manifest = match unpacked.manifest_bytes {
            Some(bytes) => manifest::parse_manifest(&bytes)?,
            None => {
                // pnpm links a placeholder so the package dir has a manifest.
                let placeholder = manifest::PLACEHOLDER_PACKAGE_JSON;
                let digest_hex = spool.put(placeholder)?;
                files.insert(
                    "package.json".to_owned(),
                    FileEntry {
                        digest_hex,
                        mode: 0o644,
                        size: placeholder.len() as u64,
                    },
                );
                Value::Object(Map::new())
            }
        };
        let bundled = manifest::bundled_manifest(&manifest);
        let requires_build =
            manifest::requires_build(bundled.as_ref(), files.keys().map(String::as_str));
        let index = PackageIndex {
            files,
            manifest,
            requires_build,
            // pnpm records this column as a JS number.
            checked_at_ms: pnpr_clock::now_ms() as f64,
        };
        let frames = member::frames(&index)?;
        let key = pnpr_protocol::member_key(&frames);
        self.member(&key, |w| member::encode(&frames, &mut spool, w))?;
        drop(spool);
        let data = serde_json::to_vec(&index).map_err(|err| CafsError::BadIndexRow {
            integrity: integrity.to_owned(),
            message: err.to_string(),
        })?;
        if !self.db.insert_if_absent(integrity, &data)? {
            // A concurrent add won the race: its row is the canonical one.
            if let Some(existing) = self.index(integrity)? {
                return Ok(existing);
            }
        }
        let index = Arc::new(index);
        self.cache_lock().put(integrity, Arc::clone(&index));
        self.keys_lock().put(integrity, key);
        Ok(index)
    }

    pub(crate) fn keys_lock(&self) -> std::sync::MutexGuard<'_, Lru<String>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn cache_lock(&self) -> std::sync::MutexGuard<'_, Lru<Arc<PackageIndex>>> {
        // The cache holds only immutable Arcs; a panic mid-update cannot leave
        // a wrong value behind, so a poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn open_with_len(path: &Path) -> Option<(File, u64)> {
    let file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    Some((file, len))
}

fn parse_integrity(integrity: &str) -> Result<ssri::Integrity, CafsError> {
    let invalid = || CafsError::InvalidIntegrity(integrity.chars().take(200).collect());
    let sri: ssri::Integrity = integrity.parse().map_err(|_| invalid())?;
    if sri.hashes.is_empty() {
        return Err(invalid());
    }
    Ok(sri)
}
