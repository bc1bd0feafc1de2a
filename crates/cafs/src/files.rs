//! `files/` and `tmp/`: where unpacked file bytes live, and the only code that
//! places bytes there (through `pnpr-store`'s blob writer).
//!
//! Invariant: a path `files/<hex[0..2]>/<hex[2..]>` is created only by placing
//! a fully written temp file whose SHA-512 was computed from the very bytes
//! written, and an existing complete path is never replaced, so readers can
//! trust any file they find and concurrent writers of the same content cannot
//! corrupt each other. Durability is [`Durability::ProcessCrash`]: unpacked
//! files are re-derivable from the tarball, and an fsync per file would
//! multiply the cost of a cold unpack.
//!
//! Both [`FileStore`](crate::FileStore) and the unpacker use this module; it
//! uses neither, which keeps the crate's module graph free of circles.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pnpr_store::blob::{self, BlobWriter, Durability};
use sha2::{Digest, Sha512};

use crate::error::CafsError;

/// Temp files older than this at open time are leftovers of a crash (younger
/// ones may belong to another process sharing the store).
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// The content-addressed file directory and its temp directory.
#[derive(Debug)]
pub(crate) struct Files {
    files_dir: PathBuf,
    /// Same filesystem as `files_dir` (and the derived-bytes directory), so
    /// finished temp files can be linked into place atomically.
    tmp_dir: PathBuf,
}

impl Files {
    /// Creates `files/` with its 256 fan-out directories and `tmp/` under
    /// `root`, and sweeps stale temp files.
    pub(crate) fn open(root: &Path) -> Result<Self, CafsError> {
        let files_dir = root.join("files");
        let tmp_dir = root.join("tmp");
        for dir in [root, &files_dir, &tmp_dir] {
            fs::create_dir_all(dir)
                .map_err(|e| CafsError::io(format!("creating {}", dir.display()), e))?;
        }
        // All 256 fan-out directories up front: no create_dir race per file.
        for byte in 0..=255u8 {
            let dir = files_dir.join(format!("{byte:02x}"));
            fs::create_dir_all(&dir)
                .map_err(|e| CafsError::io(format!("creating {}", dir.display()), e))?;
        }
        blob::sweep_temp_dir(&tmp_dir, STALE_TEMP_AGE);
        Ok(Self { files_dir, tmp_dir })
    }

    /// Where the file with this digest lives (whether or not it exists).
    pub(crate) fn path(&self, digest_hex: &str) -> Result<PathBuf, CafsError> {
        if !is_digest_hex(digest_hex) {
            return Err(CafsError::InvalidDigest(
                digest_hex.chars().take(160).collect(),
            ));
        }
        Ok(self.files_dir.join(&digest_hex[..2]).join(&digest_hex[2..]))
    }

    /// Store `data` (if not already present) and return its hex digest.
    pub(crate) fn put_bytes(&self, data: &[u8]) -> Result<String, CafsError> {
        let digest_hex = hex::encode(Sha512::digest(data));
        let dest = self.path(&digest_hex)?;
        if fs::symlink_metadata(&dest).is_ok() {
            return Ok(digest_hex);
        }
        blob::put(&self.tmp_dir, &dest, data, Durability::ProcessCrash)
            .map_err(|e| CafsError::io(format!("placing {}", dest.display()), e))?;
        Ok(digest_hex)
    }

    /// A fresh temp file for content whose digest is not known yet.
    pub(crate) fn temp_file(&self) -> Result<TempFile<'_>, CafsError> {
        let blob = BlobWriter::create(&self.tmp_dir, Sha512::new(), Durability::ProcessCrash)
            .map_err(|e| {
                CafsError::io(
                    format!("creating a temp file in {}", self.tmp_dir.display()),
                    e,
                )
            })?;
        Ok(TempFile { files: self, blob })
    }

    /// Keeps bytes derived from a stored file at `dest` (outside `files/`),
    /// through the same writer so a reader never sees a partial member.
    pub(crate) fn put_derived(&self, dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
        blob::put(&self.tmp_dir, dest, bytes, Durability::ProcessCrash).map(drop)
    }

    /// A temp file for derived bytes too large to build in memory; placed
    /// under its known final name by [`DerivedWriter::place`].
    pub(crate) fn derived_writer(&self) -> std::io::Result<DerivedWriter> {
        let blob = BlobWriter::create(&self.tmp_dir, (), Durability::ProcessCrash)?;
        Ok(DerivedWriter { blob })
    }
}

/// Derived bytes being written; removed on drop unless placed, so a reader
/// never sees a partial file at the final name.
pub(crate) struct DerivedWriter {
    blob: BlobWriter<()>,
}

impl std::io::Write for DerivedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.blob.write(buf).map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl DerivedWriter {
    /// Closes the temp file and puts it at `dest` (an existing complete
    /// file of the same length is kept).
    pub(crate) fn place(self, dest: &Path) -> std::io::Result<()> {
        let ((), sealed) = self.blob.seal()?;
        sealed.place(dest).map(drop)
    }
}

/// A temp file being filled; hashed as it is written, removed on drop unless
/// committed.
pub(crate) struct TempFile<'a> {
    files: &'a Files,
    blob: BlobWriter<Sha512>,
}

impl TempFile<'_> {
    pub(crate) fn write(&mut self, chunk: &[u8]) -> Result<(), CafsError> {
        self.blob
            .write(chunk)
            .map_err(|e| CafsError::io(format!("writing {}", self.blob.temp_path().display()), e))
    }

    /// Close, then place under the digest of what was written.
    pub(crate) fn commit(self) -> Result<String, CafsError> {
        let tmp = self.blob.temp_path().to_owned();
        let (hasher, sealed) = self
            .blob
            .seal()
            .map_err(|e| CafsError::io(format!("closing {}", tmp.display()), e))?;
        let digest_hex = hex::encode(hasher.finalize());
        let dest = self.files.path(&digest_hex)?;
        sealed
            .place(&dest)
            .map_err(|e| CafsError::io(format!("placing {}", dest.display()), e))?;
        Ok(digest_hex)
    }
}

fn is_digest_hex(s: &str) -> bool {
    s.len() == 128
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
