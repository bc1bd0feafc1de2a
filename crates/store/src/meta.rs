//! The seam between the mirror and where its packument rows live: the
//! [`MetaBackend`] trait, implemented by the embedded SQLite [`MetaDb`]
//! (one node) and by [`crate::postgres::PgMeta`] (rows shared by every node
//! on one PostgreSQL database).
//!
//! Invariants every backend keeps (the mirror relies on them, and sees
//! only this trait):
//! - an entry is keyed by (namespace, package, uplink), so the shared public
//!   mirror and each private uplink namespace never read each other's rows;
//! - every write is one transaction: a crash leaves the old entry or the new;
//! - a body larger than the caller's in-memory limit is never held whole: it
//!   arrives as a file in [`MetaBackend::spill_dir`] and leaves as an opened
//!   file ([`StoredBody::File`]), complete and stable while the reader holds
//!   it even if the entry is replaced meanwhile.

use std::path::Path;

use crate::db::{MetaDb, PackumentEntry, PackumentMeta, PackumentRow, StoredBody};
use crate::Result;

/// Where packument rows live.
pub trait MetaBackend: Send + Sync + std::fmt::Debug {
    /// The entry, its body inline or as an opened file.
    fn entry(&self, ns: &str, name: &str, uplink: &str) -> Result<Option<PackumentEntry>>;

    /// Stores an entry whose body is held in memory.
    fn put_packument(&self, row: &PackumentRow) -> Result<()>;

    /// Stores an entry whose body is the file `spilled` (written in
    /// [`MetaBackend::spill_dir`]), which this call takes over: it is moved
    /// or removed whether or not the entry could be stored.
    fn put_packument_file(&self, meta: &PackumentMeta, spilled: &Path) -> Result<()>;

    /// Marks an entry fresh again after a `304 Not Modified`.
    fn touch_packument(&self, ns: &str, name: &str, uplink: &str, at_ms: i64) -> Result<()>;

    fn delete_packument(&self, ns: &str, name: &str, uplink: &str) -> Result<()>;

    /// Cheap liveness probe for the readiness endpoint.
    fn ping(&self) -> Result<()>;

    /// `npm search` candidates of the shared public namespace only (never a
    /// private uplink's rows): up to `limit` (name, body) rows, by name,
    /// whose name contains `word` (lower case) or whose inline body of at
    /// most `max_body` bytes does; any row when `word` is empty. Bodies
    /// kept as files come back empty (they are matched by name only: one
    /// query must not cost a read of every huge document). Read-only.
    fn public_search_candidates(
        &self,
        word: &str,
        limit: usize,
        max_body: usize,
    ) -> Result<Vec<(String, Vec<u8>)>>;

    /// Where callers write a body before [`MetaBackend::put_packument_file`]
    /// (on this node's disk, next to where the backend keeps body files).
    fn spill_dir(&self) -> &Path;

    /// The entry with its body read whole (file bodies too): for tests and
    /// tools, never the request path of a large document.
    fn packument(&self, ns: &str, name: &str, uplink: &str) -> Result<Option<PackumentRow>> {
        self.entry(ns, name, uplink)?.map(read_whole).transpose()
    }
}

/// An entry as a row, its body read into memory.
pub(crate) fn read_whole(entry: PackumentEntry) -> Result<PackumentRow> {
    let body = match entry.body {
        StoredBody::Inline(body) => body,
        StoredBody::File { mut file, len } => {
            let mut body = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            std::io::Read::read_to_end(&mut file, &mut body)?;
            body
        }
    };
    let m = entry.meta;
    Ok(PackumentRow {
        ns: m.ns,
        name: m.name,
        uplink: m.uplink,
        body,
        etag: m.etag,
        last_modified: m.last_modified,
        fetched_at_ms: m.fetched_at_ms,
    })
}

impl MetaBackend for MetaDb {
    fn entry(&self, ns: &str, name: &str, uplink: &str) -> Result<Option<PackumentEntry>> {
        MetaDb::entry(self, ns, name, uplink)
    }

    fn put_packument(&self, row: &PackumentRow) -> Result<()> {
        MetaDb::put_packument(self, row)
    }

    fn put_packument_file(&self, meta: &PackumentMeta, spilled: &Path) -> Result<()> {
        MetaDb::put_packument_file(self, meta, spilled)
    }

    fn touch_packument(&self, ns: &str, name: &str, uplink: &str, at_ms: i64) -> Result<()> {
        MetaDb::touch_packument(self, ns, name, uplink, at_ms)
    }

    fn delete_packument(&self, ns: &str, name: &str, uplink: &str) -> Result<()> {
        MetaDb::delete_packument(self, ns, name, uplink)
    }

    fn ping(&self) -> Result<()> {
        MetaDb::ping(self)
    }

    fn public_search_candidates(
        &self,
        word: &str,
        limit: usize,
        max_body: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        MetaDb::public_search_candidates(self, word, limit, max_body)
    }

    fn spill_dir(&self) -> &Path {
        MetaDb::spill_dir(self)
    }
}
