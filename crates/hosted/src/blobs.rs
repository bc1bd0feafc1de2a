//! Content-addressed tarball files: `<root>/sha512/<hex[0..2]>/<hex[2..]>`.
//!
//! Invariant: a file at a final path always holds the complete bytes whose
//! SHA-512 is its name. Bytes are written by the shared blob writer with
//! [`Durability::Durable`] (temp file in `<root>/tmp/`, fsync, link into
//! place, directory fsync): hosted tarballs exist nowhere else, so neither a
//! crash nor a power loss may leave a final path with partial content.
//! Callers verify the digest before calling [`Blobs::put`].
//!
//! With a shared bucket (`blobs:`), the bucket is the durable copy and this
//! directory each node's read-through cache of it: [`Blobs::put`] returns
//! only after the bucket `PUT` succeeded (so a publish is acknowledged only
//! once every node can read its tarball, and a failed `PUT` places nothing
//! and fails the publish before its row is written), and a local miss in
//! [`Blobs::lookup`] fills from the bucket through a SHA-512 check: bytes
//! that do not match their name are refused, never placed or served. An
//! object no shared row references any more is deleted from the bucket as
//! well ([`Blobs::remove_from_bucket`]), under the same collection lock as
//! the local file.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pnpr_store::backend::{block_on, hosted_key, next_chunk, BlobBackend};
use pnpr_store::blob::{self, BlobWriter, Durability};
use sha2::{Digest, Sha512};

use crate::{HostedError, Result};

/// Largest object accepted from the bucket (the proxy CAS's cap).
const MAX_FILL: u64 = 1 << 30;

/// A stored tarball ready to be streamed.
#[derive(Debug, Clone)]
pub struct StoredTarball {
    pub path: PathBuf,
    pub len: u64,
}

#[derive(Debug)]
pub(crate) struct Blobs {
    root: PathBuf,
    tmp: PathBuf,
    /// The shared bucket, when `blobs:` names one.
    backend: Option<Arc<dyn BlobBackend>>,
}

