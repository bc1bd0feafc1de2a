//! Streaming gunzip + untar of one npm tarball into a [`Spool`] (its files'
//! contents until the package's member is made from them).
//!
//! Invariant: only regular files whose paths are relative, `..`-free,
//! NUL-free and mean the same file on Windows (see [`path`]) reach the store; links are checked never to leave the package and
//! are otherwise dropped (pnpm does not store them); every byte read is
//! metered against the [`Limits`] *before* it can pile up on disk or in
//! memory; the integrity covers every byte of the input.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::rc::Rc;

use ssri::{Integrity, IntegrityChecker};
use tar::EntryType;

use crate::error::{quote_path, CafsError};
use crate::index::FileEntry;
use crate::limits::Limits;
use crate::spool::Spool;

mod path;
pub(crate) use path::{hardlink_escapes, normalize_entry_path, symlink_escapes};

/// Files up to this size are hashed in memory first, so a file the package
/// holds twice is spooled once.
const SMALL_FILE_BYTES: u64 = 1024 * 1024;

/// Bytes tolerated after the gzip member (hashed, otherwise ignored).
const MAX_TRAILING_BYTES: u64 = 1024 * 1024;

const COPY_CHUNK: usize = 64 * 1024;

/// The raw result of unpacking, before the manifest is interpreted.
pub(crate) struct Unpacked {
    pub(crate) files: BTreeMap<String, FileEntry>,
    /// Bytes of the last `package.json` at the package root, if any.
    pub(crate) manifest_bytes: Option<Vec<u8>>,
    /// Every listed file's content, by digest.
    pub(crate) spool: Spool,
}

/// Which limit a metered reader tripped; io errors cannot carry our error
/// type through the tar reader, so the reason is parked here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trip {
    Stream,
    Ratio,
}

#[derive(Debug, Default)]
struct Meter {
    compressed: Cell<u64>,
    tripped: Cell<Option<Trip>>,
}

/// Counts and hashes the caller's compressed bytes.
struct HashingReader<R> {
    inner: R,
    checker: IntegrityChecker,
    meter: Rc<Meter>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = buf.get(..n).unwrap_or_default();
        self.checker.input(read);
        let total = self.meter.compressed.get().saturating_add(n as u64);
        self.meter.compressed.set(total);
        Ok(n)
    }
}

/// Bounds the decompressed stream (total size and expansion ratio).
struct Metered<R> {
    inner: R,
    produced: u64,
    max_stream: u64,
    max_ratio: u64,
    meter: Rc<Meter>,
}

impl<R: Read> Metered<R> {
    fn trip(&self, trip: Trip) -> io::Error {
        self.meter.tripped.set(Some(trip));
        io::Error::other("tarball limit exceeded")
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(trip) = self.meter.tripped.get() {
            return Err(self.trip(trip));
        }
        let n = self.inner.read(buf)?;
        self.produced = self.produced.saturating_add(n as u64);
        if self.produced > self.max_stream {
            return Err(self.trip(Trip::Stream));
        }
        let compressed = self.meter.compressed.get();
        if self.produced > Limits::RATIO_GRACE_BYTES
            && self.produced > compressed.saturating_mul(self.max_ratio)
        {
            return Err(self.trip(Trip::Ratio));
        }
        Ok(n)
    }
}

type Decoder<R> = Metered<
    flate2::bufread::GzDecoder<io::Chain<io::Cursor<[u8; 2]>, BufReader<HashingReader<R>>>>,
>;

