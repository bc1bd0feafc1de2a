//! `tmp/` and the placement of derived bytes (package members): the only
//! code that puts bytes under the store root (through `pnpr-store`'s blob
//! writer).
//!
//! Invariant: a derived path is created only by placing a fully written
//! temp file, and an existing complete path is never replaced, so readers
//! can trust any file they find and concurrent writers of the same content
//! cannot corrupt each other. The one exception is
//! [`DerivedWriter::replace`], used only by the idle-time recompression
//! ([`crate::recompress`]) for bytes it verified decode to exactly what the
//! path already holds: a rename, so a reader sees the old file or the new
//! one, whole, and one that opened the old file keeps it. Durability is [`Durability::ProcessCrash`]:
//! members are re-derivable from the tarball, and an fsync per package
//! would add to the cost of a cold unpack. Since RFC 0008 §4 nothing is
//! written to `files/` any more (the raw unpacked copy of every file); a
//! data directory of an older version still has one, which the disk budget
//! removes (nothing reads it).
//!
//! Both [`FileStore`](crate::FileStore) and the unpacker use this module; it
//! uses neither, which keeps the crate's module graph free of circles.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pnpr_store::blob::{self, BlobWriter, Durability};

use crate::error::CafsError;

/// Temp files older than this at open time are leftovers of a crash (younger
/// ones may belong to another process sharing the store).
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// The temp directory of a store.
#[derive(Debug)]
pub(crate) struct Files {
    /// Same filesystem as the derived-bytes directory, so finished temp
    /// files can be linked into place atomically.
    tmp_dir: PathBuf,
}

impl Files {
    /// Creates `tmp/` under `root` and sweeps stale temp files.
    pub(crate) fn open(root: &Path) -> Result<Self, CafsError> {
        let tmp_dir = root.join("tmp");
        for dir in [root, &tmp_dir] {
            fs::create_dir_all(dir)
                .map_err(|e| CafsError::io(format!("creating {}", dir.display()), e))?;
        }
        blob::sweep_temp_dir(&tmp_dir, STALE_TEMP_AGE);
        Ok(Self { tmp_dir })
    }

    /// Where unpack spools and member temp files live.
    pub(crate) fn tmp_dir(&self) -> &Path {
        &self.tmp_dir
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

    /// Closes the temp file and renames it over `dest`, whatever is there:
    /// only for a denser encoding of the same member (the caller verified
    /// it decodes to the same frames).
    pub(crate) fn replace(self, dest: &Path) -> std::io::Result<()> {
        let ((), sealed) = self.blob.seal()?;
        fs::rename(sealed.temp_path(), dest)
    }
}

/// Whether `s` is a lowercase hex SHA-512.
pub(crate) fn is_digest_hex(s: &str) -> bool {
    s.len() == 128
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
