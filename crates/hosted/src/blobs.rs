//! Content-addressed tarball files: `<root>/sha512/<hex[0..2]>/<hex[2..]>`.
//!
//! Invariant: a file at a final path always holds the complete bytes whose
//! SHA-512 is its name. Bytes are written by the shared blob writer with
//! [`Durability::Durable`] (temp file in `<root>/tmp/`, fsync, link into
//! place, directory fsync): hosted tarballs exist nowhere else, so neither a
//! crash nor a power loss may leave a final path with partial content.
//! Callers verify the digest before calling [`Blobs::put`].

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pnpr_store::blob::{self, Durability};

use crate::Result;

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
        })
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

    pub(crate) fn lookup(&self, sha512_hex: &str) -> Result<Option<StoredTarball>> {
        let Some(path) = self.path(sha512_hex) else {
            return Ok(None);
        };
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(StoredTarball { path, len: m.len() })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Durably stores already-verified `bytes` under their digest. An
    /// existing complete file is kept (same digest, same bytes).
    pub(crate) fn put(&self, sha512_hex: &str, bytes: &[u8]) -> Result<()> {
        let Some(dest) = self.path(sha512_hex) else {
            return Err(crate::HostedError::BadRequest(
                "invalid tarball digest".into(),
            ));
        };
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

#[cfg(test)]
mod tests;