/// Unpack `tgz` into `spool`, verifying it against `sri`.
pub(crate) fn unpack<R: Read>(
    spool: Spool,
    tgz: R,
    sri: Integrity,
    limits: &Limits,
) -> Result<Unpacked, CafsError> {
    let meter = Rc::new(Meter::default());
    let mut source = BufReader::with_capacity(
        COPY_CHUNK,
        HashingReader {
            inner: tgz,
            checker: IntegrityChecker::new(sri),
            meter: Rc::clone(&meter),
        },
    );
    let magic = read_gzip_magic(&mut source)?;
    let gz = flate2::bufread::GzDecoder::new(io::Cursor::new(magic).chain(source));
    let decoder: Decoder<R> = Metered {
        inner: gz,
        produced: 0,
        max_stream: limits.max_stream_bytes(),
        max_ratio: limits.max_ratio,
        meter: Rc::clone(&meter),
    };
    let mut walker = Walker {
        spool,
        limits,
        meter,
        files: BTreeMap::new(),
        manifest_bytes: None,
        entries: 0,
        unpacked_bytes: 0,
        last_path: None,
    };
    let mut archive = tar::Archive::new(decoder);
    {
        let entries = archive.entries().map_err(|e| walker.read_error(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| walker.read_error(e))?;
            walker.add(&mut entry)?;
        }
    }
    walker.last_path = None;
    // Reading to the end of the gzip member verifies its CRC, which the tar
    // reader (stopping at the end-of-archive blocks) would otherwise skip.
    let mut decoder = archive.into_inner();
    io::copy(&mut decoder, &mut io::sink()).map_err(|e| walker.read_error(e))?;
    let (_, source) = decoder.inner.into_inner().into_inner();
    verify_tail(source)?;
    Ok(Unpacked {
        files: walker.files,
        manifest_bytes: walker.manifest_bytes,
        spool: walker.spool,
    })
}

/// The first two bytes, which must be the gzip magic.
fn read_gzip_magic(source: &mut impl Read) -> Result<[u8; 2], CafsError> {
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < magic.len() {
        let n = source
            .read(&mut magic[got..])
            .map_err(|e| CafsError::io("reading the tarball", e))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    if got < magic.len() || magic != [0x1f, 0x8b] {
        return Err(CafsError::NotGzip);
    }
    Ok(magic)
}

/// Reads what follows the gzip member (bounded, so it is hashed too) and
/// checks the integrity over every input byte.
fn verify_tail<R: Read>(mut source: BufReader<HashingReader<R>>) -> Result<(), CafsError> {
    let trailing = io::copy(
        &mut (&mut source).take(MAX_TRAILING_BYTES + 1),
        &mut io::sink(),
    )
    .map_err(|e| CafsError::io("reading the tarball", e))?;
    if trailing > MAX_TRAILING_BYTES {
        return Err(CafsError::CorruptTarball {
            entry: None,
            message: format!("more than {MAX_TRAILING_BYTES} bytes after the gzip stream"),
        });
    }
    source
        .into_inner()
        .checker
        .result()
        .map_err(|e| CafsError::IntegrityMismatch(e.to_string()))?;
    Ok(())
}

/// Per-tarball state while walking the entries.
struct Walker<'a> {
    spool: Spool,
    limits: &'a Limits,
    meter: Rc<Meter>,
    files: BTreeMap<String, FileEntry>,
    manifest_bytes: Option<Vec<u8>>,
    entries: u64,
    unpacked_bytes: u64,
    /// Quoted path of the entry being processed, for error messages.
    last_path: Option<String>,
}

