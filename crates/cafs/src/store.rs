//! `FileStore`: the on-disk layout (`files/` and `tmp/` through
//! [`Files`], `frames/` (derived bytes: per-file and per-package members),
//! `index.sqlite`)
//! behind one handle.
//!
//! Invariant: an index row is written last, only after every file it names
//! was placed by [`Files`] (which guards the content-addressed layout), and an
//! existing path is never re-hashed, so readers can trust any row and any
//! file they find.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::cache::Lru;
use crate::db::IndexDb;
use crate::error::CafsError;
use crate::files::Files;
use crate::index::{FileEntry, PackageIndex};
use crate::limits::Limits;
use crate::manifest;
use crate::unpack;

/// Index rows kept in memory by [`FileStore::open`].
pub const DEFAULT_INDEX_CACHE_ENTRIES: usize = 4096;

/// Content-addressed store of unpacked package files plus their indexes.
#[derive(Debug)]
pub struct FileStore {
    pub(crate) root: PathBuf,
    pub(crate) files: Files,
    pub(crate) db: IndexDb,
    /// Decoded rows, so hot packages skip SQLite and JSON decoding.
    pub(crate) cache: Mutex<Lru<Arc<PackageIndex>>>,
    /// Unpacks hold it shared; eviction ([`crate::evictable`]) holds it
    /// exclusively while it removes files, so it never removes a file an
    /// unpack found present and is about to name in a new index row.
    pub(crate) gate: std::sync::RwLock<()>,
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
            gate: std::sync::RwLock::new(()),
        })
    }

    /// The directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the file with this digest lives (whether or not it exists).
    pub fn file_path(&self, digest_hex: &str) -> Result<PathBuf, CafsError> {
        self.files.path(digest_hex)
    }

    /// Whether the file with this digest is stored.
    pub fn has_file(&self, digest_hex: &str) -> bool {
        self.file_path(digest_hex)
            .is_ok_and(|path| fs::symlink_metadata(path).is_ok())
    }

    /// The whole content of a stored file.
    pub fn read_file(&self, digest_hex: &str) -> Result<Vec<u8>, CafsError> {
        let (mut file, len) = self.open_file(digest_hex)?;
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.read_to_end(&mut buf)
            .map_err(|e| CafsError::io(format!("reading file {digest_hex}"), e))?;
        Ok(buf)
    }

    /// An open handle on a stored file and its length, for streaming.
    pub fn open_file(&self, digest_hex: &str) -> Result<(File, u64), CafsError> {
        let path = self.file_path(digest_hex)?;
        let file = File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                CafsError::MissingFile {
                    digest: digest_hex.to_owned(),
                }
            } else {
                CafsError::io(format!("opening file {digest_hex}"), e)
            }
        })?;
        let len = file
            .metadata()
            .map_err(|e| CafsError::io(format!("inspecting file {digest_hex}"), e))?
            .len();
        Ok((file, len))
    }

    /// Bytes derived from one stored file by `encode` (for `/v1/install`: its
    /// frame as one gzip member), made once per (file, `variant`) and kept
    /// under `<root>/frames/`, so a response is a concatenation of stored
    /// bytes and nothing is re-encoded per request. The store treats them as
    /// opaque: their format belongs to `encode`'s owner. `variant` is a
    /// file-name suffix of `[A-Za-z0-9._-]`.
    pub fn derived(
        &self,
        digest_hex: &str,
        variant: &str,
        encode: impl FnOnce(&[u8]) -> std::io::Result<Vec<u8>>,
    ) -> Result<Vec<u8>, CafsError> {
        // Validates the digest before it becomes a path.
        self.file_path(digest_hex)?;
        let variant_ok = !variant.is_empty()
            && variant.len() <= 32
            && variant
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !variant_ok {
            return Err(CafsError::InvalidDigest(format!("variant {variant:?}")));
        }
        let path = self
            .root
            .join("frames")
            .join(&digest_hex[..2])
            .join(format!("{}{variant}", &digest_hex[2..]));
        if let Ok(bytes) = fs::read(&path) {
            return Ok(bytes);
        }
        let content = self.read_file(digest_hex)?;
        let member = encode(&content)
            .map_err(|e| CafsError::io(format!("encoding file {digest_hex}"), e))?;
        // Best effort: bytes that cannot be kept are still served.
        let _ = self.files.put_derived(&path, &member);
        Ok(member)
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

    /// Whether the member named `key_hex` is stored.
    pub fn has_member(&self, key_hex: &str) -> bool {
        self.member_path(key_hex)
            .is_ok_and(|p| fs::symlink_metadata(p).is_ok())
    }

    fn member_path(&self, key_hex: &str) -> Result<PathBuf, CafsError> {
        let ok = key_hex.len() == 64
            && key_hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(CafsError::InvalidDigest(key_hex.chars().take(80).collect()));
        }
        // Under `frames/` with the other derived bytes (the store metrics
        // count it); `members/` never parses as a per-file derived name.
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

    /// Whether a package index exists for this integrity (errors read as no).
    pub fn has_index(&self, integrity: &str) -> bool {
        if self.cache_lock().get(integrity).is_some() {
            return true;
        }
        match self.db.contains(integrity) {
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

    /// Unpack a gzipped npm tarball into the store and record its index under
    /// `integrity` (blocking; run it on a blocking thread).
    ///
    /// The tarball bytes are verified against `integrity` while streaming. If
    /// the integrity is already indexed the stored index is returned without
    /// reading `tgz`. On any error no index row is written; files already
    /// linked are valid content-addressed orphans.
    pub fn add_tarball(
        &self,
        integrity: &str,
        tgz: impl Read,
        limits: &Limits,
    ) -> Result<Arc<PackageIndex>, CafsError> {
        let _unpacking = self.gate.read().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = self.index(integrity)? {
            return Ok(existing);
        }
        let sri = parse_integrity(integrity)?;
        let unpacked = unpack::unpack(&self.files, tgz, sri, limits)?;
        let mut files = unpacked.files;
        let manifest = match unpacked.manifest_bytes {
            Some(bytes) => manifest::parse_manifest(&bytes)?,
            None => {
                // pnpm links a placeholder so the package dir has a manifest.
                let placeholder = manifest::PLACEHOLDER_PACKAGE_JSON;
                let digest_hex = self.files.put_bytes(placeholder)?;
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
        Ok(index)
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
