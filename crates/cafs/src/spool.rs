//! One tarball's file contents while it is being unpacked, until the
//! package's member is made from them (RFC 0008 §4: the store keeps no raw
//! copy of any file; the member and the index row are what serving reads).
//!
//! Invariants: a spool is private to one unpack (a temp file under `tmp/`
//! that is removed when the spool is dropped, whatever happened), so no
//! other unpack or reader can depend on its bytes; a digest is recorded
//! only for bytes hashed while they were written, and each digest's
//! content is kept once; memory holds only the digest → (offset, length)
//! table, never a file larger than the unpacker's small-file threshold.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use pnpr_store::blob::{BlobWriter, Durability};
use sha2::{Digest, Sha512};

use crate::error::CafsError;

/// File contents of one package by digest, backed by a temp file.
pub(crate) struct Spool {
    blob: BlobWriter<()>,
    reader: File,
    /// Digest hex → (offset, length) in the temp file.
    at: HashMap<String, (u64, u64)>,
}

impl Spool {
    pub(crate) fn create(tmp_dir: &Path) -> Result<Self, CafsError> {
        let io = |e| CafsError::io(format!("creating a spool in {}", tmp_dir.display()), e);
        let blob = BlobWriter::create(tmp_dir, (), Durability::ProcessCrash).map_err(io)?;
        let reader = blob.reader().map_err(io)?;
        Ok(Self {
            blob,
            reader,
            at: HashMap::new(),
        })
    }

    /// Keeps `data` (once per digest) and returns its hex digest.
    pub(crate) fn put(&mut self, data: &[u8]) -> Result<String, CafsError> {
        let digest_hex = hex::encode(Sha512::digest(data));
        if !self.at.contains_key(&digest_hex) {
            let offset = self.blob.written();
            self.write(data)?;
            self.at
                .insert(digest_hex.clone(), (offset, data.len() as u64));
        }
        Ok(digest_hex)
    }

    /// Starts a file whose digest is known only once it is all written.
    pub(crate) fn begin(&mut self) -> Streamed {
        Streamed {
            offset: self.blob.written(),
            hasher: Sha512::new(),
        }
    }

    /// Appends a chunk of the file `streamed` is writing.
    pub(crate) fn append(
        &mut self,
        streamed: &mut Streamed,
        chunk: &[u8],
    ) -> Result<(), CafsError> {
        streamed.hasher.update(chunk);
        self.write(chunk)
    }

    /// Ends a streamed file; returns its hex digest.
    pub(crate) fn finish(&mut self, streamed: Streamed) -> String {
        let digest_hex = hex::encode(streamed.hasher.finalize());
        let len = self.blob.written() - streamed.offset;
        // A duplicate keeps its first copy (the bytes are the same).
        self.at
            .entry(digest_hex.clone())
            .or_insert((streamed.offset, len));
        digest_hex
    }

    /// The content kept under `digest_hex`.
    pub(crate) fn read(&mut self, digest_hex: &str) -> std::io::Result<Vec<u8>> {
        let &(offset, len) = self.at.get(digest_hex).ok_or_else(|| {
            std::io::Error::other(format!("file {digest_hex} is not in the spool"))
        })?;
        let mut buf = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
        self.reader.seek(SeekFrom::Start(offset))?;
        self.reader.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), CafsError> {
        self.blob
            .write(chunk)
            .map_err(|e| CafsError::io(format!("writing {}", self.blob.temp_path().display()), e))
    }
}

/// A file being appended to a [`Spool`], hashed as it goes.
pub(crate) struct Streamed {
    offset: u64,
    hasher: Sha512,
}