impl Walker<'_> {
    /// Turn a read failure into the limit that caused it, or a corruption.
    fn read_error(&self, err: io::Error) -> CafsError {
        let entry = self.last_path.clone();
        match self.meter.tripped.get() {
            Some(Trip::Stream) => CafsError::TooLarge {
                limit: self.limits.max_unpacked_bytes,
                entry,
            },
            Some(Trip::Ratio) => CafsError::RatioExceeded {
                limit: self.limits.max_ratio,
                entry,
            },
            None => CafsError::CorruptTarball {
                entry,
                message: err.to_string(),
            },
        }
    }

    fn add<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), CafsError> {
        self.entries += 1;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let quoted = quote_path(&raw);
        self.last_path = Some(quoted.clone());
        if self.entries > self.limits.max_entries {
            return Err(CafsError::TooManyEntries {
                limit: self.limits.max_entries,
                entry: Some(quoted),
            });
        }
        let path = normalize_entry_path(&raw).map_err(|reason| CafsError::UnsafePath {
            path: quoted.clone(),
            reason,
        })?;
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Regular => self.add_file(entry, path, &quoted),
            EntryType::Directory | EntryType::XGlobalHeader => Ok(()),
            EntryType::Symlink | EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let escapes = if kind == EntryType::Symlink {
                    symlink_escapes(&path, &target)
                } else {
                    hardlink_escapes(&target)
                };
                if escapes {
                    return Err(CafsError::LinkEscapes {
                        path: quoted,
                        target: quote_path(&target),
                    });
                }
                Ok(())
            }
            other => Err(CafsError::UnsupportedEntry {
                path: quoted,
                kind: describe_kind(other),
            }),
        }
    }

    fn add_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: String,
        quoted: &str,
    ) -> Result<(), CafsError> {
        let size = entry.size();
        let is_manifest = path == "package.json";
        self.admit_file(&path, quoted, size, is_manifest)?;
        let mode = entry
            .header()
            .mode()
            .map_err(|e| CafsError::CorruptTarball {
                entry: Some(quoted.to_owned()),
                message: format!("bad mode field: {e}"),
            })?;
        let truncated = || CafsError::CorruptTarball {
            entry: Some(quoted.to_owned()),
            message: "file data is truncated".to_owned(),
        };
        let digest_hex = if size <= SMALL_FILE_BYTES || is_manifest {
            // A manifest is held whole for parsing; `admit_file` bounded it.
            let capacity = usize::try_from(size.min(SMALL_FILE_BYTES)).unwrap_or(0);
            let mut buf = Vec::with_capacity(capacity);
            entry
                .read_to_end(&mut buf)
                .map_err(|e| self.read_error(e))?;
            if buf.len() as u64 != size {
                return Err(truncated());
            }
            let digest_hex = self.spool.put(&buf)?;
            if is_manifest {
                self.manifest_bytes = Some(buf);
            }
            digest_hex
        } else {
            let mut streamed = self.spool.begin();
            let mut chunk = vec![0u8; COPY_CHUNK];
            let mut copied: u64 = 0;
            loop {
                let n = entry.read(&mut chunk).map_err(|e| self.read_error(e))?;
                if n == 0 {
                    break;
                }
                self.spool
                    .append(&mut streamed, chunk.get(..n).unwrap_or_default())?;
                copied += n as u64;
            }
            if copied != size {
                return Err(truncated());
            }
            self.spool.finish(streamed)
        };
        let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
        // Later duplicates replace earlier ones, as in pnpm.
        self.files.insert(
            path,
            FileEntry {
                digest_hex,
                mode,
                size,
            },
        );
        Ok(())
    }

    /// The per-file limits, checked on the header's size before any byte of
    /// the file is read.
    fn admit_file(
        &mut self,
        path: &str,
        quoted: &str,
        size: u64,
        is_manifest: bool,
    ) -> Result<(), CafsError> {
        if path.is_empty() {
            return Err(CafsError::UnsafePath {
                path: quoted.to_owned(),
                reason: "empty path",
            });
        }
        if size > self.limits.max_file_bytes {
            return Err(CafsError::FileTooLarge {
                path: quoted.to_owned(),
                size,
                limit: self.limits.max_file_bytes,
            });
        }
        if is_manifest && size > self.limits.max_manifest_bytes {
            return Err(CafsError::ManifestTooLarge {
                size,
                limit: self.limits.max_manifest_bytes,
            });
        }
        self.unpacked_bytes = self.unpacked_bytes.saturating_add(size);
        if self.unpacked_bytes > self.limits.max_unpacked_bytes {
            return Err(CafsError::TooLarge {
                limit: self.limits.max_unpacked_bytes,
                entry: Some(quoted.to_owned()),
            });
        }
        Ok(())
    }
}

fn describe_kind(kind: EntryType) -> String {
    let name = match kind {
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Fifo => "fifo",
        EntryType::Continuous => "contiguous file",
        EntryType::GNUSparse => "sparse file",
        _ => "unknown",
    };
    format!("{name} ({:?})", char::from(kind.as_byte()))
}

#[cfg(test)]
mod tests;
