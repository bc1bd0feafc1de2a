//! Tarball CAS: `<root>/<namespace>/<algo>/<hex[0..2]>/<hex[2..]>`.
//!
//! Writers stream into `<root>/tmp/` through the [`blob`](crate::blob) writer
//! while hashing, and are placed only when the digest matches the expected
//! SRI. A mismatch removes the temp file, so a failed fetch leaves nothing
//! behind. Objects are re-fetchable, so the CAS uses
//! [`Durability::ProcessCrash`]: no fsync per tarball on the async path.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssri::{Integrity, IntegrityChecker};

use crate::blob::{sweep_temp_dir, BlobWriter, Durability};
use crate::{Result, StoreError};

/// Content-addressable tarball store rooted at one directory.
#[derive(Debug)]
pub struct Cas {
    root: PathBuf,
    tmp: PathBuf,
}

/// A verified object in the CAS.
#[derive(Debug, Clone)]
pub struct Stored {
    pub path: PathBuf,
    pub len: u64,
}

impl Cas {
    pub fn open(root: &Path) -> Result<Self> {
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp)?;
        // Leftovers of a crash are never valid objects; drop them.
        sweep_temp_dir(&tmp, Duration::ZERO);
        Ok(Self {
            root: root.to_path_buf(),
            tmp,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an object with this integrity lives in namespace `ns`.
    pub fn path(&self, ns: &str, sri: &Integrity) -> Result<PathBuf> {
        check_ns(ns)?;
        let (algo, hex) = sri.to_hex();
        if hex.len() < 3 {
            return Err(StoreError::BadIntegrity);
        }
        Ok(self
            .root
            .join(ns)
            .join(algo.to_string())
            .join(&hex[..2])
            .join(&hex[2..]))
    }

    /// A hit is trusted as-is: it was verified when it was promoted.
    pub fn lookup(&self, ns: &str, sri: &Integrity) -> Result<Option<Stored>> {
        let path = self.path(ns, sri)?;
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(Stored { path, len: m.len() })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts a verifying write of an object expected to match `expected`.
    pub fn writer(&self, ns: &str, expected: Integrity) -> Result<CasWriter> {
        let dest = self.path(ns, &expected)?;
        let blob = BlobWriter::create(
            &self.tmp,
            IntegrityChecker::new(expected.clone()),
            Durability::ProcessCrash,
        )?;
        Ok(CasWriter {
            blob,
            dest,
            expected,
        })
    }

    /// Number of objects in a namespace (for readiness checks and tests).
    pub fn count(&self, ns: &str) -> usize {
        fn walk(p: &Path) -> usize {
            let Ok(rd) = fs::read_dir(p) else { return 0 };
            rd.flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        walk(&path)
                    } else {
                        1
                    }
                })
                .sum()
        }
        if check_ns(ns).is_err() {
            return 0;
        }
        walk(&self.root.join(ns))
    }
}

/// Namespaces become directory names; keep them to a safe alphabet so a
/// namespace can never climb out of the CAS root.
pub(crate) fn check_ns(ns: &str) -> Result<()> {
    let ok = !ns.is_empty()
        && ns.len() <= 80
        && ns != "tmp"
        && ns.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'~'
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadNamespace(ns.to_string()))
    }
}

/// A temp file being filled and hashed; promoted by [`CasWriter::finish`].
pub struct CasWriter {
    blob: BlobWriter<IntegrityChecker>,
    dest: PathBuf,
    expected: Integrity,
}

impl CasWriter {
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        Ok(self.blob.write(chunk)?)
    }

    pub fn written(&self) -> u64 {
        self.blob.written()
    }

    pub fn temp_path(&self) -> &Path {
        self.blob.temp_path()
    }

    /// A second handle on the temp file; stays valid after the placement or
    /// unlink that ends the write, so concurrent readers never lose it.
    pub fn reader(&self) -> Result<File> {
        Ok(self.blob.reader()?)
    }

    /// Verifies the digest; on a match places the object when `keep`, else
    /// unlinks. On a mismatch the temp file is removed and nothing is stored.
    pub fn finish(self, keep: bool) -> Result<Stored> {
        let verified = self.verify()?;
        if keep {
            verified.place()
        } else {
            let stored = Stored {
                path: verified.dest.clone(),
                len: verified.len(),
            };
            verified.sealed.discard();
            Ok(stored)
        }
    }

    /// Verifies the digest and hands back the closed temp file, so a caller
    /// can copy it elsewhere (the shared bucket) before placing it. On a
    /// mismatch the temp file is removed and nothing is stored.
    pub fn verify(self) -> Result<Verified> {
        let CasWriter {
            blob,
            dest,
            expected,
        } = self;
        let written = blob.written();
        let (checker, sealed) = blob.seal()?;
        if checker.result().is_err() {
            sealed.discard();
            return Err(StoreError::IntegrityMismatch {
                expected: expected.to_string(),
                actual: format!("{written} bytes with a different digest"),
            });
        }
        Ok(Verified { sealed, dest })
    }

    /// Abandons the write (e.g. the upstream failed midway).
    pub fn abort(self) {
        drop(self.blob);
    }
}

/// Verified bytes in a closed temp file, not yet at their CAS path.
/// Dropping it removes the temp file.
#[derive(Debug)]
pub struct Verified {
    sealed: crate::blob::Sealed,
    dest: PathBuf,
}

impl Verified {
    pub fn len(&self) -> u64 {
        self.sealed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sealed.is_empty()
    }

    /// The temp file (valid until [`Verified::place`] or drop).
    pub fn temp_path(&self) -> &Path {
        self.sealed.temp_path()
    }

    /// Places the bytes at their CAS path.
    pub fn place(self) -> Result<Stored> {
        let len = self.sealed.len();
        self.sealed.place(&self.dest)?;
        Ok(Stored {
            path: self.dest,
            len,
        })
    }
}

#[cfg(test)]
mod tests;
