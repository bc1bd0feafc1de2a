//! The one atomic blob writer every content-addressed store uses (the tarball
//! CAS here, hosted tarballs, the unpacked file store and its derived bytes).
//!
//! Invariant: a final path is only ever created by placing a temp file that
//! was written completely (and, under [`Durability::Durable`], fsynced) —
//! never by writing at the final path — and a complete existing file is never
//! replaced. So a reader that finds a name finds all of its bytes, a crash
//! mid-write leaves at most a temp file (swept by [`sweep_temp_dir`]), and
//! rewriting the same content is a no-op.
//!
//! Steps: [`BlobWriter::create`] (temp file) → [`BlobWriter::write`] (bytes go
//! to disk and to the hasher) → [`BlobWriter::seal`] (close, fsync, hand back
//! the hasher so the caller can name or refuse the bytes) →
//! [`Sealed::place`] (link into place) or [`Sealed::discard`].

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What a store promises about its objects when the machine (not just the
/// process) goes down.
///
/// Both levels guarantee that no partial file is ever visible at a final path
/// after a process crash. Only `Durable` survives power loss: it costs an
/// fsync of the file and of its directory per object (measured 6.5 ms and
/// 3.5 ms on the CI disk), which a store of thousands of small re-derivable
/// files cannot pay per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the temp file before placing it and the directory after: for
    /// bytes that exist nowhere else (hosted tarballs).
    Durable,
    /// Atomic placement only: for caches whose bytes can be fetched or
    /// derived again (the mirror CAS, unpacked files, derived bytes).
    ProcessCrash,
}

/// Whatever digests the bytes while they are written.
pub trait BlobHasher {
    fn update(&mut self, chunk: &[u8]);
}

impl BlobHasher for sha2::Sha512 {
    fn update(&mut self, chunk: &[u8]) {
        sha2::Digest::update(self, chunk);
    }
}

impl BlobHasher for ssri::IntegrityChecker {
    fn update(&mut self, chunk: &[u8]) {
        self.input(chunk);
    }
}

/// For bytes whose name does not come from their own digest (derived bytes
/// keyed by their source) or whose digest the caller already verified.
impl BlobHasher for () {
    fn update(&mut self, _chunk: &[u8]) {}
}

/// How [`Sealed::place`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// The final path did not exist and now holds the bytes.
    Created,
    /// A complete file of the same length was already there and was kept.
    Existed,
    /// A file of a different length was there (damaged: same name, so it
    /// should have held the same bytes) and was atomically replaced.
    Repaired,
}

/// A temp file being filled and hashed. Dropping it removes the temp file.
#[derive(Debug)]
pub struct BlobWriter<H> {
    file: Option<File>,
    tmp: PathBuf,
    /// `None` only after `seal` took it.
    hasher: Option<H>,
    written: u64,
    durability: Durability,
}

impl<H: BlobHasher> BlobWriter<H> {
    /// A fresh temp file in `tmp_dir`, which must be on the same filesystem
    /// as every final path it will be placed at (placement is a link).
    pub fn create(tmp_dir: &Path, hasher: H, durability: Durability) -> io::Result<Self> {
        let tmp = tmp_dir.join(format!("{:032x}.tmp", rand::random::<u128>()));
        let file = File::options()
            .create_new(true)
            .write(true)
            .read(true)
            .open(&tmp)?;
        Ok(Self {
            file: Some(file),
            tmp,
            hasher: Some(hasher),
            written: 0,
            durability,
        })
    }

    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already sealed"))?;
        file.write_all(chunk)?;
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(chunk);
        }
        self.written += chunk.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// A second handle on the temp file; stays valid after the link or unlink
    /// that ends the write, so concurrent readers never lose it.
    pub fn reader(&self) -> io::Result<File> {
        File::open(&self.tmp)
    }

    /// Closes (and under `Durable` fsyncs) the temp file and hands back the
    /// hasher: the caller names the blob from it, or refuses it.
    pub fn seal(mut self) -> io::Result<(H, Sealed)> {
        let (Some(file), Some(hasher)) = (self.file.take(), self.hasher.take()) else {
            return Err(io::Error::other("blob writer already sealed"));
        };
        if self.durability == Durability::Durable {
            file.sync_all()?;
        }
        drop(file);
        let sealed = Sealed {
            tmp: std::mem::take(&mut self.tmp),
            len: self.written,
            durability: self.durability,
        };
        Ok((hasher, sealed))
    }
}

impl<H> Drop for BlobWriter<H> {
    fn drop(&mut self) {
        drop(self.file.take());
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// A complete, closed temp file waiting for its final name. Dropping it
/// removes the temp file.
#[derive(Debug)]
pub struct Sealed {
    tmp: PathBuf,
    len: u64,
    durability: Durability,
}

impl Sealed {
    /// Length of the sealed bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the sealed bytes are until placed (for a copy elsewhere, e.g.
    /// the shared bucket, before placement).
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Makes `dest` hold these bytes. A hard link fails atomically when the
    /// name is taken, so an existing complete file is kept as it is; a file
    /// of the wrong length under the same name is replaced by rename.
    pub fn place(self, dest: &Path) -> io::Result<Placed> {
        let parent = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent)?;
        let placed = match fs::hard_link(&self.tmp, dest) {
            Ok(()) => Placed::Created,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if fs::metadata(dest).is_ok_and(|m| m.is_file() && m.len() == self.len) {
                    Placed::Existed
                } else {
                    fs::rename(&self.tmp, dest)?;
                    Placed::Repaired
                }
            }
            Err(link_err) => {
                // Filesystems without hard links: rename. A racing writer can
                // only have placed identical bytes, so replacing is harmless.
                if fs::symlink_metadata(dest).is_ok() {
                    Placed::Existed
                } else {
                    fs::rename(&self.tmp, dest).map_err(|e| {
                        io::Error::new(e.kind(), format!("{e} (hard link failed: {link_err})"))
                    })?;
                    Placed::Created
                }
            }
        };
        if self.durability == Durability::Durable && placed != Placed::Existed {
            // The new name must survive power loss along with the bytes.
            File::open(parent)?.sync_all()?;
        }
        Ok(placed)
    }

    /// Drops the bytes (a digest mismatch, or a write nobody keeps).
    pub fn discard(self) {}
}

impl Drop for Sealed {
    fn drop(&mut self) {
        // After a link the temp name is redundant; after a rename it is gone
        // (NotFound is the normal case).
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Writes `bytes` whose final name the caller already knows.
pub fn put(
    tmp_dir: &Path,
    dest: &Path,
    bytes: &[u8],
    durability: Durability,
) -> io::Result<Placed> {
    let mut writer = BlobWriter::create(tmp_dir, (), durability)?;
    writer.write(bytes)?;
    let ((), sealed) = writer.seal()?;
    sealed.place(dest)
}

/// Removes temp files older than `min_age` (all of them for `ZERO`): only a
/// crash mid-write leaves one behind, and none is ever referenced.
pub fn sweep_temp_dir(tmp_dir: &Path, min_age: Duration) {
    let Ok(entries) = fs::read_dir(tmp_dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let old_enough = min_age.is_zero()
            || entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .is_some_and(|age| age > min_age);
        if old_enough {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests;