impl Blobs {
    pub(crate) fn open(root: &Path) -> Result<Self> {
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp)?;
        // Temp files only survive a crash mid-write; they are never referenced.
        blob::sweep_temp_dir(&tmp, Duration::ZERO);
        Ok(Self {
            root: root.to_path_buf(),
            tmp,
            backend: None,
        })
    }

    pub(crate) fn set_backend(&mut self, backend: Arc<dyn BlobBackend>) {
        self.backend = Some(backend);
    }

    /// `None` for anything that is not 128 lowercase hex characters, so a
    /// stored string can never address a path outside the root.
    pub(crate) fn path(&self, sha512_hex: &str) -> Option<PathBuf> {
        let ok = sha512_hex.len() == 128
            && sha512_hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| {
            self.root
                .join("sha512")
                .join(&sha512_hex[..2])
                .join(&sha512_hex[2..])
        })
    }

    /// The tarball on local disk, else (with a bucket) filled from the
    /// bucket. Blocks on the bucket: call it off the async workers.
    pub(crate) fn lookup(&self, sha512_hex: &str) -> Result<Option<StoredTarball>> {
        let Some(path) = self.path(sha512_hex) else {
            return Ok(None);
        };
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => return Ok(Some(StoredTarball { path, len: m.len() })),
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        match &self.backend {
            Some(backend) => self.fill(backend.as_ref(), sha512_hex, &path),
            None => Ok(None),
        }
    }

    /// Copies the bucket's object into place if its bytes hash to its name.
    fn fill(
        &self,
        backend: &dyn BlobBackend,
        sha512_hex: &str,
        dest: &Path,
    ) -> Result<Option<StoredTarball>> {
        let key = hosted_key(sha512_hex).ok_or_else(bad_digest)?;
        let Some(mut stream) = block_on(backend.get(key.clone())).map_err(bucket)? else {
            return Ok(None);
        };
        let mut writer = BlobWriter::create(&self.tmp, Sha512::new(), Durability::Durable)?;
        while let Some(chunk) = block_on(next_chunk(&mut stream)) {
            let chunk = chunk.map_err(bucket)?;
            if writer.written() + chunk.len() as u64 > MAX_FILL {
                return Err(HostedError::Bucket(format!(
                    "{key}: larger than {MAX_FILL} bytes"
                )));
            }
            writer.write(&chunk)?;
        }
        let (hasher, sealed) = writer.seal()?;
        if hex::encode(hasher.finalize()) != sha512_hex {
            tracing::error!(key = %key, "object in the bucket does not match its digest; not served");
            return Err(HostedError::Bucket(format!(
                "{key}: the stored bytes do not match their digest"
            )));
        }
        let len = sealed.len();
        sealed.place(dest)?;
        Ok(Some(StoredTarball {
            path: dest.to_path_buf(),
            len,
        }))
    }

    /// Durably stores already-verified `bytes` under their digest. An
    /// existing complete file is kept (same digest, same bytes).
    /// With a bucket, the bucket `PUT` comes first and must succeed.
    pub(crate) fn put(&self, sha512_hex: &str, bytes: &[u8]) -> Result<()> {
        let Some(dest) = self.path(sha512_hex) else {
            return Err(bad_digest());
        };
        if let Some(backend) = &self.backend {
            let key = hosted_key(sha512_hex).ok_or_else(bad_digest)?;
            let mut writer = BlobWriter::create(&self.tmp, (), Durability::Durable)?;
            writer.write(bytes)?;
            let ((), sealed) = writer.seal()?;
            block_on(backend.put(key, sealed.temp_path().to_owned())).map_err(bucket)?;
            sealed.place(&dest)?;
            return Ok(());
        }
        // Cheap shortcut before a temp write and two fsyncs; the writer
        // would keep the existing file anyway.
        if let Ok(m) = fs::metadata(&dest) {
            if m.is_file() && m.len() == bytes.len() as u64 {
                return Ok(());
            }
        }
        blob::put(&self.tmp, &dest, bytes, Durability::Durable)?;
        Ok(())
    }

    /// Whether a new row may reference the digest without uploading it:
    /// with a bucket, the bucket holds the object (a local file may be this
    /// node's stale copy of an object another node collected); else the
    /// local file exists.
    pub(crate) fn durable(&self, sha512_hex: &str) -> Result<bool> {
        match (&self.backend, hosted_key(sha512_hex)) {
            (Some(backend), Some(key)) => block_on(backend.exists(key)).map_err(bucket),
            (Some(_), None) => Err(bad_digest()),
            (None, _) => Ok(self.lookup(sha512_hex)?.is_some()),
        }
    }

    /// Deletes the bucket object of a tarball no row references any more.
    /// Only for rows every node shares (a node's own SQLite rows know
    /// nothing of another node's references to the same bucket object),
    /// and only under the backend's collection lock, so no write that
    /// could reference the digest again is in flight. A failed delete is
    /// logged and leaves the object (a leak, never a loss).
    pub(crate) fn remove_from_bucket(&self, sha512_hex: &str) {
        let (Some(backend), Some(key)) = (&self.backend, hosted_key(sha512_hex)) else {
            return;
        };
        match block_on(backend.delete(key)) {
            Ok(()) => tracing::debug!("unreferenced hosted tarball deleted from the bucket"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot delete unreferenced hosted tarball from the bucket")
            }
        }
    }

    /// Removes an object no row references any more.
    pub(crate) fn remove(&self, sha512_hex: &str) {
        if let Some(path) = self.path(sha512_hex) {
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(error = %e, "cannot remove unreferenced hosted tarball");
                }
            }
        }
    }
}

fn bad_digest() -> HostedError {
    HostedError::BadRequest("invalid tarball digest".into())
}

fn bucket(e: pnpr_store::StoreError) -> HostedError {
    HostedError::Bucket(e.to_string())
}

#[cfg(test)]
mod tests;
